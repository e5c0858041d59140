#include "cnn/callbacks.hpp"

#include <cmath>
#include <fstream>

#include "cnn/distributed.hpp"
#include "cnn/error.hpp"
#include "cnn/model.hpp"

namespace cnn {

double EpochLogs::get(const std::string& metric) const {
  if (metric == "loss") return loss;
  if (metric == "accuracy" || metric == "acc") return accuracy;
  if (metric == "val_loss") return val_loss;
  if (metric == "val_accuracy" || metric == "val_acc") return val_accuracy;
  fail("unknown metric '", metric, "'; valid metrics: loss, accuracy, val_loss, val_accuracy");
}

namespace {

bool higher_is_better(const std::string& metric) { return metric.find("acc") != std::string::npos; }

// The monitored value; falls back from val_* to the training metric when there is no validation.
double monitored(const EpochLogs& logs, const std::string& metric) {
  const double v = logs.get(metric);
  if (std::isnan(v) && metric.rfind("val_", 0) == 0) return logs.get(metric.substr(4));
  return v;
}

class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions o) : o_(std::move(o)) {
    EpochLogs{}.get(o_.monitor);  // validates the name
    CNN_CHECK(o_.patience >= 0, "EarlyStopping: patience must be >= 0, got ", o_.patience);
  }
  void on_train_begin(Sequential&) override {
    wait_ = 0;
    best_ = higher_is_better(o_.monitor) ? -INFINITY : INFINITY;
    best_weights_.clear();
  }
  void on_epoch_end(Sequential& model, const EpochLogs& logs) override {
    const double v = monitored(logs, o_.monitor);
    const bool better = higher_is_better(o_.monitor) ? v > best_ + o_.min_delta : v < best_ - o_.min_delta;
    if (better) {
      best_ = v;
      wait_ = 0;
      if (o_.restore_best_weights) best_weights_ = model.weights();
    } else if (++wait_ > o_.patience) {
      model.stop_training = true;
    }
  }
  void on_train_end(Sequential& model) override {
    if (o_.restore_best_weights && !best_weights_.empty()) model.set_weights(best_weights_);
  }

 private:
  EarlyStoppingOptions o_;
  int wait_ = 0;
  double best_ = 0;
  std::vector<std::pair<std::string, Tensor>> best_weights_;
};

class ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(ModelCheckpointOptions o) : o_(std::move(o)) {
    CNN_CHECK(!o_.filepath.empty(), "ModelCheckpoint: filepath is empty");
    EpochLogs{}.get(o_.monitor);
  }
  void on_train_begin(Sequential&) override { best_ = higher_is_better(o_.monitor) ? -INFINITY : INFINITY; }
  void on_epoch_end(Sequential& model, const EpochLogs& logs) override {
    const double v = monitored(logs, o_.monitor);
    const bool better = higher_is_better(o_.monitor) ? v > best_ : v < best_;
    if (o_.save_best_only && !better) return;
    if (better) best_ = v;
    if (distributed::rank() != 0) return;  // data-parallel: the ranks' weights are equal; rank 0 writes
    std::string path = o_.filepath;
    for (size_t at; (at = path.find("{epoch}")) != std::string::npos;)
      path.replace(at, 7, std::to_string(logs.epoch + 1));
    model.save(path);
  }

 private:
  ModelCheckpointOptions o_;
  double best_ = 0;
};

class CsvLogger : public Callback {
 public:
  CsvLogger(std::string path, bool append) : path_(std::move(path)), append_(append) {}
  void on_train_begin(Sequential&) override {
    writer_ = distributed::rank() == 0;  // data-parallel: rank 0 writes (the epoch logs are reduced)
    if (!writer_) return;
    const bool had_content = append_ && std::ifstream(path_).peek() != std::ifstream::traits_type::eof();
    out_.open(path_, append_ ? std::ios::app : std::ios::trunc);
    CNN_CHECK(out_.good(), "CSVLogger: cannot open '", path_, "' for writing");
    if (!had_content) out_ << "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n" << std::flush;
  }
  void on_epoch_end(Sequential&, const EpochLogs& l) override {
    if (!writer_) return;
    auto num = [](double v) { return std::isnan(v) ? std::string() : std::to_string(v); };
    out_ << l.epoch + 1 << ',' << num(l.loss) << ',' << num(l.accuracy) << ',' << num(l.val_loss) << ','
         << num(l.val_accuracy) << ',' << num(l.learning_rate) << ',' << num(l.seconds) << '\n'
         << std::flush;
    CNN_CHECK(out_.good(), "CSVLogger: writing '", path_, "' failed (disk full?)");
  }
  void on_train_end(Sequential&) override { out_.close(); }

 private:
  std::string path_;
  bool append_;
  bool writer_ = true;
  std::ofstream out_;
};

class LambdaCallback : public Callback {
 public:
  explicit LambdaCallback(LambdaCallbackOptions o) : o_(std::move(o)) {}
  void on_epoch_end(Sequential& m, const EpochLogs& l) override {
    if (o_.on_epoch_end) o_.on_epoch_end(m, l);
  }
  void on_batch_end(Sequential& m, const BatchLogs& l) override {
    if (o_.on_batch_end) o_.on_batch_end(m, l);
  }
  bool wants_batch_logs() const override { return bool(o_.on_batch_end); }

 private:
  LambdaCallbackOptions o_;
};

}  // namespace

CallbackPtr early_stopping(EarlyStoppingOptions options) { return std::make_shared<EarlyStopping>(std::move(options)); }
CallbackPtr model_checkpoint(ModelCheckpointOptions options) {
  return std::make_shared<ModelCheckpoint>(std::move(options));
}
CallbackPtr csv_logger(const std::string& path, bool append) { return std::make_shared<CsvLogger>(path, append); }
CallbackPtr lambda_callback(LambdaCallbackOptions options) { return std::make_shared<LambdaCallback>(std::move(options)); }

}  // namespace cnn
