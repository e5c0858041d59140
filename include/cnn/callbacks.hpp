#pragma once
// Callbacks for Sequential::fit, as in Keras: EarlyStopping, ModelCheckpoint, CSVLogger,
// TensorBoard and LambdaCallback for user code per epoch and per batch.
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "cnn/tensor.hpp"

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
  int64_t global_step = 0;   // optimizer steps taken, this one included (continues on resume)
  double learning_rate = 0;  // of this step, the schedule applied
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

// TensorBoard event files in log_dir (a new events.out.tfevents.* file per fit; files already
// there are left alone, so a resumed run appends). Per epoch (step = the 1-based epoch): the
// scalars epoch/loss, epoch/accuracy, epoch/val_loss and epoch/val_accuracy (with validation),
// epoch/learning_rate and epoch/seconds; every `every_steps` optimizer steps (step = the global
// step): step/loss and step/accuracy (running means since the epoch began, as the progress bar
// shows them) and step/learning_rate; at the start the model's summary table as text
// (model/summary). Optional images: the first Conv2D's filters after every epoch
// (images/filters) and, when confusion_x is given, the confusion matrix of
// (confusion_x, confusion_y) when training ends (images/confusion_matrix). Every record is
// written as it comes, the file is fsynced after every epoch. docs/FORMATS.md lists the tags.
// Throws cnn::Error when the library was built without protobuf.
struct TensorBoardOptions {
  std::string log_dir{};
  int every_steps = 0;  // 0: no per-step scalars; asking for them reads the metrics every batch (a GPU sync)
  bool write_filters = false;
  Tensor confusion_x{}, confusion_y{};  // e.g. the test set; empty: no confusion matrix
};
CallbackPtr tensorboard(TensorBoardOptions options);

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
  // Lookahead: alpha decays over training as airbench's does, alpha_t = alpha (1 - alpha_decay
  // p^alpha_decay_power) with p the fraction of fit's steps done, this one included (airbench94:
  // alpha 1, alpha_decay 0.95^5, power 3). 0: alpha stays constant.
  float alpha_decay = 0;
  float alpha_decay_power = 3;
  bool use_average_at_end = true;
};
CallbackPtr weight_averaging(WeightAveragingOptions options = {});

}  // namespace cnn
