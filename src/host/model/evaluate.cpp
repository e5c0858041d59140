// Inference entry points: evaluate (with test-time augmentation), predict, layer_outputs.
#include "model/evaluate.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "cnn/error.hpp"
#include "kernels/device_memory.hpp"

namespace cnn {
namespace {

using State = Sequential::State;

// Inference forward of the loaded batch, averaged over the test-time augmentation views:
// the image and its mirror (tta.flip), each also shifted by (-t, -t) and (+t, +t) pixels
// with reflect padding (tta.translate = t); every view with the same weight, or the shifted
// ones sharing tta.shifted_share of it. Returns the averaged last-layer output (logits when
// softmax is fused), in grad_b; without TTA, the last layer's own buffer.
const float* forward_tta(Runner<float>& runner, const State& s, int n, const TestTimeAugmentation& tta) {
  CNN_CHECK(tta.shifted_share < 0 || (tta.shifted_share <= 1 && tta.translate > 0),
            "evaluate: tta.shifted_share must be in [0, 1] with tta.translate > 0 (negative: equal weights), got ",
            tta.shifted_share, " with translate ", tta.translate);
  if (!tta.flip && tta.translate == 0) {
    runner.forward(n, false);
    return runner.output();
  }
  CNN_CHECK(s.input_shape.size() == 3, "evaluate: test-time augmentation needs image inputs, the model takes ",
            shape_str(s.input_shape));
  const int c = int(s.input_shape[0]), h = int(s.input_shape[1]), w = int(s.input_shape[2]);
  CNN_CHECK(tta.translate >= 0 && tta.translate < h && tta.translate < w, "evaluate: tta.translate must be in [0, ",
            std::min(h, w), "), got ", tta.translate);
  Arena<float>& a = runner.arena();
  const Exec e = runner.exec(false);
  const int64_t in = int64_t(n) * s.input_size, out = int64_t(n) * s.output_size();
  float* original = a.augmented.data();  // keeps the loaded batch while views replace it
  float* mean = a.grad_b.data();
  copy_values(e, in, a.input.data(), original);
  std::vector<std::pair<bool, int>> views{{false, 0}};  // (mirrored, shift)
  if (tta.flip) views.push_back({true, 0});
  if (tta.translate > 0)
    for (size_t v = 0, base = views.size(); v < base; ++v)
      for (int d : {-tta.translate, tta.translate}) views.push_back({views[v].first, d});
  // View v's weight: 1 / views, or the unshifted views share 1 - shifted_share, the shifted
  // ones shifted_share. The running mean adds each view in with t = its weight / the weight so far.
  const size_t unshifted = tta.flip ? 2 : 1, shifted = views.size() - unshifted;
  auto weight = [&](size_t v) {
    return v < unshifted ? (1.0 - tta.shifted_share) / double(unshifted) : tta.shifted_share / double(shifted);
  };
  double so_far = 0;
  for (size_t v = 0; v < views.size(); ++v) {
    const auto [mirrored, shift] = views[v];
    const float* src = original;
    if (mirrored) {
      run::flip_images<float>(e, n, c, h, w, original, a.input.data());
      src = a.input.data();
    }
    if (shift != 0) {
      float* dst = mirrored ? a.grad_a.data() : a.input.data();  // grad_a is free during inference
      run::translate_images<float>(e, n, c, h, w, src, dst, shift, shift);
      if (dst != a.input.data()) copy_values(e, in, dst, a.input.data());
    } else if (!mirrored) {
      copy_values(e, in, original, a.input.data());
    }
    runner.forward(n, false);
    // Running mean of the views' outputs: mean += (out - mean) t, t = 1 / (v + 1) for equal weights.
    const float t = tta.shifted_share < 0 ? 1.0f / float(v + 1) : float(weight(v) / (so_far += weight(v)));
    if (v == 0) copy_values(e, out, runner.output(), mean);
    else if (t > 0) run::lerp<float>(e, out, mean, runner.output(), t);
  }
  return mean;
}

}  // namespace

Evaluation evaluate_batches(Runner<float>& runner, State& s, const Tensor& x, const Targets& t,
                            const EvaluateOptions& o) {
  CNN_CHECK(o.batch_size > 0, "evaluate: batch_size must be positive, got ", o.batch_size);
  const int64_t N = x.dim(0);
  const int bs = int(std::min<int64_t>(o.batch_size, N));
  runner.plan(bs);
  runner.arena().metrics.zero();
  const int K = int(s.output_size());
  Evaluation ev;
  if (o.per_class) ev.confusion.assign(size_t(K), std::vector<int64_t>(size_t(K), 0));
  std::vector<int64_t> rows(static_cast<size_t>(bs));
  std::vector<float> out;
  for (int64_t begin = 0; begin < N; begin += bs) {
    const int n = int(std::min<int64_t>(bs, N - begin));
    std::iota(rows.begin(), rows.begin() + n, begin);
    load_batch(s, x, t, rows.data(), n);
    const float* logits = forward_tta(runner, s, n, o.tta);
    runner.loss_with_metrics(t.kind, n, logits);
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
  const Totals tot = runner.read_metrics();
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

Evaluation Sequential::evaluate(const Tensor& x_in, const Tensor& y, const EvaluateOptions& o) {
  State& s = *state_;
  check_inputs(s, x_in, "evaluate");
  const Tensor x = x_in.to(Device::CPU);
  const Targets t = prepare_targets(s, y, x.dim(0), "evaluate");
  Runner<float> runner(*this);
  return evaluate_batches(runner, s, x, t, o);
}

Tensor Sequential::predict(const Tensor& x_in, int batch_size) {
  State& s = *state_;
  check_inputs(s, x_in, "predict");
  CNN_CHECK(batch_size > 0, "predict: batch_size must be positive, got ", batch_size);
  const Tensor x = x_in.to(Device::CPU);
  const int64_t N = x.dim(0), K = s.output_size();
  const int bs = int(std::min<int64_t>(batch_size, N));
  Runner<float> runner(*this);
  runner.plan(bs);
  Tensor out({N, K});
  for (int64_t begin = 0; begin < N; begin += bs) {
    const int n = int(std::min<int64_t>(bs, N - begin));
    memory::copy(s.arena.input.data(), s.device, x.data() + begin * s.input_size, Device::CPU,
                 size_t(n * s.input_size) * sizeof(float));
    runner.forward(n, false);
    memory::copy(out.data() + begin * K, Device::CPU, runner.output(), s.device, size_t(n * K) * sizeof(float));
  }
  if (s.output_activation == Activation::Softmax)
    ops::cpu::softmax_forward<float>(int(N), int(K), out.data(), out.data());
  else if (s.output_activation == Activation::Sigmoid)
    ops::cpu::activation_forward<float>({Activation::Sigmoid}, N * K, out.data(), out.data());
  return out;
}

std::vector<Tensor> Sequential::layer_outputs(const Tensor& x_in) {
  State& s = *state_;
  check_inputs(s, x_in, "layer_outputs");
  const Tensor x = x_in.to(Device::CPU);
  const int n = int(x.dim(0));
  Runner<float> runner(*this);
  runner.plan(n);
  memory::copy(s.arena.input.data(), s.device, x.data(), Device::CPU, size_t(x.numel()) * sizeof(float));
  runner.forward(n, false);
  std::vector<Tensor> outs;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Shape shape{n};
    shape.insert(shape.end(), layers_[i]->output_shape().begin(), layers_[i]->output_shape().end());
    Tensor t(shape);
    memory::copy(t.data(), Device::CPU, s.arena.act(i), s.device, size_t(t.numel()) * sizeof(float));
    outs.push_back(std::move(t));
  }
  return outs;
}

}  // namespace cnn
