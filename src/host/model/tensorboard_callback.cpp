// The TensorBoard callback (cnn/callbacks.hpp): fit's logs as TensorBoard event records
// (io/tensorboard.hpp). The tags are listed in docs/FORMATS.md.
#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>

#include "cnn/callbacks.hpp"
#include "cnn/error.hpp"
#include "cnn/model.hpp"
#include "cnn/pictures.hpp"
#include "io/tensorboard.hpp"

namespace cnn {
namespace {

// The summary table as Markdown: indented four spaces, a code block, so its columns line up.
std::string summary_markdown(const Sequential& model) {
  std::istringstream lines(model.summary_string());
  std::string md, line;
  while (std::getline(lines, line)) md += "    " + line + "\n";
  return md;
}

// The first Conv2D layer's weights [c_out, c_in, kh, kw]; empty when there is none.
Tensor first_conv_filters(const Sequential& model) {
  for (size_t i = 0; i < model.size(); ++i) {
    if (model.layer(i).type() != "Conv2D") continue;
    const std::string prefix = "layers." + std::to_string(i) + ".";
    for (const auto& [name, t] : model.weights())
      if (name.starts_with(prefix) && name.ends_with(".weight")) return t;
  }
  return Tensor();
}

class TensorBoard : public Callback {
 public:
  explicit TensorBoard(TensorBoardOptions o) : o_(std::move(o)) {
    CNN_CHECK(!o_.log_dir.empty(), "TensorBoard: log_dir is empty");
    CNN_CHECK(o_.every_steps >= 0, "TensorBoard: every_steps must be >= 0, got ", o_.every_steps);
    CNN_CHECK(o_.confusion_x.empty() == o_.confusion_y.empty(),
              "TensorBoard: give both confusion_x and confusion_y, or neither");
#if !CNN_WITH_PROTOBUF
    tfevents::EventWriter{o_.log_dir};  // throws: no protobuf in this build
#endif
  }

  void on_train_begin(Sequential& model) override {
    writer_ = std::make_unique<tfevents::EventWriter>(o_.log_dir);
    writer_->text("model/summary", 0, summary_markdown(model));
    CNN_CHECK(!o_.write_filters || !first_conv_filters(model).empty(),
              "TensorBoard: write_filters asks for the first Conv2D's filters, the model has no Conv2D");
    writer_->sync();
  }

  void on_batch_end(Sequential&, const BatchLogs& l) override {
    if (o_.every_steps == 0 || l.global_step % o_.every_steps != 0) return;
    writer_->scalar("step/loss", l.global_step, l.loss);
    writer_->scalar("step/accuracy", l.global_step, l.accuracy);
    writer_->scalar("step/learning_rate", l.global_step, l.learning_rate);
  }

  void on_epoch_end(Sequential& model, const EpochLogs& l) override {
    const int64_t step = l.epoch + 1;
    writer_->scalar("epoch/loss", step, l.loss);
    writer_->scalar("epoch/accuracy", step, l.accuracy);
    if (!std::isnan(l.val_loss)) writer_->scalar("epoch/val_loss", step, l.val_loss);
    if (!std::isnan(l.val_accuracy)) writer_->scalar("epoch/val_accuracy", step, l.val_accuracy);
    writer_->scalar("epoch/learning_rate", step, l.learning_rate);
    writer_->scalar("epoch/seconds", step, l.seconds);
    if (o_.write_filters) {
      const Tensor w = first_conv_filters(model);
      const int scale = std::max(1, int(20 / std::max<int64_t>(1, w.dim(2))));
      writer_->image("images/filters", step, filters_image(w, scale));
    }
    last_epoch_ = step;
    writer_->sync();
  }

  void on_train_end(Sequential& model) override {
    if (!writer_) return;
    if (!o_.confusion_x.empty()) {
      EvaluateOptions eo;
      eo.per_class = true;
      const Evaluation ev = model.evaluate(o_.confusion_x, o_.confusion_y, eo);
      std::vector<std::string> names = model.class_names;
      names.resize(ev.confusion.size());
      for (size_t c = 0; c < names.size(); ++c)
        if (names[c].empty()) names[c] = std::to_string(c);
      writer_->image("images/confusion_matrix", last_epoch_, confusion_matrix_image(ev.confusion, names));
    }
    writer_->sync();
    writer_.reset();
  }

  bool wants_batch_logs() const override { return o_.every_steps > 0; }

 private:
  TensorBoardOptions o_;
  std::unique_ptr<tfevents::EventWriter> writer_;
  int64_t last_epoch_ = 0;
};

}  // namespace

CallbackPtr tensorboard(TensorBoardOptions options) { return std::make_shared<TensorBoard>(std::move(options)); }

}  // namespace cnn
