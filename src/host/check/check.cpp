// gradcheck and compare_devices: the training step of the step runner (double on the CPU,
// float on both devices) with an arena that keeps every layer's output and gradients.
#include "cnn/check.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/buffer.hpp"
#include "cnn/error.hpp"
#include "cnn/gradcheck.hpp"
#include "model/runner.hpp"

namespace cnn {
namespace {

using State = Sequential::State;

// One batch's inputs and targets, on the host.
template <class T>
struct Batch {
  int n = 0;
  std::vector<T> x;
  ops::TargetKind kind = ops::TargetKind::Labels;
  std::vector<int32_t> labels;
  std::vector<T> targets;
};

template <class T>
Batch<T> random_batch(const State& s, int n, uint64_t seed) {
  Rng rng(seed);
  Batch<T> b;
  b.n = n;
  b.x.resize(size_t(n * s.input_size));
  for (auto& v : b.x) v = T(rng.uniform());
  const int64_t K = s.output_size();
  b.kind = s.target_kind();
  b.labels.resize(size_t(n));
  b.targets.assign(size_t(n * K), T(0));
  for (int i = 0; i < n; ++i) {
    const int32_t label = int32_t(rng.below(uint64_t(K)));
    b.labels[size_t(i)] = label;
    for (int64_t j = 0; j < K; ++j) {
      T& t = b.targets[size_t(i * K + j)];
      if (b.kind == ops::TargetKind::Distribution) t = T(j == label ? 1 : 0);
      else t = b.kind == ops::TargetKind::Binary && s.loss == LossKind::MSE ? T(rng.uniform()) : T(rng.below(2));
    }
  }
  return b;
}

// The batch's inputs and targets into the runner's arena.
template <class T>
void load(Runner<T>& runner, const Batch<T>& batch, Device d) {
  Arena<T>& a = runner.arena();
  auto upload = [&](auto* dst, size_t capacity, const auto& v) {
    memory::copy(dst, d, v.data(), Device::CPU, std::min(v.size(), capacity) * sizeof(v[0]));
  };
  upload(a.input.data(), a.input.size(), batch.x);
  upload(a.labels.data(), a.labels.size(), batch.labels);
  upload(a.targets.data(), a.targets.size(), batch.targets);
}
template <class T>
std::vector<T> download(const T* p, size_t count, Device d) {
  std::vector<T> v(count);
  memory::copy(v.data(), Device::CPU, p, d, count * sizeof(T));
  return v;
}

template <class T>
struct Trace {
  std::vector<std::vector<T>> outputs, input_grads;  // per layer
  std::vector<T> param_grads;                        // flat, like the model's
  std::vector<T> row_loss;
};

// Forward, loss and backward of one batch through the runner, with every layer's output
// and input gradient kept (its arena keeps input gradients).
template <class T>
Trace<T> record_step(Runner<T>& runner, const State& s, const Batch<T>& batch, const T* grads, Device d) {
  const int n = batch.n;
  runner.plan(n);
  load(runner, batch, d);
  runner.forward(n, true);
  runner.loss_and_gradient(batch.kind, n);
  runner.backward(n);
  Arena<T>& a = runner.arena();
  Trace<T> t;
  t.row_loss = download(a.row_loss.data(), size_t(n), d);
  for (size_t i = 0; i < s.out_size.size(); ++i) {
    t.outputs.push_back(download(a.act(i), size_t(n * s.out_size[i]), d));
    t.input_grads.push_back(download(a.input_grad(i), size_t(n * (i ? s.out_size[i - 1] : s.input_size)), d));
  }
  t.param_grads = download(grads, size_t(s.param_total), d);
  return t;
}

// The float step of `model` on its device, into a checker's arena and gradient buffer.
Trace<float> record_float_step(Sequential& model, const Batch<float>& batch) {
  State& s = model.state();
  Arena<float> arena;
  arena.keep_input_grads = true;
  Buffer<float> grads(size_t(std::max<int64_t>(s.param_total, 1)), s.device);
  Runner<float> runner(model, arena, s.device, s.params.empty() ? nullptr : s.params.data(),
                       s.param_total ? grads.data() : nullptr);
  return record_step(runner, s, batch, grads.data(), s.device);
}

// ||a - b|| / max(||a||, ||b||), and the largest |a - b|.
template <class A, class B>
std::pair<double, double> compare(const std::vector<A>& a, const std::vector<B>& b) {
  double d2 = 0, a2 = 0, b2 = 0, worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = double(a[i]), y = double(b[i]), d = std::abs(x - y);
    d2 += d * d;
    a2 += x * x;
    b2 += y * y;
    worst = std::max(worst, d);
  }
  if (d2 == 0) return {0.0, 0.0};
  return {std::sqrt(d2) / std::max({std::sqrt(a2), std::sqrt(b2), 1e-300}), worst};
}

std::string quantity_for(const ParamSpec& p) { return p.name + " grad"; }

// The relative size of one rounding of the policy (formulas/precision.hpp): 0 for fp32.
double rounding_unit(Precision p) {
  switch (p) {
    case Precision::FP32: return 0;
    case Precision::TF32: return 0x1p-11;
    case Precision::BF16: return 0x1p-8;
  }
  return 0;
}

// GPU-vs-CPU tolerance under a tf32/bf16 policy, for a quantity whose fp32 tolerance is
// `fp32`. Both devices round the same operands with the same formula, but an operand the two
// compute a few fp32 ulps apart (summation order) can round to neighbouring bf16 values: a
// difference of one unit u in that element. A fraction ~ delta / u of the operands flip for an
// input difference delta, adding ~ sqrt(delta / u) u to the relative norm difference, which
// feeds the next rounding: through a deep stack the difference grows toward u and settles
// there (delta = sqrt(delta / u) u at delta = u). A product reads two rounded operands (2u);
// twice that again covers the gain of normalisations and activations between roundings. A
// wrong kernel is off by O(1), far above 4u.
double precision_tolerance(Precision p, double fp32) { return std::max(fp32, 4.0 * rounding_unit(p)); }

}  // namespace

bool CheckReport::passed() const {
  if (checked_rows() == 0) return false;
  for (const auto& r : rows)
    if (!r.pass) return false;
  return true;
}

std::string CheckReport::table() const {
  std::ostringstream os;
  os << std::left << std::setw(6) << "layer" << std::setw(20) << "type" << std::setw(19) << "quantity" << std::setw(18)
     << "shape" << std::right << std::setw(9) << "checked" << std::setw(13) << "max abs err" << std::setw(13)
     << "rel err" << std::setw(11) << "tolerance" << "  result\n";
  for (const auto& r : rows) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%9lld %12.3e %12.3e %10.0e  %s", (long long)r.checked, r.max_abs_error,
                  r.relative_error, r.tolerance, r.pass ? "PASS" : "FAIL");
    os << std::left << std::setw(6) << (r.layer < 0 ? std::string("-") : std::to_string(r.layer)) << std::setw(20)
       << r.layer_type << std::setw(19) << r.quantity << std::setw(18) << shape_str(r.shape) << buf << "\n";
  }
  return os.str();
}

CheckReport gradcheck(Sequential& model, const GradcheckOptions& o) {
  CNN_CHECK(model.compiled(), "gradcheck: compile the model first");
  CNN_CHECK(o.batch_size > 0, "gradcheck: batch_size must be positive");
  State& s = model.state();
  const size_t L = model.size();
  for (int l : o.layers) CNN_CHECK(l >= 0 && size_t(l) < L, "gradcheck: layer ", l, " out of range (", L, " layers)");
  const Batch<double> batch = random_batch<double>(s, o.batch_size, o.seed);
  std::vector<double> params;
  for (float v : s.params.to_vector()) params.push_back(double(v));
  std::vector<double> grads(size_t(std::max<int64_t>(s.param_total, 1)));
  double* const param_data = params.empty() ? nullptr : params.data();
  Arena<double> arena;
  arena.keep_input_grads = true;
  Runner<double> runner(model, arena, Device::CPU, param_data, s.param_total ? grads.data() : nullptr);
  const Trace<double> trace = record_step(runner, s, batch, grads.data(), Device::CPU);

  // The mean loss when layers [begin, L) run on `input` with the current `params`.
  auto loss_from = [&](size_t begin, const double* input) {
    runner.forward(batch.n, true, begin, input);
    runner.loss_and_gradient(batch.kind, batch.n);
    double sum = 0;
    for (int r = 0; r < batch.n; ++r) sum += arena.row_loss.data()[r];
    return sum / batch.n;
  };

  CheckReport report;
  GradCheckOptions gco;
  gco.max_elements = o.max_elements;
  gco.seed = o.seed;
  auto record = [&](CheckRow row, const std::function<double()>& objective, std::vector<double>& values,
                    const std::vector<double>& analytic) {
    const GradCheckRow r = check_gradients(objective, {{row.quantity, &values, &analytic}}, gco).front();
    row.checked = r.checked;
    row.max_abs_error = r.max_abs_error;
    row.relative_error = r.relative_error;
    row.tolerance = o.tolerance;
    row.pass = r.relative_error <= o.tolerance;
    report.rows.push_back(std::move(row));
  };
  for (size_t i = 0; i < L; ++i) {
    if (!o.layers.empty() && std::find(o.layers.begin(), o.layers.end(), int(i)) == o.layers.end()) continue;
    const Layer& l = model.layer(i);
    // Only layers i.. depend on layer i's input and parameters: start the forward there.
    std::vector<double> input = i ? trace.outputs[i - 1] : batch.x;
    Shape in_shape{batch.n};
    in_shape.insert(in_shape.end(), l.input_shape().begin(), l.input_shape().end());
    record({int(i), l.type(), "input grad", in_shape}, [&] { return loss_from(i, input.data()); }, input,
           trace.input_grads[i]);
    if (!l.trainable) continue;
    int64_t at = s.param_offset[i];
    for (const ParamSpec& p : l.param_specs()) {
      const int64_t count = shape_numel(p.shape);
      std::vector<double> values(params.begin() + at, params.begin() + at + count);
      const std::vector<double> analytic(trace.param_grads.begin() + at, trace.param_grads.begin() + at + count);
      auto objective = [&] {
        std::copy(values.begin(), values.end(), params.begin() + at);
        return loss_from(i, input.data());
      };
      record({int(i), l.type(), quantity_for(p), p.shape}, objective, values, analytic);
      std::copy(values.begin(), values.end(), params.begin() + at);
      at += count;
    }
  }
  return report;
}

CheckReport compare_devices(const Sequential& model, const CompareOptions& o) {
  CNN_CHECK(model.compiled(), "check: compile the model first");
  CNN_CHECK(cuda_available(), "check: no GPU to compare against: ", cuda_unavailable_reason());
  CNN_CHECK(o.batch_size > 0, "check: batch_size must be positive");
  // Two copies with identical weights and fresh optimizer state, one per device.
  auto copy_on = [&](Device d) {
    Sequential c = Sequential::from_json(model.to_json());
    c.set_weights(model.weights());
    c.to(d);
    return c;
  };
  Sequential cpu = copy_on(Device::CPU), gpu = copy_on(Device::CUDA);
  State& sc = cpu.state();
  Batch<float> batch = random_batch<float>(sc, o.batch_size, o.seed);
  if (o.x) {
    CNN_CHECK(o.y, "check: give targets with the batch");
    CNN_CHECK(o.x->rank() >= 1 && o.x->numel() == o.x->dim(0) * sc.input_size, "check: batch ", shape_str(o.x->shape()),
              " does not match the model's input ", shape_str(sc.input_shape));
    batch.n = int(o.x->dim(0));
    batch.x = o.x->to_vector();
    const std::vector<float> y = o.y->to_vector();
    if (batch.kind == ops::TargetKind::Labels || int64_t(y.size()) == batch.n) {
      batch.kind = ops::TargetKind::Labels;
      batch.labels.assign(y.begin(), y.end());
      batch.targets.assign(size_t(batch.n * sc.output_size()), 0.0f);
    } else {
      batch.targets = y;
      batch.labels.assign(size_t(batch.n), 0);
    }
  }
  const Trace<float> a = record_float_step(cpu, batch);
  const Trace<float> b = record_float_step(gpu, batch);

  CheckReport report;
  const Precision policy = sc.precision;
  auto add = [&](int layer, const std::string& type, const std::string& what, Shape shape, const std::vector<float>& x,
                 const std::vector<float>& y, double fp32_tol) {
    const double tol = precision_tolerance(policy, fp32_tol);
    const auto [rel, worst] = compare(x, y);
    bool finite = true;
    for (float v : y) finite = finite && std::isfinite(v);
    report.rows.push_back({layer, type, what, std::move(shape), int64_t(x.size()), worst, rel, tol, finite && rel <= tol});
  };
  for (size_t i = 0; i < cpu.size(); ++i) {
    const Layer& l = cpu.layer(i);
    Shape out{batch.n}, in{batch.n};
    out.insert(out.end(), l.output_shape().begin(), l.output_shape().end());
    in.insert(in.end(), l.input_shape().begin(), l.input_shape().end());
    add(int(i), l.type(), "output", out, a.outputs[i], b.outputs[i], 1e-5);
    add(int(i), l.type(), "input grad", in, a.input_grads[i], b.input_grads[i], 1e-4);
    int64_t at = sc.param_offset[i];
    for (const auto& p : l.param_specs()) {
      const int64_t count = shape_numel(p.shape);
      add(int(i), l.type(), quantity_for(p), p.shape,
          std::vector<float>(a.param_grads.begin() + at, a.param_grads.begin() + at + count),
          std::vector<float>(b.param_grads.begin() + at, b.param_grads.begin() + at + count), 1e-4);
      at += count;
    }
  }
  add(-1, "model", "loss", {batch.n}, a.row_loss, b.row_loss, 1e-5);
  // One optimizer step on both (the same batch through the normal training path).
  Tensor x({batch.n}), y({batch.n});
  Shape xs{batch.n};
  xs.insert(xs.end(), sc.input_shape.begin(), sc.input_shape.end());
  x = Tensor::from_vector(xs, batch.x);
  if (batch.kind == ops::TargetKind::Labels) {
    y = Tensor::from_vector({batch.n}, std::vector<float>(batch.labels.begin(), batch.labels.end()));
  } else {
    y = Tensor::from_vector({batch.n, sc.output_size()}, batch.targets);
  }
  const std::vector<float> before = sc.param_total > 0 ? cpu.parameters().to_vector() : std::vector<float>();
  cpu.train_on_batch(x, y);
  gpu.train_on_batch(x, y);
  if (sc.param_total > 0) {
    const std::vector<float> after = cpu.parameters().to_vector();
    // Under a policy the step's update differs by up to the gradients' 4u: allow that many
    // units of the update's relative size, ||update|| / ||params||, on top of fp32's 1e-5.
    double update_size = 0;
    if (policy != Precision::FP32) update_size = compare(before, after).first;
    const auto [rel, worst] = compare(after, gpu.parameters().to_vector());
    const double tol = 1e-5 + 4.0 * rounding_unit(policy) * update_size;
    bool finite = true;
    for (float v : gpu.parameters().to_vector()) finite = finite && std::isfinite(v);
    report.rows.push_back({-1, "model", "updated params", {sc.param_total}, int64_t(after.size()), worst, rel, tol,
                           finite && rel <= tol});
  }
  return report;
}

}  // namespace cnn
