// The step runner: forward, loss, backward and optimizer update over the arena, the NaN
// guard, CUDA-graph capture/replay of the training step, and per-layer profiling.
#include <cmath>
#include <vector>

#include "cnn/error.hpp"
#include "cnn/layers.hpp"
#include "kernels/device_memory.hpp"
#include "model/distributed.hpp"
#include "model/runner.hpp"
#include "model/runner_test_seam.hpp"
#include "model/loss.hpp"

namespace cnn {

namespace test_seam {
GradientFault& gradient_fault() {
  thread_local GradientFault fault;
  return fault;
}
}  // namespace test_seam

namespace {

// Each layer draws its own random numbers: the step's seed mixed with the layer index, the
// same in forward and backward (dropout recomputes its mask from it).
Exec layer_exec(Exec e, size_t layer) {
  e.seed = (e.seed ^ 0xD1B54A32D192ED03ull) * (uint64_t(layer) * 2 + 1) + uint64_t(layer);
  return e;
}

// Whether a segment trains in `epoch` (Layer::trainable_epochs).
bool segment_active(const Sequential::State::Segment& seg, int epoch) {
  return seg.until_epoch < 0 || epoch < seg.until_epoch;
}

template <class T>
bool all_finite(const T* p, size_t count, Device d) {
  if (count == 0) return true;
  std::vector<T> host(count);
  memory::copy(host.data(), Device::CPU, p, d, count * sizeof(T));
  for (T v : host)
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

template <class T>
Runner<T>::Runner(Sequential& model)
  requires std::is_same_v<T, float>
    : model_(model), s_(model.state()), arena_(s_.arena), device_(s_.device), owns_model_buffers_(true) {}

template <class T>
Runner<T>::Runner(Sequential& model, Arena<T>& arena, Device d, T* params, T* grads)
    : model_(model),
      s_(model.state()),
      arena_(arena),
      device_(d),
      owns_model_buffers_(false),
      params_(params),
      grads_(grads) {}

// The model's buffers are looked up at each use: a callback may replace them during fit.
template <class T>
T* Runner<T>::params() {
  if constexpr (std::is_same_v<T, float>)
    if (owns_model_buffers_) return s_.params.empty() ? nullptr : s_.params.data();
  return params_;
}
template <class T>
T* Runner<T>::grads() {
  if constexpr (std::is_same_v<T, float>)
    if (owns_model_buffers_) return s_.grads.empty() ? nullptr : s_.grads.data();
  return grads_;
}

template <class T>
Exec Runner<T>::exec(bool training) const {
  // The precision policy applies to float steps; double (gradcheck) checks the fp32 math.
  const Precision p = std::is_same_v<T, float> ? s_.precision : Precision::FP32;
  const ops::RankSum* across_ranks = training && owns_model_buffers_ && s_.sync_batchnorm ? s_.comm : nullptr;
  return Exec{device_, s_.cuda.get(), training, owns_model_buffers_ ? s_.step_seed : 0, p, across_ranks};
}

template <class T>
void Runner<T>::plan(int batch) {
  if (batch <= arena_.planned_batch) return;
  if (owns_model_buffers_) {
    // Recorded graphs point at the buffers being replaced (and at layer scratch that may grow).
    s_.graph_warm.clear();
#if CNN_WITH_CUDA
    if (s_.cuda) cuda::clear_graphs(*s_.cuda);
#endif
  }
  arena_.plan(s_, batch, device_);
}

// Times `body` into timings[row] when profiling (synchronising the device around it).
template <class T>
template <class Body>
void Runner<T>::timed(size_t row, bool is_forward, Body body) {
  if (!owns_model_buffers_ || !s_.profile) return body();
  memory::synchronize(device_);
  const double t0 = now_seconds();
  body();
  memory::synchronize(device_);
  auto& t = s_.timings[row];
  (is_forward ? t.forward_ms : t.backward_ms) += (now_seconds() - t0) * 1e3;
  if (is_forward) ++t.calls;
}

// The GPU's fp32 forward runs each planned chain of Dense layers as one kernel (not when
// profiling, which times layers one by one).
template <class T>
int Runner<T>::dense_chain_at(size_t i) const {
  if constexpr (std::is_same_v<T, float>) {
    if (device_ == Device::CUDA && s_.precision == Precision::FP32 && !(owns_model_buffers_ && s_.profile))
      return s_.dense_chain[i];
  }
  (void)i;
  return 0;
}

template <class T>
void Runner<T>::forward_dense_chain(int n, size_t first, int count, const T* x) {
#if CNN_WITH_CUDA
  if constexpr (std::is_same_v<T, float>) {
    ops::DenseChainLayer links[ops::kDenseChainMaxLayers];
    T* p = params();
    for (int l = 0; l < count; ++l) {
      const auto& d = static_cast<const Dense&>(model_.layer(first + size_t(l)));
      const float* w = p + s_.param_offset[first + size_t(l)];
      const int in = d.input_width(), out = d.options().units;
      links[l] = {in, out, w, d.options().use_bias ? w + int64_t(in) * out : nullptr, d.output_activation(),
                  arena_.act(first + size_t(l))};
    }
    ops::cuda::dense_chain_forward(*s_.cuda, n, x, links, count);
    return;
  }
#endif
  (void)n, (void)first, (void)count, (void)x;
  fail("dense_chain_forward: a chain of Dense layers runs on CUDA only");
}

// The GPU's fp32 forward runs a Conv2D and the pooling after it in one kernel where the
// conv's kernels allow (the fast direct kernel); false: run them one by one.
template <class T>
bool Runner<T>::forward_conv_with_pooling(int n, bool training, size_t i, const T* x) {
  if constexpr (std::is_same_v<T, float>) {
    if (device_ != Device::CUDA || (owns_model_buffers_ && s_.profile) || !s_.conv_then_pool[i]) return false;
    LayerBuffers<float> b;
    b.n = n;
    b.x = x;
    b.y = arena_.act(i);
    b.params = params() + s_.param_offset[i];
    auto& conv = static_cast<Conv2D&>(model_.layer(i));
    return conv.forward_with_pooling(layer_exec(exec(training), i), b, static_cast<const Pooling2D&>(model_.layer(i + 1)),
                                     arena_.act(i + 1));
  }
  (void)n, (void)training, (void)i, (void)x;
  return false;
}

template <class T>
void Runner<T>::forward(int n, bool training, size_t begin, const T* x) {
  const Exec e = exec(training);
  if (!x) x = arena_.input.data();
  T* p = params();
  for (size_t i = begin; i < model_.size(); ++i) {
    if (const int chain = dense_chain_at(i)) {
      forward_dense_chain(n, i, chain, x);
      i += size_t(chain) - 1;
      x = arena_.act(i);
      continue;
    }
    if (forward_conv_with_pooling(n, training, i, x)) {  // layers i and i + 1 in one kernel
      x = arena_.act(++i);
      continue;
    }
    LayerBuffers<T> b;
    b.n = n;
    b.x = x;
    b.y = arena_.act(i);
    b.params = p ? p + s_.param_offset[i] : nullptr;
    if (arena_.aliases_input[i] && b.x == b.y) continue;  // Flatten: its input is its output
    const Exec el = layer_exec(e, i);
    Layer& l = model_.layer(i);
    timed(i, true, [&] { l.forward(el, b); });
    x = b.y;
  }
}

template <class T>
void Runner<T>::loss_and_gradient(ops::TargetKind kind, int n, const T* out) {
  loss_wrote_last_bias_ = false;
  model_loss<T>(exec(true), s_, kind, n, out ? out : output(), arena_.labels.data(), arena_.targets.data(),
                arena_.row_loss.data(), arena_.grad_a.data());
}

template <class T>
void Runner<T>::loss_with_metrics(ops::TargetKind kind, int n, const T* out) {
  // A training step's last Dense bias gradient may come with the loss (the checkers run each
  // layer whole); under a precision policy the layer rounds its gradient first, so not then.
  const size_t last = model_.size() - 1;
  T* g = grads();
  T* bias_grad = nullptr;
  if (s_.last_bias_from_loss && !arena_.keep_input_grads && g && model_.layer(last).trainable &&
      s_.precision == Precision::FP32) {
    const auto& d = static_cast<const Dense&>(model_.layer(last));
    bias_grad = g + s_.param_offset[last] + int64_t(d.options().units) * d.input_width();
  }
  loss_wrote_last_bias_ = model_loss_with_metrics<T>(exec(true), s_, kind, n, out ? out : output(),
                                                     arena_.labels.data(), arena_.targets.data(),
                                                     arena_.row_loss.data(), arena_.grad_a.data(),
                                                     arena_.metrics.data(), bias_grad);
}

template <class T>
void Runner<T>::backward(int n, Buckets* buckets) {
  const Exec e = exec(true);
  const bool keep = arena_.keep_input_grads;
  const size_t L = model_.size();
  T* dy = arena_.grad_a.data();
  T* dx = arena_.grad_b.data();
  T* p = params();
  T* g = grads();
  for (size_t i = L; i-- > 0;) {
    Layer& l = model_.layer(i);
    if (!keep && !l.trainable && !s_.need_dx[i]) break;  // nothing below needs a gradient
    if (arena_.aliases_input[i]) {  // Flatten: dy is the gradient of its input as it is
      if (buckets) after_layer_backward(i, buckets);
      continue;
    }
    // Layers may overwrite dy: a kept gradient from above is handed down as a copy.
    if (keep && i + 1 < L) copy_values(e, int64_t(n) * s_.out_size[i], arena_.input_grad(i + 1), dy);
    LayerBuffers<T> b;
    b.n = n;
    b.x = i ? arena_.act(i - 1) : arena_.input.data();
    b.y = arena_.act(i);
    b.params = p ? p + s_.param_offset[i] : nullptr;
    b.grads = g ? g + s_.param_offset[i] : nullptr;
    b.dy = dy;
    b.dx = keep ? arena_.input_grad(i) : s_.need_dx[i] ? dx : nullptr;
    // A training step folds a conv's ReLU (...) gradient into the pooling above it; the
    // checkers, which keep every layer's input gradient, run each layer whole.
    if (!keep) {
      b.dx_activation = s_.activation_below[i];
      b.dy_before_activation = i + 1 < L && s_.activation_below[i + 1].kind != Activation::Linear;
      b.bias_grad_done = i + 1 == L && loss_wrote_last_bias_;
    }
    const Exec el = layer_exec(e, i);
    timed(i, false, [&] { l.backward(el, b); });
    if constexpr (std::is_same_v<T, double>) {
      const test_seam::GradientFault& fault = test_seam::gradient_fault();
      if (int(i) == fault.layer && b.grads)
        for (int64_t k = 0; k < l.param_count(); ++k) b.grads[k] *= T(fault.scale);
    }
    if (!keep) std::swap(dy, dx);
    if (buckets) after_layer_backward(i, buckets);
  }
  if (buckets) after_layer_backward(0, buckets);  // the layers the loop skipped, if it broke off
}

template <class T>
void Runner<T>::after_layer_backward(size_t layer, Buckets* b) {
  if constexpr (std::is_same_v<T, float>) {
    // allreduce_bucket_bytes 0: one bucket, sent after the last layer's backward.
    const int64_t begin = s_.param_offset[layer], bytes = s_.allreduce_bucket_bytes;
    if (layer == 0 || (bytes > 0 && (b->unsent_end - begin) * int64_t(sizeof(float)) >= bytes))
      send_gradients_from(layer == 0 ? 0 : begin, *b);
  }
}

template <class T>
void Runner<T>::send_gradients_from(int64_t begin, Buckets& b)
  requires std::is_same_v<T, float>
{
  const int64_t count = b.unsent_end - begin;
  if (count <= 0) return;
  float* g = s_.grads.data() + begin;
  // The NaN guard before anything leaves this rank: a bad gradient stops the job here, while
  // the other ranks wait for this bucket (they never update with it).
  if (b.guard && !all_finite(g, size_t(count), device_)) non_finite_error(b.n, *b.guard, true);
  s_.comm->start_bucket(g, count, device_, s_.gradient_weight, s_.cuda.get());
  b.unsent_end = begin;
}

template <class T>
ops::SgdConfig Runner<T>::sgd_config(const Sequential::State::Segment& seg) const
  requires std::is_same_v<T, float>
{
  const CompileOptions& o = s_.opt;
  return {o.learning_rate * s_.lr_factor * seg.lr_scale, o.momentum, o.nesterov, o.weight_decay * seg.decay_scale,
          o.decoupled_weight_decay};
}

template <class T>
ops::AdamConfig Runner<T>::adam_config(const Sequential::State::Segment& seg) const
  requires std::is_same_v<T, float>
{
  const CompileOptions& o = s_.opt;
  return {o.learning_rate * s_.lr_factor * seg.lr_scale,
          o.beta1,
          o.beta2,
          o.epsilon,
          o.weight_decay * seg.decay_scale,
          o.decoupled_weight_decay,
          s_.step};
}

template <class T>
void Runner<T>::stage_optimizer_scalars()
  requires std::is_same_v<T, float>
{
#if CNN_WITH_CUDA
  const size_t segments = s_.trainable_segments.size();
  if (segments == 0) return;
  const ops::OptimizerScalars* before = s_.optimizer_scalars.data();
  s_.optimizer_scalars.reserve(segments, device_);
  if (s_.optimizer_scalars.data() != before) {  // recorded graphs read the old slots
    s_.graph_warm.clear();
    cuda::clear_graphs(*s_.cuda);
  }
  const size_t bytes = segments * sizeof(ops::OptimizerScalars);
  auto* host = static_cast<ops::OptimizerScalars*>(cuda::upload_staging(*s_.cuda, bytes));
  for (size_t i = 0; i < segments; ++i) {
    const auto& seg = s_.trainable_segments[i];
    host[i] = s_.optimizer == OptimizerKind::Adam ? ops::adam_scalars(adam_config(seg)) : ops::sgd_scalars(sgd_config(seg));
  }
  cuda::upload(*s_.cuda, s_.optimizer_scalars.data(), host, bytes);
#endif
}

// On the CPU with the scalars as arguments; on CUDA with those stage_optimizer_scalars put in
// device memory for this step (the same values, computed by the same functions).
template <class T>
void Runner<T>::optimizer_step()
  requires std::is_same_v<T, float>
{
  const Exec e = exec(true);
  for (size_t i = 0; i < s_.trainable_segments.size(); ++i) {
    const auto& seg = s_.trainable_segments[i];
    if (!segment_active(seg, s_.epoch)) continue;
    const int64_t begin = seg.begin, count = seg.end - seg.begin;
    float* p = s_.params.data() + begin;
    const float* g = s_.grads.data() + begin;
    float* m = s_.opt_m.empty() ? nullptr : s_.opt_m.data() + begin;  // Adam's m, SGD's velocity
#if CNN_WITH_CUDA
    if (device_ == Device::CUDA) {
      const ops::OptimizerScalars* slot = s_.optimizer_scalars.data() + i;
      if (s_.optimizer == OptimizerKind::Adam)
        ops::cuda::adam_update(*s_.cuda, count, p, g, m, s_.opt_v.data() + begin, slot);
      else
        ops::cuda::sgd_update(*s_.cuda, count, p, g, m, slot);
      continue;
    }
#endif
    if (s_.optimizer == OptimizerKind::Adam)
      run::adam_update<float>(e, count, p, g, m, s_.opt_v.data() + begin, adam_config(seg));
    else
      run::sgd_update<float>(e, count, p, g, m, sgd_config(seg));
  }
}

template <class T>
void Runner<T>::begin_epoch(int epoch)
  requires std::is_same_v<T, float>
{
  bool changed = false;
  for (const auto& seg : s_.trainable_segments) changed = changed || segment_active(seg, s_.epoch) != segment_active(seg, epoch);
  s_.epoch = epoch;
  if (!changed) return;
  // Recorded graphs update the segments that were active when they were captured.
  s_.graph_warm.clear();
#if CNN_WITH_CUDA
  if (s_.cuda) cuda::clear_graphs(*s_.cuda);
#endif
}

template <class T>
Totals Runner<T>::read_metrics() {
  double host[2];
  memory::copy(host, Device::CPU, arena_.metrics.data(), device_, sizeof host);
  return {host[0], host[1]};
}

// ---- NaN/Inf guard -----------------------------------------------------------------

// What went non-finite first in the last step, in the order the step computed it: layer
// outputs (forward), then parameter gradients (backward, last layer first), then parameters.
template <class T>
std::string Runner<T>::first_non_finite(int n, bool backward_ran)
  requires std::is_same_v<T, float>
{
  const size_t L = model_.size();
  auto name = [&](size_t i) { return "layer " + std::to_string(i) + " (" + model_.layer(i).type() + ")"; };
  auto param_count = [&](size_t i) { return size_t(model_.layer(i).param_count()); };
  if (!all_finite(arena_.input.data(), size_t(n * s_.input_size), device_)) return "the input batch holds NaN/Inf";
  for (size_t i = 0; i < L; ++i)
    if (!all_finite(arena_.act(i), size_t(n * s_.out_size[i]), device_)) return "the output of " + name(i);
  if (backward_ran)
    for (size_t i = L; i-- > 0;)
      if (!all_finite(s_.grads.data() + s_.param_offset[i], param_count(i), device_))
        return "the parameter gradient of " + name(i);
  for (size_t i = 0; i < L; ++i)
    if (!all_finite(s_.params.data() + s_.param_offset[i], param_count(i), device_))
      return "the parameters of " + name(i);
  return "the loss itself (every layer output is finite)";
}

template <class T>
void Runner<T>::non_finite_error(int n, const StepPlace& at, bool backward_ran)
  requires std::is_same_v<T, float>
{
  const std::string where = device_ == Device::CPU || at.checked == at.step
                                ? "step " + std::to_string(at.step + 1)
                                : "one of steps " + std::to_string(at.checked + 1) + "-" + std::to_string(at.step + 1);
  fail("fit: training diverged in epoch ", at.epoch + 1, ", ", where, ": ", first_non_finite(n, backward_ran),
       " became NaN/Inf. Lower the learning rate, check the data for NaN/Inf, or add normalisation; the last "
       "checkpoint written (if any) is from before this epoch");
}

// ---- The training step -------------------------------------------------------------

// A step can be replayed from a CUDA graph when nothing in its kernels' arguments changes
// from step to step: the data and the optimizer's scalars (learning rate, schedule, Adam's
// bias correction) are uploaded before it, but a layer drawing random numbers (dropout)
// takes its seed as an argument, and data-parallel steps synchronise with other ranks.
// Profiling times layers one by one.
template <class T>
bool Runner<T>::graphable() const
  requires std::is_same_v<T, float>
{
  if (device_ != Device::CUDA || s_.profile || !s_.graphs_enabled || s_.comm) return false;
  for (size_t i = 0; i < model_.size(); ++i)
    if (model_.layer(i).uses_random()) return false;
  return true;
}

template <class T>
void Runner<T>::step_kernels(ops::TargetKind kind, int n, const StepPlace* guard)
  requires std::is_same_v<T, float>
{
  const size_t L = model_.size();
  forward(n, true);
  timed(L, true, [&] { loss_with_metrics(kind, n); });
  const bool check = guard && device_ == Device::CPU;
  if (check && !all_finite(arena_.row_loss.data(), size_t(n), device_)) non_finite_error(n, *guard, false);
  // Data-parallel: every rank updates with the mean gradient of all the ranks' rows, reduced
  // in buckets during backward (one bucket after it with allreduce_bucket_bytes 0).
  if (s_.comm && owns_model_buffers_ && !s_.grads.empty()) {
    Buckets b{s_.param_total, check ? guard : nullptr, n};
    backward(n, &b);
    s_.comm->finish_buckets();
  } else {
    backward(n);
    if (check && !s_.grads.empty() && !all_finite(s_.grads.data(), size_t(s_.param_total), device_))
      non_finite_error(n, *guard, true);
  }
  timed(L + 1, false, [&] { optimizer_step(); });
}

// On the CPU the loss and the gradients are checked before the update, so a NaN never
// reaches the weights and the message names the exact step. On the GPU a step is captured
// into a CUDA graph on its second run at a batch size and replayed after, which removes the
// per-kernel launch cost (small nets are launch-bound).
template <class T>
void Runner<T>::train_step(ops::TargetKind kind, int n, const StepPlace* guard)
  requires std::is_same_v<T, float>
{
  ++s_.step;
  s_.fresh_weights = false;  // trained: no data-dependent initialiser may replace them now
#if CNN_WITH_CUDA
  if (device_ == Device::CUDA) stage_optimizer_scalars();  // before any capture or replay
  if (graphable()) {
    // Graph keys include the target kind: it selects different loss kernels.
    const int64_t key = int64_t(n) * 4 + int64_t(kind);
    if (cuda::replay(*s_.cuda, key)) return;
    if (s_.graph_warm.count(key)) {  // warmed up: every buffer this step touches exists
      cuda::capture_begin(*s_.cuda);
      try {
        step_kernels(kind, n, guard);
      } catch (...) {
        try {
          cuda::capture_end(*s_.cuda, -1);  // leave capture mode; the partial graph is dropped below
        } catch (...) {
        }
        cuda::clear_graphs(*s_.cuda);
        s_.graphs_enabled = false;  // fall back to plain launches from now on
        throw;
      }
      cuda::capture_end(*s_.cuda, key);
      cuda::replay(*s_.cuda, key);
      return;
    }
    s_.graph_warm.insert(key);
  }
#endif
  step_kernels(kind, n, guard);
}

template class Runner<float>;
// Runner<double> (gradcheck) member by member: clang 14 instantiates the float-only members
// too in `template class Runner<double>;`, against their requires-clauses.
template Runner<double>::Runner(Sequential&, Arena<double>&, Device, double*, double*);
template void Runner<double>::plan(int);
template Exec Runner<double>::exec(bool) const;
template void Runner<double>::forward(int, bool, size_t, const double*);
template void Runner<double>::loss_and_gradient(ops::TargetKind, int, const double*);
template void Runner<double>::loss_with_metrics(ops::TargetKind, int, const double*);
template void Runner<double>::backward(int, Runner<double>::Buckets*);
template Totals Runner<double>::read_metrics();

// ---- Profiling ---------------------------------------------------------------------

void Sequential::set_profiling(bool on) {
  State& s = *state_;
  CNN_CHECK(s.compiled, "set_profiling: compile the model first");
  s.profile = on;
  if (s.timings.size() != layers_.size() + 2) reset_timings();
}

void Sequential::reset_timings() {
  State& s = *state_;
  s.timings.assign(layers_.size() + 2, {});
  for (size_t i = 0; i < layers_.size(); ++i) s.timings[i].name = std::to_string(i) + " " + layers_[i]->type();
  s.timings[layers_.size()].name = "loss";
  s.timings[layers_.size() + 1].name = "optimizer";
}

std::vector<Sequential::LayerTiming> Sequential::layer_timings() const { return state_->timings; }

}  // namespace cnn
