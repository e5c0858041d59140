// Dense: y = act(scale (x W^T + b)). Weight [units, in_features], bias [units].
#include <cmath>

#include <nlohmann/json.hpp>

#include "cnn/layers.hpp"
#include "layers/layer_impl.hpp"

namespace cnn {

Dense::Dense(int units, std::string activation) : Dense(DenseOptions{units, std::move(activation)}) {}

Dense::Dense(DenseOptions options) : opt_(std::move(options)) {
  CNN_CHECK(opt_.units > 0, "Dense: units must be positive, got ", opt_.units);
  act_ = {parse_activation(opt_.activation), opt_.alpha};
  CNN_CHECK(std::isfinite(opt_.alpha) && opt_.alpha >= 0, "Dense: leaky_relu alpha must be >= 0, got ", opt_.alpha);
  CNN_CHECK(std::isfinite(opt_.scale) && opt_.scale != 0, "Dense: scale must be finite and non-zero, got ", opt_.scale);
  CNN_CHECK(opt_.kernel_initializer != "patch_whitening",
            "Dense: kernel_initializer 'patch_whitening' is for Conv2D layers only");
  parse_initializer(opt_.kernel_initializer);
}

Shape Dense::build(const Shape& in) {
  CNN_CHECK(in.size() == 1, "Dense: input must be flat [features], got ", shape_str(in),
            "; add Flatten() before it");
  in_ = int(in[0]);
  input_shape_ = in;
  output_shape_ = {opt_.units};
  return output_shape_;
}

std::vector<ParamSpec> Dense::param_specs() const {
  std::vector<ParamSpec> specs{{"weight", {opt_.units, in_}, parse_initializer(opt_.kernel_initializer), in_,
                                opt_.units, true}};
  if (opt_.use_bias) specs.push_back({"bias", {opt_.units}, Initializer::Zeros, 1, 1, true});
  return specs;
}

nlohmann::json Dense::config() const {
  auto c = common_config();
  c["units"] = opt_.units;
  c["activation"] = to_string(act_.kind);
  if (act_.kind == Activation::LeakyReLU) c["alpha"] = opt_.alpha;
  c["use_bias"] = opt_.use_bias;
  c["kernel_initializer"] = opt_.kernel_initializer;
  if (opt_.scale != 1.0f) c["scale"] = opt_.scale;
  return c;
}

template <class T>
void Dense::forward_t(const Exec& e, const LayerBuffers<T>& b) {
  const T* bias = opt_.use_bias ? b.params + int64_t(opt_.units) * in_ : nullptr;
  const ActivationSpec act = logits_ ? ActivationSpec{} : act_;
  const int64_t count = int64_t(b.n) * opt_.units;
  const bool scaled = opt_.scale != 1.0f;
  const T* x = product_operand(e, int64_t(b.n) * in_, b.x, rounded_x_);
  const T* w = product_operand<T>(e, int64_t(opt_.units) * in_, b.params, rounded_w_);
  if (act.kind == Activation::Softmax || gradient_needs_input(act.kind)) {
    T* z = pre_activation_.get<T>(count, e.device);
    run::dense_forward<T>(e, b.n, in_, opt_.units, x, w, bias, ActivationSpec{}, z);
    if (scaled) run::scale<T>(e, count, T(opt_.scale), z, z);
    apply_activation<T>(e, act, b.n, opt_.units, z, b.y);
  } else if (scaled) {
    // The scale goes between the product and the activation: z = scale (x W^T + b) in y, then
    // the elementwise activation in place.
    run::dense_forward<T>(e, b.n, in_, opt_.units, x, w, bias, ActivationSpec{}, b.y);
    run::scale<T>(e, count, T(opt_.scale), b.y, b.y);
    if (act.kind != Activation::Linear) apply_activation<T>(e, act, b.n, opt_.units, b.y, b.y);
  } else {
    run::dense_forward<T>(e, b.n, in_, opt_.units, x, w, bias, act, b.y);
  }
}

template <class T>
void Dense::backward_t(const Exec& e, const LayerBuffers<T>& b) {
  const ActivationSpec act = logits_ ? ActivationSpec{} : act_;
  const int64_t count = int64_t(b.n) * opt_.units;
  T* dz = b.dy;
  T* dbias = trainable && opt_.use_bias && !b.bias_grad_done ? b.grads + int64_t(opt_.units) * in_ : nullptr;
  // The bias gradient may come with the activation's (one kernel on the GPU) when nothing
  // changes dz in between: no scale, no rounding policy.
  const bool bias_with_activation = dbias && act.kind != Activation::Linear && act.kind != Activation::Softmax &&
                                    opt_.scale == 1.0f && e.precision == Precision::FP32;
  if (bias_with_activation) {
    const T* z = gradient_needs_input(act.kind) ? pre_activation_.get<T>(count, e.device) : nullptr;
    if (run::activation_backward_with_bias_grad<T>(e, act, b.n, opt_.units, z, b.y, b.dy, b.dy, dbias)) dbias = nullptr;
  } else if (act.kind == Activation::Softmax || gradient_needs_input(act.kind)) {
    // The pre-activation scratch is free once read; softmax's gradient lands in it.
    T* z = pre_activation_.get<T>(count, e.device);
    undo_activation<T>(e, act, b.n, opt_.units, z, b.y, b.dy, act.kind == Activation::Softmax ? z : b.dy);
    if (act.kind == Activation::Softmax) dz = z;
  } else if (act.kind != Activation::Linear) {
    undo_activation<T>(e, act, b.n, opt_.units, nullptr, b.y, b.dy, b.dy);
  }
  // d/d(x W^T + b) = scale * d/dz; dz is this layer's own (dy or the scratch), so in place.
  if (opt_.scale != 1.0f) run::scale<T>(e, count, T(opt_.scale), dz, dz);
  // Precision policy: dz rounded, and the operands rounded again from the fp32 x and master W.
  round_gradient(e, count, dz);
  if (b.dx)
    run::dense_backward_input<T>(e, b.n, in_, opt_.units, dz,
                                 product_operand<T>(e, int64_t(opt_.units) * in_, b.params, rounded_w_), b.dx);
  if (trainable)
    run::dense_backward_params<T>(e, b.n, in_, opt_.units, product_operand(e, int64_t(b.n) * in_, b.x, rounded_x_), dz,
                                  b.grads, dbias);
}

template class LayerCompute<Dense>;

}  // namespace cnn
