// Sequential: building, compiling (shape inference, parameter layout, initialisation, loss
// plan), devices, summary and weight access. Training loops live in model/ (the step
// runner), files in io/serialize.cpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cnn/error.hpp"
#include "cnn/layers.hpp"
#include "cnn/model.hpp"
#include "model/layer_names.hpp"
#include "model/state.hpp"

namespace cnn {

LossKind parse_loss(const std::string& name) {
  if (name == "cce" || name == "categorical_crossentropy") return LossKind::CategoricalCE;
  if (name == "scce" || name == "sparse_categorical_crossentropy") return LossKind::SparseCategoricalCE;
  if (name == "mse" || name == "mean_squared_error") return LossKind::MSE;
  if (name == "bce" || name == "binary_crossentropy") return LossKind::BinaryCE;
  fail("unknown loss '", name,
       "'; valid losses: cce (categorical_crossentropy), scce (sparse_categorical_crossentropy), "
       "mse (mean_squared_error), bce (binary_crossentropy)");
}

std::string canonical_loss_name(LossKind kind) {
  switch (kind) {
    case LossKind::CategoricalCE: return "categorical_crossentropy";
    case LossKind::SparseCategoricalCE: return "sparse_categorical_crossentropy";
    case LossKind::MSE: return "mean_squared_error";
    case LossKind::BinaryCE: return "binary_crossentropy";
  }
  return "?";
}

ops::TargetKind Sequential::State::target_kind() const {
  switch (loss) {
    case LossKind::SparseCategoricalCE: return ops::TargetKind::Labels;
    case LossKind::BinaryCE: return ops::TargetKind::Binary;
    case LossKind::MSE: return out_size.back() == 1 ? ops::TargetKind::Binary : ops::TargetKind::Distribution;
    case LossKind::CategoricalCE: return ops::TargetKind::Distribution;
  }
  return ops::TargetKind::Distribution;
}

Sequential::Sequential() : state_(std::make_unique<State>()) {}
Sequential::Sequential(std::initializer_list<AnyLayer> layers) : Sequential() {
  for (const auto& l : layers) add(l);
}
Sequential::~Sequential() = default;
Sequential::Sequential(Sequential&&) noexcept = default;  // NOLINT
Sequential& Sequential::operator=(Sequential&&) noexcept = default;

void Sequential::add(AnyLayer layer) {
  CNN_CHECK(layer.get() != nullptr, "Sequential::add: null layer");
  CNN_CHECK(!state_->compiled, "Sequential::add: the model is already compiled; add layers before compile()");
  layers_.push_back(layer.get()->clone());
}

void Sequential::compile(const std::string& optimizer, const std::string& loss, float learning_rate,
                         Shape input_shape) {
  CompileOptions o;
  o.optimizer = optimizer;
  o.loss = loss;
  o.learning_rate = learning_rate;
  o.input_shape = std::move(input_shape);
  compile(o);
}

namespace {

// The optimizer's numbers (compile and set_optimizer). Comparisons alone would let NaN or
// infinity through some of them, hence isfinite on each.
void validate_optimizer_numbers(const CompileOptions& o) {
  CNN_CHECK(std::isfinite(o.learning_rate) && o.learning_rate > 0, "compile: learning_rate must be > 0, got ",
            o.learning_rate);
  CNN_CHECK(std::isfinite(o.momentum) && o.momentum >= 0 && o.momentum < 1, "compile: momentum must be in [0, 1), got ",
            o.momentum);
  CNN_CHECK(!o.nesterov || o.momentum > 0, "compile: nesterov needs momentum > 0");
  CNN_CHECK(std::isfinite(o.beta1) && std::isfinite(o.beta2) && o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 &&
                o.beta2 < 1,
            "compile: Adam betas must be in [0, 1), got ", o.beta1, ", ", o.beta2);
  CNN_CHECK(std::isfinite(o.epsilon) && o.epsilon > 0, "compile: epsilon must be > 0, got ", o.epsilon);
  CNN_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "compile: weight_decay must be >= 0, got ",
            o.weight_decay);
}

void validate_compile_options(const CompileOptions& o) {
  parse_optimizer(o.optimizer, "compile");
  parse_loss(o.loss);
  parse_precision(o.precision, "compile");
  validate_optimizer_numbers(o);
  CNN_CHECK(std::isfinite(o.bias_lr_scale) && o.bias_lr_scale > 0, "compile: bias_lr_scale must be > 0, got ",
            o.bias_lr_scale);
  CNN_CHECK(std::isfinite(o.label_smoothing) && o.label_smoothing >= 0 && o.label_smoothing < 1,
            "compile: label_smoothing must be in [0, 1), got ", o.label_smoothing);
  check_shape(o.input_shape, "compile: input_shape");
}

// Optimizer buffers: m for Adam and SGD with momentum, v for Adam (zeros), on the CPU.
void allocate_optimizer_state(Sequential::State& s) {
  s.opt_m = s.optimizer == OptimizerKind::Adam || s.opt.momentum > 0 ? Tensor({s.param_total}) : Tensor();
  s.opt_v = s.optimizer == OptimizerKind::Adam ? Tensor({s.param_total}) : Tensor();
}

// Keras-style initial values for one parameter.
void initialise(const ParamSpec& spec, Rng& rng, float* out) {
  const int64_t n = shape_numel(spec.shape);
  double limit = 0;
  switch (spec.init) {
    case Initializer::Zeros: std::fill(out, out + n, 0.0f); return;
    case Initializer::Ones: std::fill(out, out + n, 1.0f); return;
    case Initializer::GlorotUniform: limit = std::sqrt(6.0 / double(spec.fan_in + spec.fan_out)); break;
    case Initializer::HeUniform: limit = std::sqrt(6.0 / double(spec.fan_in)); break;
    case Initializer::TorchUniform:
    case Initializer::TorchUniformDirac: limit = 1.0 / std::sqrt(double(spec.fan_in)); break;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = float(rng.uniform(-limit, limit));
  if (spec.init != Initializer::TorchUniformDirac || spec.shape.size() < 2) return;
  // The first min(c_out, c_in) filters become the identity, the centre tap of their own channel.
  const int64_t c_out = spec.shape[0], c_in = spec.shape[1], taps = n / std::max<int64_t>(c_out * c_in, 1);
  const int64_t k_h = spec.shape.size() == 4 ? spec.shape[2] : 1, k_w = spec.shape.size() == 4 ? spec.shape[3] : 1;
  const int64_t centre = (k_h / 2) * k_w + k_w / 2;
  for (int64_t f = 0; f < std::min(c_out, c_in); ++f) {
    float* filter = out + f * c_in * taps;
    std::fill(filter, filter + c_in * taps, 0.0f);
    filter[f * taps + centre] = 1.0f;
  }
}

std::string layer_kind(const Layer& l) {
  std::string t = l.type(), out;
  for (char c : t) out += char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::vector<int> plan_dense_chains(const std::vector<std::shared_ptr<Layer>>& layers) {
  auto chainable = [&](size_t i) {
    const auto* d = dynamic_cast<const Dense*>(layers[i].get());
    return d && d->options().scale == 1.0f &&
           ops::dense_chain_takes(d->input_width(), d->options().units, d->output_activation());
  };
  std::vector<int> chain(layers.size(), 0);
  for (size_t i = 0; i < layers.size();) {
    size_t end = i;
    while (end < layers.size() && end - i < size_t(ops::kDenseChainMaxLayers) && chainable(end)) ++end;
    if (end - i >= 2) chain[i] = int(end - i);
    i = std::max(end, i + 1);
  }
  return chain;
}

void Sequential::compile(const CompileOptions& o) {
  CNN_CHECK(!layers_.empty(), "compile: the model has no layers");
  validate_compile_options(o);
  auto fresh = std::make_unique<State>();
  State& s = *fresh;
  s.opt = o;
  s.optimizer = parse_optimizer(o.optimizer);
  s.loss = parse_loss(o.loss);
  s.precision = parse_precision(o.precision, "compile");
  s.input_shape = o.input_shape;
  s.input_size = shape_numel(o.input_shape);

  Shape shape = o.input_shape;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& l = *layers_[i];
    try {
      shape = l.build(shape);
    } catch (const Error& e) {
      fail("compile: layer ", i, " (", l.type(), ") cannot take input ", shape_str(shape), ": ", e.what());
    }
    s.out_size.push_back(shape_numel(shape));
  }
  const Layer& last = *layers_.back();
  CNN_CHECK(shape.size() == 1, "compile: the last layer (", layers_.size() - 1, ", ", last.type(), ") outputs ",
            shape_str(shape), "; the loss needs a flat output [classes]: add Flatten() and Dense(...)");
  const int64_t classes = shape[0];
  CNN_CHECK(s.loss != LossKind::SparseCategoricalCE || classes >= 2, "compile: loss '", o.loss,
            "' needs at least 2 output units, the model has ", classes);

  // Fuse softmax/sigmoid into the loss when the output layer ends in it (or emits logits).
  const Activation out_act = last.activation();
  const bool ce = s.loss == LossKind::CategoricalCE || s.loss == LossKind::SparseCategoricalCE;
  if (ce && (out_act == Activation::Softmax || (o.from_logits && out_act == Activation::Linear))) {
    s.fused = true;
    s.output_activation = Activation::Softmax;
  } else if (s.loss == LossKind::BinaryCE &&
             (out_act == Activation::Sigmoid || (o.from_logits && out_act == Activation::Linear))) {
    s.fused = true;
    s.output_activation = Activation::Sigmoid;
  }
  CNN_CHECK(!o.from_logits || s.fused, "compile: from_logits needs a CE or BCE loss and a linear last layer");
  CNN_CHECK(!ce || s.fused || out_act == Activation::Sigmoid, "compile: loss '", o.loss,
            "' needs probabilities, but the last layer's activation is ", to_string(out_act),
            "; use activation 'softmax', or compile with from_logits = true for a linear last layer");
  CNN_CHECK(s.loss != LossKind::BinaryCE || s.fused || out_act == Activation::Softmax, "compile: loss '", o.loss,
            "' needs probabilities, but the last layer's activation is ", to_string(out_act),
            "; use activation 'sigmoid', or compile with from_logits = true for a linear last layer");
  for (auto& l : layers_) l->emit_logits(false);
  if (s.fused) layers_.back()->emit_logits(true);

  s.dense_chain = plan_dense_chains(layers_);
  const auto* last_dense = layers_.empty() ? nullptr : dynamic_cast<const Dense*>(layers_.back().get());
  s.last_bias_from_loss = s.fused && (s.loss == LossKind::CategoricalCE || s.loss == LossKind::SparseCategoricalCE) &&
                          last_dense && last_dense->options().use_bias && last_dense->options().scale == 1.0f;
  s.conv_then_pool.assign(layers_.size(), false);
  for (size_t i = 0; i + 1 < layers_.size(); ++i)
    s.conv_then_pool[i] = dynamic_cast<const Conv2D*>(layers_[i].get()) &&
                          dynamic_cast<const Pooling2D*>(layers_[i + 1].get());

  // Parameter layout and initial values (each layer seeded on its own, so adding a layer
  // does not change the ones before it).
  std::vector<float> host;
  bool trainable_below = false;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = *layers_[i];
    s.param_offset.push_back(int64_t(host.size()));
    s.need_dx.push_back(trainable_below);
    s.output_is_input.push_back(i > 0 && l.output_is_input());
    s.activation_below.push_back(i > 0 && l.takes_activation_below() ? layers_[i - 1]->activation_for_layer_above()
                                                                      : ActivationSpec{});
    Rng rng(o.seed * 1000003ull + i);
    for (const ParamSpec& p : l.param_specs()) {
      const size_t at = host.size();
      host.resize(at + size_t(shape_numel(p.shape)));
      initialise(p, rng, host.data() + at);
      if (!l.trainable || !p.trainable || (l.bias_only && p.name != "bias")) continue;
      const bool bias = p.name == "bias";
      const float bias_scale = l.bias_lr_scale > 0 ? l.bias_lr_scale : o.bias_lr_scale;
      const float scale = p.lr_scale * (bias ? bias_scale : 1.0f);
      const float decay = bias && !o.bias_lr_scales_weight_decay ? 1.0f / bias_scale : 1.0f;
      auto& segs = s.trainable_segments;
      const State::Segment seg{int64_t(at), int64_t(host.size()), scale, decay, l.trainable_epochs};
      if (!segs.empty() && segs.back().end == seg.begin && segs.back().lr_scale == seg.lr_scale &&
          segs.back().decay_scale == seg.decay_scale && segs.back().until_epoch == seg.until_epoch)
        segs.back().end = seg.end;
      else segs.push_back(seg);
    }
    if (l.bias_only) {
      bool has_bias = false;
      for (const ParamSpec& p : l.param_specs()) has_bias = has_bias || p.name == "bias";
      CNN_CHECK(has_bias, "compile: layer ", i, " (", l.type(), ") has trainable \"bias\" but no bias");
    }
    if (l.trainable && l.param_count() > 0) trainable_below = true;
  }
  s.param_total = int64_t(host.size());
  if (s.param_total > 0) {
    s.params = Tensor::from_vector({s.param_total}, host);
    s.grads = Tensor({s.param_total});
    allocate_optimizer_state(s);
  }
  s.compiled = true;
  s.fresh_weights = true;
  state_ = std::move(fresh);
  to(o.device);
}

bool Sequential::compiled() const { return state_->compiled; }

void Sequential::to(Device device) {
  State& s = *state_;
  CNN_CHECK(s.compiled, "Sequential::to: compile the model first");
  if (device == Device::CUDA && !s.cuda) {
    CNN_CHECK(cuda_available(), "cannot use device cuda: ", cuda_unavailable_reason());
#if CNN_WITH_CUDA
    s.cuda = std::shared_ptr<cuda::Context>(cuda::create_context(), cuda::destroy_context);
#endif
  }
  for (Tensor* t : {&s.params, &s.grads, &s.opt_m, &s.opt_v})
    if (!t->empty()) *t = t->to(device);
  s.device = device;
  s.opt.device = device;
  // The arena is re-planned on the new device at the next batch.
  s.arena = Arena<float>();
  if (device == Device::CPU) s.cuda.reset();
}

Device Sequential::device() const { return state_->device; }

size_t Sequential::size() const { return layers_.size(); }
Layer& Sequential::layer(size_t i) {
  CNN_CHECK(i < layers_.size(), "Sequential::layer: index ", i, " out of range (", layers_.size(), " layers)");
  return *layers_[i];
}
const Layer& Sequential::layer(size_t i) const {
  CNN_CHECK(i < layers_.size(), "Sequential::layer: index ", i, " out of range (", layers_.size(), " layers)");
  return *layers_[i];
}
const CompileOptions& Sequential::compile_options() const { return state_->opt; }
Sequential::State& Sequential::state() { return *state_; }

void Sequential::set_learning_rate(float lr) {
  CNN_CHECK(std::isfinite(lr) && lr > 0, "set_learning_rate: learning rate must be > 0, got ", lr);
  state_->opt.learning_rate = lr;
}
float Sequential::learning_rate() const { return state_->opt.learning_rate; }

void Sequential::set_optimizer(const CompileOptions& o) {
  State& s = *state_;
  CNN_CHECK(s.compiled, "set_optimizer: compile the model first");
  const OptimizerKind kind = parse_optimizer(o.optimizer, "compile");
  validate_optimizer_numbers(o);
  s.opt.optimizer = o.optimizer;
  s.opt.learning_rate = o.learning_rate;
  s.opt.momentum = o.momentum;
  s.opt.nesterov = o.nesterov;
  s.opt.beta1 = o.beta1;
  s.opt.beta2 = o.beta2;
  s.opt.epsilon = o.epsilon;
  s.opt.weight_decay = o.weight_decay;
  s.opt.decoupled_weight_decay = o.decoupled_weight_decay;
  s.optimizer = kind;
  s.step = 0;
  if (s.param_total > 0) {
    allocate_optimizer_state(s);
    for (Tensor* t : {&s.opt_m, &s.opt_v})
      if (!t->empty()) *t = t->to(s.device);
  }
  // Recorded CUDA graphs point at the optimizer buffers just replaced.
  s.graph_warm.clear();
#if CNN_WITH_CUDA
  if (s.cuda) cuda::clear_graphs(*s.cuda);
#endif
}

void Sequential::set_precision(const std::string& precision) {
  State& s = *state_;
  CNN_CHECK(s.compiled, "set_precision: compile the model first");
  s.precision = parse_precision(precision, "set_precision");
  s.opt.precision = to_string(s.precision);
  // Recorded CUDA graphs hold the old policy's kernels.
  s.graph_warm.clear();
#if CNN_WITH_CUDA
  if (s.cuda) cuda::clear_graphs(*s.cuda);
#endif
}

Precision Sequential::precision() const { return state_->precision; }

bool Sequential::weights_fresh() const { return state_->fresh_weights; }

int64_t Sequential::count_params() const {
  int64_t n = 0;
  for (const auto& l : layers_) n += l->param_count();
  return n;
}

int64_t Sequential::trainable_params() const {
  int64_t n = 0;
  for (const auto& l : layers_)
    if (l->trainable)
      for (const ParamSpec& p : l->param_specs())
        if (p.trainable && (!l->bias_only || p.name == "bias")) n += shape_numel(p.shape);
  return n;
}

std::vector<std::pair<std::string, Tensor>> Sequential::weights() const {
  const State& s = *state_;
  CNN_CHECK(s.compiled, "Sequential::weights: compile the model first");
  std::vector<std::pair<std::string, Tensor>> out;
  const Tensor host = s.params.empty() ? Tensor() : s.params.to(Device::CPU);
  for (size_t i = 0; i < layers_.size(); ++i) {
    int64_t at = s.param_offset[i];
    for (const ParamSpec& p : layers_[i]->param_specs()) {
      const int64_t n = shape_numel(p.shape);
      out.emplace_back("layers." + std::to_string(i) + "." + layer_kind(*layers_[i]) + "." + p.name,
                       host.slice(at, at + n).clone().reshape(p.shape));
      at += n;
    }
  }
  return out;
}

void Sequential::set_weights(const std::vector<std::pair<std::string, Tensor>>& weights) {
  State& s = *state_;
  CNN_CHECK(s.compiled, "Sequential::set_weights: compile the model first");
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : weights) given[name] = &t;
  Tensor host = s.params.empty() ? Tensor() : s.params.to(Device::CPU).clone();
  size_t used = 0;
  for (const auto& [name, current] : this->weights()) {
    auto it = given.find(name);
    CNN_CHECK(it != given.end(), "set_weights: missing tensor '", name, "' of shape ", shape_str(current.shape()));
    CNN_CHECK(it->second->shape() == current.shape(), "set_weights: tensor '", name, "' has shape ",
              shape_str(it->second->shape()), " but the model expects ", shape_str(current.shape()));
    ++used;
  }
  CNN_CHECK(used == given.size(), "set_weights: ", given.size() - used, " tensor(s) do not belong to this model");
  int64_t at = 0;
  for (const auto& [name, current] : this->weights()) {
    const Tensor src = given[name]->to(Device::CPU);
    std::copy(src.data(), src.data() + src.numel(), host.data() + at);
    at += current.numel();
  }
  if (!host.empty()) s.params.copy_from(host);
  s.fresh_weights = false;
}

Tensor Sequential::parameters() const { return state_->params; }

std::string Sequential::summary_string() const {
  std::ostringstream out;
  summary(out);
  return out.str();
}

void Sequential::summary() const { summary(std::cout); }

void Sequential::summary(std::ostream& out) const {
  const State& s = *state_;
  CNN_CHECK(s.compiled, "summary: compile the model first (shapes are inferred at compile)");
  auto with_commas = [](int64_t v) {
    std::string d = std::to_string(v), r;
    for (size_t i = 0; i < d.size(); ++i) {
      if (i && (d.size() - i) % 3 == 0) r += ',';
      r += d[i];
    }
    return r;
  };
  // Rows first, so the columns can be as wide as their widest entry.
  std::vector<std::array<std::string, 3>> rows;
  const std::vector<std::string> names = layer_display_names(layers_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = *layers_[i];
    const std::string& name = names[i];
    std::string shape = "(None";
    for (int64_t d : l.output_shape()) shape += ", " + std::to_string(d);
    rows.push_back({name + " (" + l.type() + ")", shape + ")", with_commas(l.param_count())});
  }
  size_t w0 = 28, w1 = 25;
  for (const auto& r : rows) {
    w0 = std::max(w0, r[0].size() + 2);
    w1 = std::max(w1, r[1].size() + 2);
  }
  const size_t width = 1 + w0 + w1 + 10;
  const std::string rule(width, '_'), double_rule(width, '=');
  out << "Model: \"sequential\"\n" << rule << "\n";
  out << std::left << " " << std::setw(int(w0)) << "Layer (type)" << std::setw(int(w1)) << "Output Shape" << "Param #\n";
  out << double_rule << "\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    out << " " << std::setw(int(w0)) << rows[i][0] << std::setw(int(w1)) << rows[i][1] << rows[i][2] << "\n";
    if (i + 1 < rows.size()) out << "\n";
  }
  out << double_rule << "\n";
  out << "Total params: " << with_commas(count_params()) << "\n";
  out << "Trainable params: " << with_commas(trainable_params()) << "\n";
  out << "Non-trainable params: " << with_commas(count_params() - trainable_params()) << "\n";
  out << rule << "\n";
}

}  // namespace cnn
