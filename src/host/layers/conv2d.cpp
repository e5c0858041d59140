// Conv2D: y = act(conv(x, W) + b). Weight [filters, in_channels, k_h, k_w], bias [filters].
// kernel_initializer "patch_whitening" (data-dependent, cnn/initializers.hpp) is glorot_uniform
// at compile; init_patch_whitening (run by fit on fresh weights) replaces it.
#include <cmath>

#include <nlohmann/json.hpp>

#include "cnn/layers.hpp"
#include "layers/conv2d_mma.hpp"
#include "layers/layer_impl.hpp"

namespace cnn {

namespace {

// The op-level shape of a batch of n through a built Conv2D (its forward, backward and fused forward).
ops::Conv2DShape batch_shape(const Shape& in, const Conv2DOptions& o, Padding padding, int n) {
  return ops::Conv2DShape::make(n, int(in[0]), int(in[1]), int(in[2]), o.filters, o.kernel_size.h, o.kernel_size.w,
                                o.strides.h, o.strides.w, padding);
}
constexpr const char* kPatchWhitening = "patch_whitening";
}

Conv2D::Conv2D(int filters, Size2 kernel_size, Size2 strides, std::string padding, std::string activation)
    : Conv2D(Conv2DOptions{filters, kernel_size, strides, std::move(padding), std::move(activation)}) {}

Conv2D::Conv2D(Conv2DOptions options) : opt_(std::move(options)) {
  CNN_CHECK(opt_.filters > 0, "Conv2D: filters must be positive, got ", opt_.filters);
  CNN_CHECK(opt_.kernel_size.h > 0 && opt_.kernel_size.w > 0, "Conv2D: kernel_size must be positive, got ",
            opt_.kernel_size.h, "x", opt_.kernel_size.w);
  CNN_CHECK(opt_.strides.h > 0 && opt_.strides.w > 0, "Conv2D: strides must be positive, got ", opt_.strides.h, "x",
            opt_.strides.w);
  padding_ = parse_padding(opt_.padding);
  act_ = {parse_activation(opt_.activation), opt_.alpha};
  CNN_CHECK(act_.kind != Activation::Softmax,
            "Conv2D: activation 'softmax' is not supported on convolutions; use Flatten() then "
            "Dense(units, \"softmax\")");
  CNN_CHECK(std::isfinite(opt_.alpha) && opt_.alpha >= 0, "Conv2D: leaky_relu alpha must be >= 0, got ", opt_.alpha);
  if (opt_.kernel_initializer != kPatchWhitening) {
    try {
      parse_initializer(opt_.kernel_initializer);
    } catch (const Error&) {
      fail("Conv2D: unknown initializer '", opt_.kernel_initializer,
           "'; valid initializers: ", kValidInitializers, ", patch_whitening");
    }
  }
}

Shape Conv2D::build(const Shape& in) {
  CNN_CHECK(in.size() == 3, "Conv2D: input must be [channels, height, width], got ", shape_str(in));
  const auto s = ops::Conv2DShape::make(1, int(in[0]), int(in[1]), int(in[2]), opt_.filters, opt_.kernel_size.h,
                                        opt_.kernel_size.w, opt_.strides.h, opt_.strides.w, padding_);
  const int64_t patch = in[0] * opt_.kernel_size.h * opt_.kernel_size.w;
  CNN_CHECK(opt_.kernel_initializer != kPatchWhitening || opt_.filters == 2 * patch,
            "Conv2D: kernel_initializer 'patch_whitening' needs filters = 2 * ", opt_.kernel_size.h, " * ",
            opt_.kernel_size.w, " * ", in[0], " = ", 2 * patch, " (each whitening filter and its negation), got ",
            opt_.filters);
  input_shape_ = in;
  output_shape_ = {opt_.filters, s.h_out, s.w_out};
  return output_shape_;
}

std::vector<ParamSpec> Conv2D::param_specs() const {
  const int64_t c_in = input_shape_.empty() ? 0 : input_shape_[0];
  const int64_t area = int64_t(opt_.kernel_size.h) * opt_.kernel_size.w;
  std::vector<ParamSpec> specs{{"weight",
                                {opt_.filters, c_in, opt_.kernel_size.h, opt_.kernel_size.w},
                                // patch_whitening: glorot until init_patch_whitening sees the data
                                opt_.kernel_initializer == kPatchWhitening ? Initializer::GlorotUniform
                                                                           : parse_initializer(opt_.kernel_initializer),
                                c_in * area,
                                opt_.filters * area,
                                true}};
  if (opt_.use_bias) specs.push_back({"bias", {opt_.filters}, Initializer::Zeros, 1, 1, true});
  return specs;
}

nlohmann::json Conv2D::config() const {
  auto c = common_config();
  c["filters"] = opt_.filters;
  c["kernel_size"] = {opt_.kernel_size.h, opt_.kernel_size.w};
  c["strides"] = {opt_.strides.h, opt_.strides.w};
  c["padding"] = to_string(padding_);
  c["activation"] = to_string(act_.kind);
  if (act_.kind == Activation::LeakyReLU) c["alpha"] = opt_.alpha;
  c["use_bias"] = opt_.use_bias;
  c["kernel_initializer"] = opt_.kernel_initializer;
  return c;
}

template <class T>
void Conv2D::forward_t(const Exec& e, const LayerBuffers<T>& b) {
  const auto s = batch_shape(input_shape_, opt_, padding_, b.n);
  const T* bias = opt_.use_bias ? b.params + s.w_size() : nullptr;
  const ActivationSpec act = logits_ ? ActivationSpec{} : act_;
  // GELU's gradient needs the pre-activation: the product writes it, the activation follows.
  const bool keep_z = gradient_needs_input(act.kind);
  T* out = keep_z ? pre_activation_.get<T>(s.y_size(), e.device) : b.y;
  const ActivationSpec fused = keep_z ? ActivationSpec{} : act;
  if (!conv_mma::forward(e, s, b.x, b.params, bias, fused, out, mma_))
    run::conv2d_forward<T>(e, s, product_operand(e, s.x_size(), b.x, rounded_x_),
                           product_operand<T>(e, s.w_size(), b.params, rounded_w_), bias, fused, out);
  if (keep_z) run::activation_forward<T>(e, act, s.y_size(), out, b.y);
}

bool Conv2D::forward_with_pooling(const Exec& e, const LayerBuffers<float>& b, const Pooling2D& pool, float* pooled) {
#if CNN_WITH_CUDA
  const ActivationSpec act = logits_ ? ActivationSpec{} : act_;
  if (!e.on_cuda() || e.precision != Precision::FP32 || gradient_needs_input(act.kind)) return false;
  const auto s = batch_shape(input_shape_, opt_, padding_, b.n);
  const Pooling2DOptions& po = pool.options();
  const auto p = ops::Pool2DShape::make(b.n, s.c_out, s.h_out, s.w_out, po.pool_size.h, po.pool_size.w,
                                        po.strides->h, po.strides->w, pool.padding());
  const float* bias = opt_.use_bias ? b.params + s.w_size() : nullptr;
  return ops::cuda::conv2d_forward_pooled(*e.cuda, s, p, pool.is_max(), b.x, b.params, bias, act, b.y, pooled);
#else
  (void)e, (void)b, (void)pool, (void)pooled;
  return false;
#endif
}

ActivationSpec Conv2D::activation_for_layer_above() const {
  return !logits_ && ops::pool_backward_takes_activation(act_) ? act_ : ActivationSpec{};
}

template <class T>
void Conv2D::backward_t(const Exec& e, const LayerBuffers<T>& b) {
  const auto s = batch_shape(input_shape_, opt_, padding_, b.n);
  const ActivationSpec act = logits_ ? ActivationSpec{} : act_;
  if (act.kind != Activation::Linear && !b.dy_before_activation) {
    const T* z = gradient_needs_input(act.kind) ? pre_activation_.get<T>(s.y_size(), e.device) : nullptr;
    run::activation_backward<T>(e, act, s.y_size(), z, b.y, b.dy, b.dy);
  }
  // The precision policy's operands are rounded again from the fp32 x and master W (the
  // same values as forward's, which the optimizer has not changed yet). dz is rounded in place
  // for the fp32 ops only: the tensor-core path's layout change rounds its own copy.
  T* dw = trainable ? b.grads : nullptr;
  T* dbias = trainable && opt_.use_bias ? b.grads + s.w_size() : nullptr;
  const conv_mma::Backward mma = conv_mma::takes_backward<T>(e, s, b.dx != nullptr, dw != nullptr);
  if ((b.dx && !mma.dx) || (dw && !mma.params)) round_gradient(e, s.y_size(), b.dy);
  const conv_mma::Backward done = conv_mma::backward(e, s, b.dy, b.x, b.params, b.dx, dw, dbias, mma_);
  if (b.dx && !done.dx)
    run::conv2d_backward_input<T>(e, s, b.dy, product_operand<T>(e, s.w_size(), b.params, rounded_w_), b.dx);
  if (dw && !done.params)
    run::conv2d_backward_params<T>(e, s, product_operand(e, s.x_size(), b.x, rounded_x_), b.dy, dw, dbias);
}

template class LayerCompute<Conv2D>;

}  // namespace cnn
