// Sequential's loops: fit, evaluate, predict, train_on_batch. One training step:
//   batch rows -> input buffer -> forward through the layers -> loss (writes dL/d output and
//   accumulates loss/accuracy on the device) -> backward -> optimizer over the flat buffers.
// Metrics stay on the device and are read only at progress updates and epoch ends.
#include <bit>
#include <chrono>
#include <cmath>
#include <numeric>
#include <string_view>

#include "cnn/error.hpp"
#include "cnn/initializers.hpp"
#include "cnn/model.hpp"
#include "kernels/augment_map.hpp"
#include "kernels/device_memory.hpp"
#include "layers/layer_impl.hpp"
#include "model_loss.hpp"
#include "model_state.hpp"
#include "progress.hpp"

namespace cnn {
namespace {

using State = Sequential::State;
using Layers = std::vector<std::shared_ptr<Layer>>;

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// The targets of a whole data set, validated once, on the host.
struct Targets {
  ops::TargetKind kind = ops::TargetKind::Labels;
  std::vector<int32_t> labels;  // kind == Labels
  Tensor dense;                 // [N, cols] on the CPU otherwise
  int64_t cols = 0;
  int64_t rows = 0;
};

void check_inputs(const State& s, const Tensor& x, const char* what) {
  CNN_CHECK(s.compiled, what, ": compile the model first");
  CNN_CHECK(!x.empty(), what, ": x is empty");
  Shape expected{-1};
  expected.insert(expected.end(), s.input_shape.begin(), s.input_shape.end());
  bool ok = x.rank() == int(expected.size());
  for (int i = 1; ok && i < x.rank(); ++i) ok = x.dim(i) == expected[size_t(i)];
  CNN_CHECK(ok, what, ": x has shape ", shape_str(x.shape()), " but the model expects [N, ",
            shape_str(s.input_shape).substr(1));
}

Targets prepare_targets(const State& s, const Tensor& y, int64_t rows, const char* what) {
  CNN_CHECK(!y.empty(), what, ": y is empty");
  CNN_CHECK(y.dim(0) == rows, what, ": y has ", y.dim(0), " rows but x has ", rows);
  const int64_t K = s.output_size();
  Targets t;
  t.rows = rows;
  t.cols = K;
  t.kind = s.target_kind();
  const Tensor host = y.to(Device::CPU);
  const bool label_shaped = y.rank() == 1 || (y.rank() == 2 && y.dim(1) == 1);
  // Integer labels: required by scce, also accepted by cce (same loss as one-hot rows).
  if (t.kind == ops::TargetKind::Labels || (s.loss == LossKind::CategoricalCE && label_shaped && K > 1)) {
    CNN_CHECK(label_shaped, what, ": loss '", s.opt.loss, "' needs integer class labels [N], got y of shape ",
              shape_str(y.shape()));
    t.kind = ops::TargetKind::Labels;
    t.labels.resize(size_t(rows));
    for (int64_t i = 0; i < rows; ++i) {
      const float v = host.data()[i];
      CNN_CHECK(std::isfinite(v) && v == std::floor(v) && v >= 0 && v < float(K), what, ": label ", v, " at row ", i,
                " is not a class index in [0, ", K, ")");
      t.labels[size_t(i)] = int32_t(v);
    }
    return t;
  }
  const bool matches = (y.rank() == 2 && y.dim(1) == K) || (K == 1 && y.rank() == 1);
  CNN_CHECK(matches, what, ": loss '", s.opt.loss, "' needs targets of shape [", rows, ", ", K,
            "] (one row per sample, one value per output unit), got ", shape_str(y.shape()));
  for (int64_t i = 0; i < host.numel(); ++i)
    CNN_CHECK(std::isfinite(host.data()[i]), what, ": target at flat index ", i, " is not finite");
  t.dense = host.reshape({rows, K});
  return t;
}

void ensure_arena(State& s, const Layers& layers, int batch) {
  if (batch <= s.planned_batch) return;
  // Recorded graphs point at the buffers being replaced (and at layer scratch that may grow).
  s.graph_warm.clear();
#if CNN_WITH_CUDA
  if (s.cuda) cuda::clear_graphs(*s.cuda);
#endif
  const Device d = s.device;
  const size_t B = size_t(batch);
  s.act_offset.clear();
  int64_t total = 0, widest = s.input_size;
  for (size_t i = 0; i < layers.size(); ++i) {
    s.act_offset.push_back(total * batch);
    total += s.out_size[i];
    widest = std::max(widest, s.out_size[i]);
  }
  s.planned_batch = 0;
  try {
    s.input.reset(B * size_t(s.input_size), d);
    s.acts.reset(B * size_t(total), d);
    s.grad_a.reset(B * size_t(widest), d);
    s.grad_b.reset(B * size_t(widest), d);
    s.row_loss.reset(B, d);
    s.targets.reset(B * size_t(s.output_size()), d);
    s.labels.reset(B, d);
    s.metrics.reset(2, d);
    s.augmented.reset(B * size_t(s.input_size), d);
  } catch (const Error& e) {
    if (d != Device::CUDA || std::string_view(e.what()).find("out of memory") == std::string_view::npos) throw;
    // Say which batch size would fit: these buffers grow linearly with the batch (layer
    // scratch and cuBLAS workspaces come on top, hence the margin).
    for (Buffer<float>* b : {&s.input, &s.acts, &s.grad_a, &s.grad_b, &s.row_loss, &s.targets, &s.augmented})
      *b = Buffer<float>();
    const double per_sample = 4.0 * double(2 * s.input_size + total + 2 * widest + s.output_size() + 2);
    const double available = double(memory::cuda_available_bytes());
    const int64_t fits = std::min<int64_t>(batch - 1, int64_t(0.7 * available / per_sample));
    const double mib = 1024.0 * 1024.0;
    fail(e.what(), "\nThe activations and gradients of batch size ", batch, " need ",
         int64_t(per_sample * double(batch) / mib), " MiB (", int64_t(per_sample / 1024.0), " KiB per sample); ",
         int64_t(available / mib), " MiB are available. ",
         fits >= 1 ? "Try a batch size of " + std::to_string(std::bit_floor(uint64_t(fits))) + " or less (--batch-size)."
                   : std::string("Even one sample does not fit: use a smaller model or the CPU."));
  }
  s.planned_batch = batch;
}

// Copies the given rows of x and of the targets into the device buffers.
// Host memory to fill for an upload to the GPU: pinned, and copied without a host
// synchronisation (cuda::upload_staging / upload).
void* staging_for(State& s, size_t bytes) {
#if CNN_WITH_CUDA
  return cuda::upload_staging(*s.cuda, bytes);
#else
  (void)s;
  (void)bytes;
  fail("CUDA upload requested, but ", cuda_unavailable_reason());
#endif
}
void upload_staged(State& s, void* device_dst, const void* staging, size_t bytes) {
#if CNN_WITH_CUDA
  cuda::upload(*s.cuda, device_dst, staging, bytes);
#else
  (void)s;
  (void)device_dst;
  (void)staging;
  (void)bytes;
#endif
}

// Copies the given rows of x and of the targets into the device buffers. With
// mirror_epoch >= 0, images whose data-set index + mirror_epoch is odd are mirrored
// left-right on the way (the "alternate" flip: each image flips every other epoch).
void load_batch(State& s, const Tensor& x, const Targets& t, const int64_t* rows, int n, int64_t mirror_epoch = -1) {
  const int64_t in = s.input_size;
  const bool on_gpu = s.device != Device::CPU;
  float* dst = on_gpu ? static_cast<float*>(staging_for(s, size_t(n * in) * sizeof(float))) : s.input.data();
  const int64_t w = s.input_shape.back();
  for (int i = 0; i < n; ++i) {
    const float* src = x.data() + rows[i] * in;
    float* out = dst + int64_t(i) * in;
    if (mirror_epoch >= 0 && augment::alternate_flipped(rows[i], mirror_epoch)) {
      for (int64_t r = 0; r < in / w; ++r) std::reverse_copy(src + r * w, src + (r + 1) * w, out + r * w);
    } else {
      std::copy_n(src, in, out);
    }
  }
  if (on_gpu) upload_staged(s, s.input.data(), dst, size_t(n * in) * sizeof(float));

  if (t.kind == ops::TargetKind::Labels) {
    const size_t bytes = size_t(n) * sizeof(int32_t);
    int32_t* labels = on_gpu ? static_cast<int32_t*>(staging_for(s, bytes)) : s.labels.data();
    for (int i = 0; i < n; ++i) labels[i] = t.labels[size_t(rows[i])];
    if (on_gpu) upload_staged(s, s.labels.data(), labels, bytes);
  } else {
    const int64_t k = t.cols;
    const size_t bytes = size_t(n * k) * sizeof(float);
    float* dense = on_gpu ? static_cast<float*>(staging_for(s, bytes)) : s.targets.data();
    for (int i = 0; i < n; ++i) std::copy_n(t.dense.data() + rows[i] * k, k, dense + int64_t(i) * k);
    if (on_gpu) upload_staged(s, s.targets.data(), dense, bytes);
  }
}

// Times `body` into timings[row] when profiling (synchronising the device around it).
template <class Body>
void timed(State& s, size_t row, bool is_forward, Body body) {
  if (!s.profile) return body();
  memory::synchronize(s.device);
  const double t0 = now_seconds();
  body();
  memory::synchronize(s.device);
  auto& t = s.timings[row];
  (is_forward ? t.forward_ms : t.backward_ms) += (now_seconds() - t0) * 1e3;
  if (is_forward) ++t.calls;
}

// Each layer draws its own random numbers: the step's seed mixed with the layer index, the
// same in forward and backward (dropout recomputes its mask from it).
Exec layer_exec(Exec e, size_t layer) {
  e.seed = (e.seed ^ 0xD1B54A32D192ED03ull) * (uint64_t(layer) * 2 + 1) + uint64_t(layer);
  return e;
}

void forward(State& s, const Layers& layers, int n, bool training) {
  const Exec e = s.exec(training);
  const float* x = s.input.data();
  float* p = s.params.empty() ? nullptr : s.params.data();
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerBuffers<float> b;
    b.n = n;
    b.x = x;
    b.y = s.act(i);
    b.params = p ? p + s.param_offset[i] : nullptr;
    const Exec el = layer_exec(e, i);
    timed(s, i, true, [&] { layers[i]->forward(el, b); });
    x = b.y;
  }
}

// Loss of the batch's outputs: row losses, dL/d(output) into grad_a, metrics accumulated.
// `out` is the model's output for the batch: the last layer's, or TTA's averaged one.
void loss_and_gradient(State& s, const Layers& layers, ops::TargetKind kind, int n, const float* out = nullptr) {
  const Exec e = s.exec(true);
  const int K = int(s.output_size());
  if (!out) out = s.act(layers.size() - 1);
  const int32_t* labels = s.labels.data();
  const float* targets = s.targets.data();
  model_loss<float>(e, s, kind, n, out, labels, targets, s.row_loss.data(), s.grad_a.data());
  const bool logits = s.fused && s.loss == LossKind::BinaryCE;
  CNN_RUN_OP(e, float, accumulate_metrics, n, K, s.row_loss.data(), out, kind, labels, targets, logits, s.metrics.data());
}

void backward(State& s, const Layers& layers, int n) {
  const Exec e = s.exec(true);
  float* dy = s.grad_a.data();
  float* dx = s.grad_b.data();
  float* p = s.params.empty() ? nullptr : s.params.data();
  float* g = s.grads.empty() ? nullptr : s.grads.data();
  for (size_t i = layers.size(); i-- > 0;) {
    Layer& l = *layers[i];
    if (!l.trainable && !s.need_dx[i]) break;  // nothing below needs a gradient
    LayerBuffers<float> b;
    b.n = n;
    b.x = i ? s.act(i - 1) : s.input.data();
    b.y = s.act(i);
    b.params = p ? p + s.param_offset[i] : nullptr;
    b.grads = g ? g + s.param_offset[i] : nullptr;
    b.dy = dy;
    b.dx = s.need_dx[i] ? dx : nullptr;
    const Exec el = layer_exec(e, i);
    timed(s, i, false, [&] { l.backward(el, b); });
    std::swap(dy, dx);
  }
}

void optimizer_step(State& s) {
  const Exec e = s.exec(true);
  const CompileOptions& o = s.opt;
  for (const auto& seg : s.trainable_segments) {
    const int64_t begin = seg.begin, count = seg.end - seg.begin;
    float* p = s.params.data() + begin;
    const float* g = s.grads.data() + begin;
    const float lr = o.learning_rate * s.lr_factor * seg.lr_scale;
    if (s.optimizer == OptimizerKind::Adam) {
      const ops::AdamConfig cfg{lr, o.beta1, o.beta2, o.epsilon, o.weight_decay, o.decoupled_weight_decay, s.step};
      CNN_RUN_OP(e, float, adam_update, count, p, g, s.opt_m.data() + begin, s.opt_v.data() + begin, cfg);
    } else {
      const ops::SgdConfig cfg{lr, o.momentum, o.nesterov, o.weight_decay, o.decoupled_weight_decay};
      float* v = s.opt_m.empty() ? nullptr : s.opt_m.data() + begin;
      CNN_RUN_OP(e, float, sgd_update, count, p, g, v, cfg);
    }
  }
}

struct Totals {
  double loss_sum = 0, correct = 0;
};
Totals read_metrics(State& s) {
  double host[2];
  memory::copy(host, Device::CPU, s.metrics.data(), s.device, sizeof host);
  return {host[0], host[1]};
}

// Accuracy's denominator: rows, or every element for per-element (binary) targets.
double accuracy_units(const State& s, ops::TargetKind kind, int64_t rows) {
  return kind == ops::TargetKind::Binary ? double(rows) * double(s.output_size()) : double(rows);
}

// ---- NaN/Inf guard -----------------------------------------------------------------

template <class T>
bool all_finite(const T* p, size_t count, Device d) {
  if (count == 0) return true;
  std::vector<T> host(count);
  memory::copy(host.data(), Device::CPU, p, d, count * sizeof(T));
  for (T v : host)
    if (!std::isfinite(v)) return false;
  return true;
}

// What went non-finite first in the last step, in the order the step computed it: layer
// outputs (forward), then parameter gradients (backward, last layer first), then parameters.
std::string first_non_finite(State& s, const Layers& layers, int n, bool backward_ran) {
  auto name = [&](size_t i) { return "layer " + std::to_string(i) + " (" + layers[i]->type() + ")"; };
  if (!all_finite(s.input.data(), size_t(n * s.input_size), s.device)) return "the input batch holds NaN/Inf";
  for (size_t i = 0; i < layers.size(); ++i)
    if (!all_finite(s.act(i), size_t(n * s.out_size[i]), s.device)) return "the output of " + name(i);
  if (backward_ran)
    for (size_t i = layers.size(); i-- > 0;)
      if (!all_finite(s.grads.data() + s.param_offset[i], size_t(layers[i]->param_count()), s.device))
        return "the parameter gradient of " + name(i);
  for (size_t i = 0; i < layers.size(); ++i)
    if (!all_finite(s.params.data() + s.param_offset[i], size_t(layers[i]->param_count()), s.device))
      return "the parameters of " + name(i);
  return "the loss itself (every layer output is finite)";
}

// Where a training step is, for error messages.
struct StepPlace {
  int epoch = 0;     // 0-based
  int step = 0;      // 0-based within the epoch
  int checked = 0;   // GPU: the first step not yet covered by an earlier check
};

[[noreturn]] void non_finite_error(State& s, const Layers& layers, int n, const StepPlace& at, bool backward_ran) {
  const std::string where = s.device == Device::CPU || at.checked == at.step
                                ? "step " + std::to_string(at.step + 1)
                                : "one of steps " + std::to_string(at.checked + 1) + "-" + std::to_string(at.step + 1);
  fail("fit: training diverged in epoch ", at.epoch + 1, ", ", where, ": ", first_non_finite(s, layers, n, backward_ran),
       " became NaN/Inf. Lower the learning rate, check the data for NaN/Inf, or add normalisation; the last "
       "checkpoint written (if any) is from before this epoch");
}

// One training step. On the CPU the loss and the gradients are checked before the update,
// so a NaN never reaches the weights and the message names the exact step.
// A step can be replayed from a CUDA graph when nothing in it changes from step to step
// but the data: SGD (Adam's bias correction changes every step), a constant learning rate,
// and no layer drawing random numbers (dropout). Profiling times layers one by one.
[[maybe_unused]] bool graphable(const State& s, const Layers& layers) {
  if (s.device != Device::CUDA || s.profile || !s.graphs_enabled || s.optimizer != OptimizerKind::SGD ||
      s.lr_factor != 1.0f || !s.constant_lr)
    return false;
  for (const auto& l : layers)
    if (l->uses_random()) return false;
  return true;
}

void step_kernels(State& s, const Layers& layers, ops::TargetKind kind, int n, const StepPlace* guard) {
  forward(s, layers, n, true);
  timed(s, layers.size(), true, [&] { loss_and_gradient(s, layers, kind, n); });
  const bool check = guard && s.device == Device::CPU;
  if (check && !all_finite(s.row_loss.data(), size_t(n), s.device)) non_finite_error(s, layers, n, *guard, false);
  backward(s, layers, n);
  if (check && !s.grads.empty() && !all_finite(s.grads.data(), size_t(s.param_total), s.device))
    non_finite_error(s, layers, n, *guard, true);
  timed(s, layers.size() + 1, false, [&] { optimizer_step(s); });
}

// One training step. On the CPU the loss and the gradients are checked before the update,
// so a NaN never reaches the weights and the message names the exact step. On the GPU a
// step is captured into a CUDA graph on its second run at a batch size and replayed after,
// which removes the per-kernel launch cost (small nets are launch-bound).
void run_train_step(State& s, const Layers& layers, ops::TargetKind kind, int n, const StepPlace* guard = nullptr) {
  ++s.step;
  s.fresh_weights = false;  // trained: no data-dependent initialiser may replace them now
#if CNN_WITH_CUDA
  if (graphable(s, layers)) {
    // Graph keys include the target kind: it selects different loss kernels.
    const int64_t key = int64_t(n) * 4 + int64_t(kind);
    if (cuda::replay(*s.cuda, key)) return;
    if (s.graph_warm.count(key)) {  // warmed up: every buffer this step touches exists
      cuda::capture_begin(*s.cuda);
      try {
        step_kernels(s, layers, kind, n, guard);
      } catch (...) {
        try {
          cuda::capture_end(*s.cuda, -1);  // leave capture mode; the partial graph is dropped below
        } catch (...) {
        }
        cuda::clear_graphs(*s.cuda);
        s.graphs_enabled = false;  // fall back to plain launches from now on
        throw;
      }
      cuda::capture_end(*s.cuda, key);
      cuda::replay(*s.cuda, key);
      return;
    }
    s.graph_warm.insert(key);
  }
#endif
  step_kernels(s, layers, kind, n, guard);
}

// Inference forward of the loaded batch, averaged over the test-time augmentation views:
// the image and its mirror (tta.flip), each also shifted by (-t, -t) and (+t, +t) pixels
// with reflect padding (tta.translate = t). Returns the averaged last-layer output (logits
// when softmax is fused), in grad_b; without TTA, the last layer's own buffer.
const float* forward_tta(State& s, const Layers& layers, int n, const TestTimeAugmentation& tta) {
  if (!tta.flip && tta.translate == 0) {
    forward(s, layers, n, false);
    return s.act(layers.size() - 1);
  }
  CNN_CHECK(s.input_shape.size() == 3, "evaluate: test-time augmentation needs image inputs, the model takes ",
            shape_str(s.input_shape));
  const int c = int(s.input_shape[0]), h = int(s.input_shape[1]), w = int(s.input_shape[2]);
  CNN_CHECK(tta.translate >= 0 && tta.translate < h && tta.translate < w, "evaluate: tta.translate must be in [0, ",
            std::min(h, w), "), got ", tta.translate);
  const Exec e = s.exec(false);
  const int64_t in = int64_t(n) * s.input_size, out = int64_t(n) * s.output_size();
  float* original = s.augmented.data();  // keeps the loaded batch while views replace it
  float* mean = s.grad_b.data();
  CNN_RUN_OP(e, float, activation_forward, ActivationSpec{}, in, s.input.data(), original);
  std::vector<std::pair<bool, int>> views{{false, 0}};  // (mirrored, shift)
  if (tta.flip) views.push_back({true, 0});
  if (tta.translate > 0)
    for (size_t v = 0, base = views.size(); v < base; ++v)
      for (int d : {-tta.translate, tta.translate}) views.push_back({views[v].first, d});
  for (size_t v = 0; v < views.size(); ++v) {
    const auto [mirrored, shift] = views[v];
    const float* src = original;
    if (mirrored) {
      CNN_RUN_OP(e, float, flip_images, n, c, h, w, original, s.input.data());
      src = s.input.data();
    }
    if (shift != 0) {
      float* dst = mirrored ? s.grad_a.data() : s.input.data();  // grad_a is free during inference
      CNN_RUN_OP(e, float, translate_images, n, c, h, w, src, dst, shift, shift);
      if (dst != s.input.data()) CNN_RUN_OP(e, float, activation_forward, ActivationSpec{}, in, dst, s.input.data());
    } else if (!mirrored) {
      CNN_RUN_OP(e, float, activation_forward, ActivationSpec{}, in, original, s.input.data());
    }
    forward(s, layers, n, false);
    // Running mean of the views' outputs: mean += (out - mean) / (v + 1).
    if (v == 0) CNN_RUN_OP(e, float, activation_forward, ActivationSpec{}, out, s.act(layers.size() - 1), mean);
    else CNN_RUN_OP(e, float, lerp, out, mean, s.act(layers.size() - 1), 1.0f / float(v + 1));
  }
  return mean;
}

Evaluation evaluate_impl(State& s, const Layers& layers, const Tensor& x, const Targets& t, const EvaluateOptions& o) {
  CNN_CHECK(o.batch_size > 0, "evaluate: batch_size must be positive, got ", o.batch_size);
  const int64_t N = x.dim(0);
  const int bs = int(std::min<int64_t>(o.batch_size, N));
  ensure_arena(s, layers, bs);
  s.metrics.zero();
  const int K = int(s.output_size());
  Evaluation ev;
  if (o.per_class) ev.confusion.assign(size_t(K), std::vector<int64_t>(size_t(K), 0));
  std::vector<int64_t> rows(static_cast<size_t>(bs));
  std::vector<float> out;
  for (int64_t begin = 0; begin < N; begin += bs) {
    const int n = int(std::min<int64_t>(bs, N - begin));
    std::iota(rows.begin(), rows.begin() + n, begin);
    load_batch(s, x, t, rows.data(), n);
    const float* logits = forward_tta(s, layers, n, o.tta);
    loss_and_gradient(s, layers, t.kind, n, logits);
    if (o.per_class) {
      out.resize(size_t(n) * K);
      memory::copy(out.data(), Device::CPU, logits, s.device, out.size() * sizeof(float));
      for (int i = 0; i < n; ++i) {
        const float* r = out.data() + int64_t(i) * K;
        const int pred = int(std::max_element(r, r + K) - r);
        int truth;
        if (t.kind == ops::TargetKind::Labels) {
          truth = t.labels[size_t(begin + i)];
        } else {
          const float* tr = t.dense.data() + (begin + i) * K;
          truth = int(std::max_element(tr, tr + K) - tr);
        }
        ev.confusion[size_t(truth)][size_t(pred)]++;
      }
    }
  }
  const Totals tot = read_metrics(s);
  ev.loss = tot.loss_sum / double(N);
  ev.accuracy = tot.correct / accuracy_units(s, t.kind, N);
  if (o.per_class) {
    for (int c = 0; c < K; ++c) {
      int64_t total = 0;
      for (int64_t v : ev.confusion[size_t(c)]) total += v;
      ev.per_class_accuracy.push_back(total ? double(ev.confusion[size_t(c)][size_t(c)]) / double(total)
                                            : std::numeric_limits<double>::quiet_NaN());
    }
  }
  return ev;
}

uint64_t step_seed(uint64_t seed, int epoch, int step) {
  Rng rng(seed * 0x9E3779B97F4A7C15ull ^ (uint64_t(epoch) << 32 | uint32_t(step)));
  return rng.next_u64();
}

// Validates fit's augmentation options against the model's input shape.
ops::AugmentSpec augment_spec(const State& s, const Augmentation& a) {
  ops::AugmentSpec spec;
  if (!a.enabled()) return spec;
  CNN_CHECK(s.input_shape.size() == 3, "fit: augmentation needs image inputs [channels, height, width], the model takes ",
            shape_str(s.input_shape));
  const int64_t h = s.input_shape[1], w = s.input_shape[2];
  CNN_CHECK(a.translate >= 0 && a.translate < h && a.translate < w, "fit: augment.translate must be in [0, ",
            std::min(h, w), "), got ", a.translate);
  CNN_CHECK(a.cutout >= 0 && a.cutout <= h && a.cutout <= w, "fit: augment.cutout must be in [0, ", std::min(h, w),
            "], got ", a.cutout);
  spec.translate = a.translate;
  spec.cutout = a.cutout;
  // alternate: mirrored while loading
  spec.flip = parse_flip(a.flip, "fit") == FlipMode::Random ? FlipMode::Random : FlipMode::None;
  return spec;
}

// Random translation / flip / cutout of the loaded batch, in place, on the model's device.
void augment_batch(State& s, int n, const ops::AugmentSpec& spec) {
  const Exec e = s.exec(true);
  const int c = int(s.input_shape[0]), h = int(s.input_shape[1]), w = int(s.input_shape[2]);
  CNN_RUN_OP(e, float, augment_images, n, c, h, w, s.input.data(), s.augmented.data(), spec, s.step_seed);
  CNN_RUN_OP(e, float, activation_forward, ActivationSpec{}, int64_t(n) * s.input_size, s.augmented.data(), s.input.data());
}

void check_schedule(const LRSchedule& l) {
  parse_schedule(l.kind, "fit");
  CNN_CHECK(l.step_epochs > 0, "fit: lr_schedule.step_epochs must be positive, got ", l.step_epochs);
  CNN_CHECK(l.warmup >= 0 && l.warmup < 1, "fit: lr_schedule.warmup must be in [0, 1), got ", l.warmup);
  for (float f : {l.gamma, l.min_factor, l.start_factor, l.end_factor})
    CNN_CHECK(std::isfinite(f) && f >= 0, "fit: lr_schedule factors must be finite and >= 0");
}

}  // namespace

double LRSchedule::factor(double t, int epoch) const { return factor(parse_schedule(kind), t, epoch); }

double LRSchedule::factor(ScheduleKind parsed_kind, double t, int epoch) const {
  t = std::clamp(t, 0.0, 1.0);
  if (parsed_kind == ScheduleKind::Step) return std::pow(double(gamma), double(epoch / std::max(step_epochs, 1)));
  if (parsed_kind == ScheduleKind::Cosine)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t));
  if (parsed_kind == ScheduleKind::OneCycle) {
    if (t < warmup) return start_factor + (1.0 - start_factor) * t / warmup;
    return 1.0 + (end_factor - 1.0) * (t - warmup) / (1.0 - warmup);
  }
  return 1.0;
}

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

History Sequential::fit(const Tensor& x, const Tensor& y, int epochs) {
  FitOptions o;
  o.epochs = epochs;
  return fit(x, y, o);
}

History Sequential::fit(const Tensor& x_in, const Tensor& y_in, const FitOptions& o) {
  if (o.weight_averaging) {  // as a callback that runs before the others
    FitOptions with = o;
    with.callbacks.insert(with.callbacks.begin(), weight_averaging(*std::exchange(with.weight_averaging, std::nullopt)));
    return fit(x_in, y_in, with);
  }
  State& s = *state_;
  check_inputs(s, x_in, "fit");
  CNN_CHECK(o.epochs >= 0, "fit: epochs must be >= 0, got ", o.epochs);
  CNN_CHECK(o.batch_size > 0, "fit: batch_size must be positive, got ", o.batch_size);
  CNN_CHECK(o.validation_split >= 0 && o.validation_split < 1, "fit: validation_split must be in [0, 1), got ",
            o.validation_split);
  CNN_CHECK(!(o.validation_split > 0 && o.validation_data), "fit: give validation_split or validation_data, not both");
  check_schedule(o.lr_schedule);
  const ScheduleKind schedule = parse_schedule(o.lr_schedule.kind, "fit");
  s.constant_lr = schedule == ScheduleKind::Constant;
  CNN_CHECK(o.initial_epoch >= 0 && o.initial_epoch <= o.epochs, "fit: initial_epoch ", o.initial_epoch,
            " must be in [0, epochs]");
  if (o.resume_from.empty())
    for (const InitializationReport& r : apply_data_dependent_initializers(*this, x_in, o))
      if (o.verbose > 0) std::printf("%s\n", r.describe().c_str());
  const Tensor x_all = x_in.to(Device::CPU);
  CNN_CHECK(y_in.dim(0) == x_all.dim(0), "fit: y has ", y_in.dim(0), " rows but x has ", x_all.dim(0));

  // Keras's split: the last fraction, before shuffling.
  const int64_t N_all = x_all.dim(0);
  const int64_t n_val = int64_t(double(N_all) * o.validation_split);
  CNN_CHECK(o.validation_split == 0 || (n_val > 0 && n_val < N_all), "fit: validation_split ", o.validation_split,
            " of ", N_all, " samples leaves an empty training or validation set");
  const Tensor x = n_val ? x_all.slice(0, N_all - n_val) : x_all;
  const Tensor y = n_val ? y_in.to(Device::CPU).slice(0, N_all - n_val) : y_in;
  const Targets targets = prepare_targets(s, y, x.dim(0), "fit");

  std::optional<Tensor> x_val;
  std::optional<Targets> t_val;
  if (n_val) {
    x_val = x_all.slice(N_all - n_val, N_all);
    t_val = prepare_targets(s, y_in.to(Device::CPU).slice(N_all - n_val, N_all), n_val, "fit (validation_split)");
  } else if (o.validation_data) {
    check_inputs(s, o.validation_data->x, "fit (validation_data)");
    x_val = o.validation_data->x.to(Device::CPU);
    t_val = prepare_targets(s, o.validation_data->y, x_val->dim(0), "fit (validation_data)");
  }

  const int64_t N = x.dim(0);
  const int bs = int(std::min<int64_t>(o.batch_size, N));
  const int steps = int((N + bs - 1) / bs);
  const ops::AugmentSpec augment = augment_spec(s, o.augment);
  const bool alternate_flip = parse_flip(o.augment.flip) == FlipMode::Alternate;
  ensure_arena(s, layers_, bs);
  std::vector<int64_t> order(static_cast<size_t>(N));
  bool batch_logs = false;
  for (const auto& cb : o.callbacks) batch_logs = batch_logs || (cb && cb->wants_batch_logs());

  History history;
  int first_epoch = o.initial_epoch;
  if (!o.resume_from.empty()) {
    TrainingProgress progress;
    restore_checkpoint(o.resume_from, &progress);
    history = progress.history;
    first_epoch = progress.epoch;
  }
  stop_training = false;
  for (const auto& cb : o.callbacks) cb->on_train_begin(*this);
  for (int epoch = first_epoch; epoch < o.epochs && !stop_training; ++epoch) {
    for (const auto& cb : o.callbacks) cb->on_epoch_begin(*this, epoch);
    if (o.verbose > 0) std::printf("Epoch %d/%d\n", epoch + 1, o.epochs);
    ProgressBar bar(steps, o.verbose);
    // Each epoch's order depends only on (seed, epoch), so a resumed run shuffles the same.
    std::iota(order.begin(), order.end(), 0);
    if (o.shuffle) {
      Rng rng(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(epoch));
      for (int64_t i = N - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng.below(uint64_t(i + 1)))]);
    }
    s.metrics.zero();
    const double start = now_seconds();
    int64_t seen = 0;
    StepPlace place{epoch, 0, 0};
    const int64_t mirror_epoch = alternate_flip ? epoch : -1;
    for (int step = 0; step < steps; ++step) {
      const int n = int(std::min<int64_t>(bs, N - int64_t(step) * bs));
      load_batch(s, x, targets, order.data() + int64_t(step) * bs, n, mirror_epoch);
      place.step = step;
      s.step_seed = step_seed(o.seed, epoch, step);
      if (augment.translate > 0 || augment.flip == ops::FlipMode::Random || augment.cutout > 0)
        augment_batch(s, n, augment);
      s.lr_factor =
          float(o.lr_schedule.factor(schedule, double(int64_t(epoch) * steps + step) / (double(o.epochs) * steps), epoch));
      run_train_step(s, layers_, targets.kind, n, &place);
      for (const auto& cb : o.callbacks) cb->on_step_end(*this, s.step);
      seen += n;
      const double elapsed = now_seconds() - start;
      const bool draw = bar.due(step + 1, elapsed);
      if (draw || batch_logs) {
        const Totals tot = read_metrics(s);
        if (!std::isfinite(tot.loss_sum)) non_finite_error(s, layers_, n, place, true);
        place.checked = step + 1;
        const BatchLogs logs{step, tot.loss_sum / double(seen), tot.correct / accuracy_units(s, targets.kind, seen)};
        if (draw) bar.update(step + 1, elapsed, {{"loss", logs.loss}, {"accuracy", logs.accuracy}});
        for (const auto& cb : o.callbacks) cb->on_batch_end(*this, logs);
      }
    }
    const Totals tot = read_metrics(s);
    if (!std::isfinite(tot.loss_sum)) {
      place.step = steps - 1;
      non_finite_error(s, layers_, int(std::min<int64_t>(bs, N - int64_t(steps - 1) * bs)), place, true);
    }
    EpochLogs logs;
    logs.epoch = epoch;
    logs.loss = tot.loss_sum / double(N);
    logs.accuracy = tot.correct / accuracy_units(s, targets.kind, N);
    logs.learning_rate = double(s.opt.learning_rate) * s.lr_factor;
    if (x_val) {
      const Evaluation ev = evaluate_impl(s, layers_, *x_val, *t_val, {});
      logs.val_loss = ev.loss;
      logs.val_accuracy = ev.accuracy;
    }
    logs.seconds = now_seconds() - start;
    bar.finish(logs.seconds, {{"loss", logs.loss},
                              {"accuracy", logs.accuracy},
                              {"val_loss", logs.val_loss},
                              {"val_accuracy", logs.val_accuracy}});
    history.loss.push_back(logs.loss);
    history.accuracy.push_back(logs.accuracy);
    history.val_loss.push_back(logs.val_loss);
    history.val_accuracy.push_back(logs.val_accuracy);
    history.seconds.push_back(logs.seconds);
    history.learning_rate.push_back(logs.learning_rate);
    if (!o.checkpoint_path.empty()) save_checkpoint(o.checkpoint_path, {epoch + 1, history});
    for (const auto& cb : o.callbacks) cb->on_epoch_end(*this, logs);
  }
  s.lr_factor = 1.0f;
  s.constant_lr = true;
  for (const auto& cb : o.callbacks) cb->on_train_end(*this);
  return history;
}

Evaluation Sequential::evaluate(const Tensor& x_in, const Tensor& y, const EvaluateOptions& o) {
  State& s = *state_;
  check_inputs(s, x_in, "evaluate");
  const Tensor x = x_in.to(Device::CPU);
  const Targets t = prepare_targets(s, y, x.dim(0), "evaluate");
  return evaluate_impl(s, layers_, x, t, o);
}

Tensor Sequential::predict(const Tensor& x_in, int batch_size) {
  State& s = *state_;
  check_inputs(s, x_in, "predict");
  CNN_CHECK(batch_size > 0, "predict: batch_size must be positive, got ", batch_size);
  const Tensor x = x_in.to(Device::CPU);
  const int64_t N = x.dim(0), K = s.output_size();
  const int bs = int(std::min<int64_t>(batch_size, N));
  ensure_arena(s, layers_, bs);
  Tensor out({N, K});
  for (int64_t begin = 0; begin < N; begin += bs) {
    const int n = int(std::min<int64_t>(bs, N - begin));
    memory::copy(s.input.data(), s.device, x.data() + begin * s.input_size, Device::CPU,
                 size_t(n * s.input_size) * sizeof(float));
    forward(s, layers_, n, false);
    memory::copy(out.data() + begin * K, Device::CPU, s.act(layers_.size() - 1), s.device, size_t(n * K) * sizeof(float));
  }
  if (s.output_activation == Activation::Softmax)
    ops::cpu::softmax_forward<float>(int(N), int(K), out.data(), out.data());
  else if (s.output_activation == Activation::Sigmoid)
    ops::cpu::activation_forward<float>({Activation::Sigmoid}, N * K, out.data(), out.data());
  return out;
}

void Sequential::train_steps(const Tensor& x_in, const Tensor& y, int steps) {
  State& s = *state_;
  check_inputs(s, x_in, "train_steps");
  CNN_CHECK(steps >= 0, "train_steps: steps must be >= 0, got ", steps);
  const Tensor x = x_in.to(Device::CPU);
  const Targets t = prepare_targets(s, y, x.dim(0), "train_steps");
  const int n = int(x.dim(0));
  ensure_arena(s, layers_, n);
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), 0);
  load_batch(s, x, t, rows.data(), n);
  for (int i = 0; i < steps; ++i) run_train_step(s, layers_, t.kind, n);
  memory::synchronize(s.device);
}

std::vector<Tensor> Sequential::layer_outputs(const Tensor& x_in) {
  State& s = *state_;
  check_inputs(s, x_in, "layer_outputs");
  const Tensor x = x_in.to(Device::CPU);
  const int n = int(x.dim(0));
  ensure_arena(s, layers_, n);
  memory::copy(s.input.data(), s.device, x.data(), Device::CPU, size_t(x.numel()) * sizeof(float));
  forward(s, layers_, n, false);
  std::vector<Tensor> outs;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Shape shape{n};
    shape.insert(shape.end(), layers_[i]->output_shape().begin(), layers_[i]->output_shape().end());
    Tensor t(shape);
    memory::copy(t.data(), Device::CPU, s.act(i), s.device, size_t(t.numel()) * sizeof(float));
    outs.push_back(std::move(t));
  }
  return outs;
}

double Sequential::train_on_batch(const Tensor& x_in, const Tensor& y) {
  State& s = *state_;
  check_inputs(s, x_in, "train_on_batch");
  const Tensor x = x_in.to(Device::CPU);
  const Targets t = prepare_targets(s, y, x.dim(0), "train_on_batch");
  const int n = int(x.dim(0));
  ensure_arena(s, layers_, n);
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), 0);
  s.metrics.zero();
  load_batch(s, x, t, rows.data(), n);
  run_train_step(s, layers_, t.kind, n);
  return read_metrics(s).loss_sum / double(n);
}

}  // namespace cnn
