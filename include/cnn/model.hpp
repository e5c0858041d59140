#pragma once
// Sequential: a stack of layers with Keras's compile / fit / evaluate / predict / summary /
// save / load.
//
//   cnn::Sequential model({
//       cnn::Conv2D(6, 5, 1, "valid", "relu"), cnn::AveragePooling2D(2, 2),
//       cnn::Conv2D(16, 5, 1, "valid", "relu"), cnn::AveragePooling2D(2, 2),
//       cnn::Flatten(), cnn::Dense(120, "relu"), cnn::Dense(84, "relu"), cnn::Dense(10, "softmax")});
//   model.compile("sgd", "cce", 0.01, {1, 32, 32});
//   model.fit(x, y, 30);
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cnn/callbacks.hpp"
#include "cnn/layer.hpp"
#include "cnn/tensor.hpp"

namespace cnn {

// Option types take the Keras-style names ("sgd", "cosine", "alternate", ...) as strings so
// that user code and model files read alike; each name is parsed once, into the enums of
// types.hpp, where it enters: by compile and fit for these structs (an unknown name fails
// there, with the valid names), by read_training_recipe for files, by the CLI for flags.
// Nothing compares a name per training step. Every float option must be finite: NaN and
// infinity are refused with an error naming the option.
struct CompileOptions {
  std::string optimizer = "sgd";  // "sgd" | "adam"
  // "cce"/"categorical_crossentropy", "scce"/"sparse_categorical_crossentropy",
  // "mse"/"mean_squared_error", "bce"/"binary_crossentropy"
  std::string loss = "cce";
  float learning_rate = 0.01f;
  Shape input_shape{};  // per sample, e.g. {1, 32, 32}
  float momentum = 0.0f;  // SGD
  bool nesterov = false;  // SGD
  float beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-7f;  // Adam
  float weight_decay = 0.0f;
  bool decoupled_weight_decay = false;  // true: AdamW-style p -= lr wd p; false: L2 added to the gradient
  float label_smoothing = 0.0f;         // CE losses
  float bias_lr_scale = 1.0f;           // biases train at this multiple of the learning rate
  // true: a bias's weight decay is scaled with its learning rate (lr bias_lr_scale wd p);
  // false: it is not (lr wd p, as airbench, whose PyTorch param group sets wd / bias_lr).
  bool bias_lr_scales_weight_decay = true;
  bool from_logits = false;  // the last layer outputs logits (linear) for a CE/BCE loss
  uint64_t seed = 42;        // initial weights
  Device device = Device::CPU;
  // Precision policy of the conv/dense products (types.hpp Precision): "fp32" | "tf32" | "bf16".
  // Parameters, their gradients and the optimizer stay fp32 (and saved weights fp32) whatever it is.
  std::string precision = "fp32";
};

struct ValidationData {
  Tensor x, y;
};

// Learning rate over training, as a multiple of the compiled learning rate, evaluated every
// step at t = (steps done) / (steps in the whole fit):
//   constant  1
//   step      gamma ^ floor(epoch / step_epochs)
//   cosine    min_factor + (1 - min_factor) (1 + cos(pi t)) / 2
//   onecycle  linear warm-up from start_factor to 1 over warmup (a fraction of training), then
//             linear decay to end_factor (airbench's triangular schedule)
struct LRSchedule {
  std::string kind = "constant";  // "constant" | "step" | "cosine" | "onecycle"
  int step_epochs = 10;
  float gamma = 0.1f;
  float min_factor = 0.0f;
  float warmup = 0.2f;
  float start_factor = 0.2f, end_factor = 0.0f;
  // The multiplier at fractional progress t in [0, 1], epoch e of `epochs`.
  double factor(double t, int epoch) const;
  // The same for an already parsed kind (fit parses `kind` once, then calls this every step).
  double factor(ScheduleKind parsed_kind, double t, int epoch) const;
};

// On-the-fly augmentation of training batches (on the model's device), seeded per step.
struct Augmentation {
  int translate = 0;           // random shift of up to this many pixels per axis (reflect padding)
  std::string flip = "none";   // "none" | "random" (per image) | "alternate" (every other epoch per image)
  int cutout = 0;              // side of a zeroed square at a random place (0: off)
  bool enabled() const { return translate > 0 || flip != "none" || cutout > 0; }
};

// Data-dependent initialisation at the start of fit (initializers.hpp): every Conv2D with
// kernel_initializer "patch_whitening" is set from the patches of the first `images` images
// fit trains on (after the validation split), with eps relative to the mean patch variance
// (airbench's defaults). It happens only while the weights are fresh from compile: not after
// load, set_weights, a checkpoint restore, resume_from or any training step.
struct PatchWhiteningOptions {
  int64_t images = 5000;
  double eps = 5e-4;
};

struct FitOptions {
  // Epochs to train. A fraction trains the last epoch in part, as airbench's 9.9: the fit runs
  // ceil(epochs x steps per epoch) steps, the last epoch's being the first ones of its shuffled
  // order; the learning-rate schedule and weight averaging run over those steps, and the
  // History has one entry per epoch begun (10 for 9.9).
  double epochs = 1;
  int batch_size = 32;
  bool shuffle = true;
  // Train only the whole batches of each epoch's shuffled order (airbench's loader, PyTorch's
  // DataLoader(drop_last=True)); the rest of the order sits that epoch out. Data-parallel, a
  // batch is the global one (ranks x batch_size). With fewer rows than one batch, one step.
  bool drop_last = false;
  float validation_split = 0.0f;  // the LAST fraction of x/y, taken before shuffling (Keras)
  std::optional<ValidationData> validation_data{};
  int verbose = 1;  // 0 silent, 1 progress bar (one line per epoch when not a terminal), 2 one line per epoch
  uint64_t seed = 1;  // shuffling
  std::vector<CallbackPtr> callbacks{};
  int initial_epoch = 0;
  LRSchedule lr_schedule{};
  Augmentation augment{};
  // After every epoch, write a checkpoint here (weights, optimizer state, epoch, history),
  // atomically: the previous checkpoint survives until the new one is complete.
  std::string checkpoint_path{};
  // Continue the run saved in this checkpoint: its weights, optimizer state and epoch count
  // replace the model's, training starts at its epoch, and the returned History includes
  // the saved epochs. With the same data, options and thread count, 2 + resume + 2 epochs
  // give bit-identical weights to 4 straight on the CPU.
  std::string resume_from{};
  // Weight averaging for this run (the weight_averaging callback, run before `callbacks`).
  std::optional<WeightAveragingOptions> weight_averaging{};
  PatchWhiteningOptions patch_whitening{};
  // Data-parallel training across the MPI ranks this process was started with (mpirun -n N;
  // docs/DISTRIBUTED.md): every rank trains on its shard of each batch of N x batch_size rows,
  // gradients are averaged before every step, metrics are reduced, only rank 0 writes the
  // checkpoint. Callbacks run on every rank with the reduced epoch logs (write files from
  // rank 0 only: cnn::distributed::rank()). An error on one rank aborts the whole job. With
  // one process (or false) fit is unchanged.
  bool distributed = false;
  // With `distributed`: BatchNormalization's training statistics are those of the global
  // batch (every rank's rows, all-reduced in forward and backward: PyTorch's SyncBatchNorm)
  // instead of each rank's own (the default, as DDP); CPU and CUDA ranks (CUDA: NCCL). One
  // process: no effect (its batch is the global batch).
  bool sync_batchnorm = false;
  // With `distributed`: the gradients are all-reduced in buckets of about this many bytes,
  // each started as soon as backward has written it (top layers first), so the reduction of
  // one bucket runs while backward computes the next (CPU ranks: MPI_Iallreduce). 0: one
  // all-reduce of the whole buffer after backward. The weights are the same either way.
  int64_t allreduce_bucket_bytes = 1 << 20;
};

struct History {
  std::vector<double> loss, accuracy, val_loss, val_accuracy, seconds, learning_rate;
  int epochs() const { return static_cast<int>(loss.size()); }
};

// Where a training run stands: epochs completed and their history. Checkpoints hold it.
struct TrainingProgress {
  int epoch = 0;
  History history;
  int world_size = 1;  // the ranks of a distributed run (a resume needs as many)
};

// Test-time augmentation: the prediction is the mean of the model's outputs (logits when
// softmax is fused into the loss) over the image, its mirror (flip) and, with translate = t,
// each of those shifted by (-t, -t) and (+t, +t) pixels with reflect padding.
struct TestTimeAugmentation {
  bool flip = false;
  int translate = 0;
  // The shifted views' share of the average, in [0, 1] (airbench's 0.5: 1/4 each for the
  // image and its mirror, 1/8 for each of the four shifted views); negative: every view
  // weighs the same (the default). Needs translate > 0.
  double shifted_share = -1;
};

// How a model file says it is trained: its "training" section (docs/FORMATS.md), read into
// the options of fit and evaluate. `cnn train --model FILE` trains with exactly this (its
// flags override single fields), so
//   Sequential m = Sequential::from_json_file(path);
//   const TrainingRecipe r = read_training_recipe_file(path);
//   m.fit(x, y, r.fit);  m.evaluate(x_test, y_test, {.tta = r.tta});
// trains the same weights as the CLI. Without a section (or for keys it leaves out) the
// defaults are the CLI's: epochs 10, batch_size 32, validation_split 0.1, seed 1, shuffle.
struct TrainingRecipe {
  FitOptions fit;
  TestTimeAugmentation tta;
  TrainingRecipe();
};
// Reads a "training" section (an object). One key checker covers every level: an unknown
// key, a value of the wrong type, a name that is not valid, a non-finite or out-of-range
// number (epochs < 0, batch_size < 1, validation_split outside [0, 1), ...) raise cnn::Error
// naming "training.<key>".
TrainingRecipe read_training_recipe(const nlohmann::json& training);
// The recipe of a model description file (its "training" section, or the defaults when it
// has none). A saved model (.safetensors) holds no recipe: this gives the defaults for it.
TrainingRecipe read_training_recipe_file(const std::string& path);

struct EvaluateOptions {
  int batch_size = 256;
  bool per_class = false;  // also per-class accuracy and the confusion matrix
  TestTimeAugmentation tta{};
};

struct Evaluation {
  double loss = 0, accuracy = 0;
  std::vector<double> per_class_accuracy;        // [classes], with per_class
  std::vector<std::vector<int64_t>> confusion;   // [true][predicted], with per_class
};

// ONNX export (Sequential::export_onnx; the mapping layer by layer: docs/FORMATS.md). The graph
// takes "input" [N, per-sample input shape] float32 and gives "probabilities" [N, outputs]:
// what predict() returns. Names follow the layers' (summary()'s) names.
struct OnnxExportOptions {
  int opset = 17;         // the ai.onnx opset, 13 to 22 (Gelu is a node from 20, erf before)
  int64_t batch = 0;      // 0: a dynamic batch dimension "N"; else this fixed batch size
  std::string name{};         // graph name, metadata "name"; empty: the model's name, else "sequential"
  std::string description{};  // doc_string, metadata "description"; empty: the model's description
};

class Sequential {
 public:
  Sequential();
  Sequential(std::initializer_list<AnyLayer> layers);
  ~Sequential();
  Sequential(Sequential&&) noexcept;
  Sequential& operator=(Sequential&&) noexcept;
  Sequential(const Sequential&) = delete;
  Sequential& operator=(const Sequential&) = delete;

  void add(AnyLayer layer);

  // Infers every output shape and allocates and initialises the parameters. An impossible
  // architecture fails here with an error naming the layer (index, type) and the shapes.
  void compile(const std::string& optimizer, const std::string& loss, float learning_rate, Shape input_shape);
  void compile(const CompileOptions& options);
  bool compiled() const;

  // Moves parameters, optimizer state and all buffers to `device`.
  void to(Device device);
  Device device() const;

  History fit(const Tensor& x, const Tensor& y, double epochs);
  History fit(const Tensor& x, const Tensor& y, const FitOptions& options);
  Evaluation evaluate(const Tensor& x, const Tensor& y, const EvaluateOptions& options = {});
  Tensor predict(const Tensor& x, int batch_size = 256);  // probabilities, on the CPU
  // Every layer's output for the batch x (inference mode), as CPU tensors [n, layer shape].
  // The last one is what the last layer computes: logits when softmax is fused into the loss.
  std::vector<Tensor> layer_outputs(const Tensor& x);
  // One optimizer step on one batch; returns the batch's mean loss.
  double train_on_batch(const Tensor& x, const Tensor& y);
  // For benchmarks: copies one batch to the device once, then runs `steps` optimizer steps
  // on it back to back (no host synchronisation between them) and waits for the device.
  void train_steps(const Tensor& x, const Tensor& y, int steps);

  void summary(std::ostream& out) const;
  void summary() const;  // to stdout
  std::string summary_string() const;

  // One file with architecture and weights (safetensors layout; see docs/FORMATS.md).
  // Written to a temporary file, flushed, then renamed over `path`.
  void save(const std::string& path) const;
  static Sequential load(const std::string& path);
  // The compiled model, inference mode (BatchNormalization's running statistics, no Dropout),
  // as an ONNX file, written atomically. A layer ONNX cannot express exactly fails naming it;
  // a library built without protobuf fails saying so.
  void export_onnx(const std::string& path, const OnnxExportOptions& options = {}) const;
  // Training checkpoints: a model file plus optimizer state and progress (loadable by load()).
  void save_checkpoint(const std::string& path, const TrainingProgress& progress) const;
  static Sequential load_checkpoint(const std::string& path, TrainingProgress* progress = nullptr);
  // Replaces this model's weights and optimizer state with a checkpoint's (same architecture).
  void restore_checkpoint(const std::string& path, TrainingProgress* progress = nullptr);
  // Architecture (+ compile settings) as in models/*.json, and back. from_json checks a
  // "training" section (a bad one fails the load) but does not keep it: the recipe comes
  // from read_training_recipe / read_training_recipe_file.
  nlohmann::json to_json() const;
  static Sequential from_json(const nlohmann::json& model);
  static Sequential from_json_file(const std::string& path);

  size_t size() const;
  Layer& layer(size_t index);
  const Layer& layer(size_t index) const;
  const CompileOptions& compile_options() const;
  // Overrides used by fit (for the CLI): learning rate and optimizer hyper-parameters.
  void set_learning_rate(float lr);
  float learning_rate() const;
  // Switches to `options`' optimizer and its hyper-parameters (optimizer, learning_rate,
  // momentum, nesterov, beta1, beta2, epsilon, weight_decay, decoupled_weight_decay), keeping
  // the weights; the optimizer state and step count start again from zero. The other fields
  // of `options` are ignored (they shape the model; compile again to change them).
  void set_optimizer(const CompileOptions& options);
  // Switches the precision policy ("fp32" | "tf32" | "bf16"), keeping weights and optimizer state.
  void set_precision(const std::string& precision);
  Precision precision() const;
  // True from compile until the weights are replaced (set_weights, load, a checkpoint) or
  // trained: fit applies data-dependent initialisers only then.
  bool weights_fresh() const;

  int64_t count_params() const;      // all parameters
  int64_t trainable_params() const;  // of trainable layers
  // Named CPU copies of every parameter: "layers.<i>.<type>.weight" etc.
  std::vector<std::pair<std::string, Tensor>> weights() const;
  void set_weights(const std::vector<std::pair<std::string, Tensor>>& weights);
  // The flat parameter buffer (device-resident), in layer order.
  Tensor parameters() const;

  // Per-layer timing for benchmarks: while on, every layer call is followed by a device
  // synchronisation and timed (which slows training a little). Rows: each layer, then "loss"
  // and "optimizer"; milliseconds summed over the calls since the last reset.
  struct LayerTiming {
    std::string name;
    double forward_ms = 0, backward_ms = 0;
    int64_t calls = 0;
  };
  void set_profiling(bool on);
  std::vector<LayerTiming> layer_timings() const;
  void reset_timings();

  bool stop_training = false;  // set by a callback to end fit after the current epoch
  // Optional names of the output classes; saved with the model and used by `cnn predict`.
  std::vector<std::string> class_names;
  // Optional name and description (a model description's "name" and "description" keys);
  // saved with the model and written into ONNX exports (export_onnx's defaults).
  std::string name, description;

  struct State;  // the runtime (buffers, optimizer state), in src/host/model/state.hpp
  State& state();

 private:
  std::vector<std::shared_ptr<Layer>> layers_;
  std::unique_ptr<State> state_;
};

}  // namespace cnn
