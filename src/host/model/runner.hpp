#pragma once
// One training step for every entry point: forward -> loss -> backward -> optimizer update.
// fit, train_on_batch, train_steps, evaluate, predict and layer_outputs run the model's own
// Runner<float>; compare_devices runs Runner<float> on both devices and gradcheck runs
// Runner<double> on the CPU, each with an arena that keeps every layer's input gradient.
#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cnn/model.hpp"
#include "layers/layer_impl.hpp"
#include "model/arena.hpp"
#include "model/state.hpp"

namespace cnn {

inline double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// Copies count values on the device of `e`.
template <class T>
void copy_values(const Exec& e, int64_t count, const T* src, T* dst) {
  run::copy<T>(e, count, src, dst);
}

// Where a training step is, for error messages.
struct StepPlace {
  int epoch = 0;    // 0-based
  int step = 0;     // 0-based within the epoch
  int checked = 0;  // GPU: the first step not yet covered by an earlier check
};

// The metrics accumulated on the device since they were last zeroed.
struct Totals {
  double loss_sum = 0, correct = 0;
};

template <class T>
class Runner {
 public:
  // The model's own step: its float arena, parameters and gradients on its device, its
  // profiling and CUDA graphs.
  explicit Runner(Sequential& model)
    requires std::is_same_v<T, float>;
  // A checker's step on device d with its own arena and parameter/gradient arrays.
  Runner(Sequential& model, Arena<T>& arena, Device d, T* params, T* grads);

  // Plans the arena for `batch` rows (a no-op when it already fits).
  void plan(int batch);
  Arena<T>& arena() { return arena_; }
  Exec exec(bool training) const;
  const T* output() { return arena_.act(model_.size() - 1); }

  // Layers begin.. (to the last) forward from x (default: the loaded input batch).
  void forward(int n, bool training, size_t begin = 0, const T* x = nullptr);
  // Row losses into row_loss and dL/d(output) into grad_a; `out` defaults to output().
  void loss_and_gradient(ops::TargetKind kind, int n, const T* out = nullptr);
  // loss_and_gradient, then the loss sum and correct count accumulated into metrics.
  void loss_with_metrics(ops::TargetKind kind, int n, const T* out = nullptr);
  // From the gradient in grad_a down through the layers, into the parameter gradients
  // (sending them in buckets as they are ready when `buckets` is given: data-parallel).
  struct Buckets {
    int64_t unsent_end = 0;            // gradient values [unsent_end, param_total) are sent
    const StepPlace* guard = nullptr;  // the CPU's NaN guard, bucket by bucket
    int n = 0;
  };
  void backward(int n, Buckets* buckets = nullptr);

  // One training step of the loaded batch: ++step, forward, loss and metrics, backward,
  // optimizer update; replayed from a CUDA graph where that is possible. With a guard, the
  // CPU checks the loss and gradients before the update.
  void train_step(ops::TargetKind kind, int n, const StepPlace* guard = nullptr)
    requires std::is_same_v<T, float>;
  // fit's epoch from now on: parameters with trainable_epochs stop training when it reaches theirs.
  void begin_epoch(int epoch)
    requires std::is_same_v<T, float>;
  Totals read_metrics();
  // fit's message when a step went NaN/Inf, naming what became non-finite first.
  [[noreturn]] void non_finite_error(int n, const StepPlace& at, bool backward_ran)
    requires std::is_same_v<T, float>;

 private:
  T* params();
  T* grads();
  void step_kernels(ops::TargetKind kind, int n, const StepPlace* guard)
    requires std::is_same_v<T, float>;
  void optimizer_step()
    requires std::is_same_v<T, float>;
  // The update's settings for one trainable segment at this step (learning rate with the
  // schedule and the segment's scale, Adam's step for its bias correction).
  ops::SgdConfig sgd_config(const Sequential::State::Segment& seg) const
    requires std::is_same_v<T, float>;
  ops::AdamConfig adam_config(const Sequential::State::Segment& seg) const
    requires std::is_same_v<T, float>;
  // CUDA: every segment's scalars for this step, computed on the host and uploaded in one
  // copy, ahead of the step and outside any graph capture.
  void stage_optimizer_scalars()
    requires std::is_same_v<T, float>;
  bool graphable() const
    requires std::is_same_v<T, float>;
  std::string first_non_finite(int n, bool backward_ran)
    requires std::is_same_v<T, float>;
  template <class Body>
  void timed(size_t row, bool is_forward, Body body);
  // The Dense layers from `i` that forward runs as one kernel (State::dense_chain), or 0.
  int dense_chain_at(size_t i) const;
  void forward_dense_chain(int n, size_t first, int count, const T* x);
  // Layers i (Conv2D) and i + 1 (pooling) in one kernel where it can; whether it did.
  bool forward_conv_with_pooling(int n, bool training, size_t i, const T* x);
  // Data-parallel with buckets (FitOptions::allreduce_bucket_bytes): after layer i's backward,
  // the gradients from its first value up to the first one not yet sent go out as one bucket
  // once they are at least that large (always at layer 0, and for the layers backward skipped).
  void send_gradients_from(int64_t begin, Buckets& b)
    requires std::is_same_v<T, float>;
  void after_layer_backward(size_t layer, Buckets* b);

  Sequential& model_;
  Sequential::State& s_;
  Arena<T>& arena_;
  Device device_;
  bool owns_model_buffers_;  // the model's own arena, parameters, profiling and graphs
  T* params_ = nullptr;      // a checker's arrays
  T* grads_ = nullptr;
  bool loss_wrote_last_bias_ = false;  // loss_with_metrics wrote the last layer's bias gradient
};

}  // namespace cnn
