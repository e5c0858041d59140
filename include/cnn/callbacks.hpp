#pragma once
// Callbacks for Sequential::fit, as in Keras: EarlyStopping, ModelCheckpoint, CSVLogger and
// LambdaCallback for user code per epoch and per batch.
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>

namespace cnn {

class Sequential;

// What one finished epoch measured. Validation values are NaN when there is no validation data.
struct EpochLogs {
  int epoch = 0;  // 0-based
  double loss = 0, accuracy = 0;
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();
  double learning_rate = 0;
  double seconds = 0;
  // "loss", "accuracy", "val_loss" or "val_accuracy"; throws cnn::Error for other names.
  double get(const std::string& metric) const;
};

// Running means since the start of the epoch, as of the last progress update.
struct BatchLogs {
  int batch = 0;  // 0-based within the epoch
  double loss = 0, accuracy = 0;
};

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Sequential&) {}
  virtual void on_epoch_begin(Sequential&, int /*epoch*/) {}
  virtual void on_batch_end(Sequential&, const BatchLogs&) {}
  // After every optimizer step, without metrics (so without a GPU synchronisation).
  virtual void on_step_end(Sequential&, int64_t /*global_step*/) {}
  virtual void on_epoch_end(Sequential&, const EpochLogs&) {}
  virtual void on_train_end(Sequential&) {}
  // Asking for per-batch logs makes the GPU report metrics after every batch (a sync).
  virtual bool wants_batch_logs() const { return false; }
};
using CallbackPtr = std::shared_ptr<Callback>;

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";  // falls back to "loss" when there is no validation data
  double min_delta = 0;
  int patience = 0;
  bool restore_best_weights = false;
};
// Stops training when `monitor` has not improved for `patience` epochs.
CallbackPtr early_stopping(EarlyStoppingOptions options = {});

struct ModelCheckpointOptions {
  std::string filepath{};  // "{epoch}" is replaced by the 1-based epoch number
  std::string monitor = "val_loss";
  bool save_best_only = true;
};
CallbackPtr model_checkpoint(ModelCheckpointOptions options);

// Writes epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds per epoch (flushed each line).
CallbackPtr csv_logger(const std::string& path, bool append = false);

struct LambdaCallbackOptions {
  std::function<void(Sequential&, const EpochLogs&)> on_epoch_end{};
  std::function<void(Sequential&, const BatchLogs&)> on_batch_end{};
};
CallbackPtr lambda_callback(LambdaCallbackOptions options);

// Weight averaging during training (on the model's device):
//   ema        avg = decay avg + (1 - decay) w after every step
//   lookahead  every `every` steps: slow += alpha (fast - slow), then fast = slow
// With use_average_at_end the averaged weights replace the model's when training ends.
struct WeightAveragingOptions {
  std::string method = "ema";  // "ema" | "lookahead" (AveragingMethod), parsed by weight_averaging()
  float decay = 0.999f;
  int every = 5;
  float alpha = 0.5f;
  bool use_average_at_end = true;
};
CallbackPtr weight_averaging(WeightAveragingOptions options = {});

}  // namespace cnn
