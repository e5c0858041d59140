#pragma once
// The layers, written as in Keras: Conv2D(6, 5, 1, "valid", "relu"), Dense(10, "softmax"),
// Flatten(), AveragePooling2D(2, 2), MaxPooling2D(2, 2), BatchNormalization(), Dropout(0.5),
// GlobalAveragePooling2D(), GlobalMaxPooling2D(); options structs (C++20 designated
// initialisers) for the rest: Conv2D({.filters = 32, .kernel_size = {3, 5}, .padding = "same"}).
// Weight layouts (also in saved files): Conv2D weight [filters, in_channels, k_h, k_w],
// Dense weight [units, in_features], biases [filters] / [units].
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cnn/layer.hpp"

namespace cnn {

// A height x width pair that a single int also converts to (5 -> 5x5).
struct Size2 {
  int h = 1, w = 1;
  Size2(int s) : h(s), w(s) {}
  Size2(int height, int width) : h(height), w(width) {}
};

struct Conv2DOptions {
  int filters = 0;
  Size2 kernel_size = 3;
  Size2 strides = 1;
  std::string padding = "valid";
  std::string activation = "linear";
  float alpha = kDefaultLeakyAlpha;  // slope for "leaky_relu"
  bool use_bias = true;
  std::string kernel_initializer = "glorot_uniform";
};

// Internal to Conv2D: the tensor-core path's buffers (src/host/layers/conv2d_mma.hpp), i.e. the
// channels-last operands (x kept from forward for the weight gradient), the channels-last
// output before its layout change, and which input the kept x was converted from. A copy
// starts empty, as LayerScratch does.
struct Conv2DMmaScratch {
  LayerScratch x, w, dz, out;
  const void* x_source = nullptr;  // b.x of the forward that left a reusable bf16 x in `x`
  int x_batch = 0;
  Conv2DMmaScratch() = default;
  Conv2DMmaScratch(const Conv2DMmaScratch&) {}
  Conv2DMmaScratch& operator=(const Conv2DMmaScratch&) { return *this; }
};

class Pooling2D;

class Conv2D : public LayerCompute<Conv2D> {
 public:
  Conv2D(int filters, Size2 kernel_size, Size2 strides = 1, std::string padding = "valid",
         std::string activation = "linear");
  explicit Conv2D(Conv2DOptions options);

  std::string type() const override { return "Conv2D"; }
  Shape build(const Shape& input_shape) override;
  std::vector<ParamSpec> param_specs() const override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<Conv2D>(*this); }
  Activation activation() const override { return act_.kind; }
  ActivationSpec activation_for_layer_above() const override;
  // The GPU's fp32 training step: this layer's forward and the pooling layer's after it in one
  // kernel, where the kernels allow (ops::cuda::conv2d_forward_pooled); false when they do not
  // (nothing ran: run the two layers).
  bool forward_with_pooling(const Exec& e, const LayerBuffers<float>& b, const Pooling2D& pool, float* pooled);
  void emit_logits(bool on) override { logits_ = on; }
  friend class LayerCompute<Conv2D>;

  const Conv2DOptions& options() const { return opt_; }

 private:
  Conv2DOptions opt_;
  Padding padding_;
  ActivationSpec act_;
  bool logits_ = false;
  LayerScratch pre_activation_;  // kept only when the activation's gradient needs its input
  LayerScratch rounded_x_, rounded_w_;  // the product operands under a tf32/bf16 precision policy
  Conv2DMmaScratch mma_;                // the same policy on the GPU's tensor cores
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};
extern template class LayerCompute<Conv2D>;  // src/host/layers/conv2d.cpp

struct DenseOptions {
  int units = 0;
  std::string activation = "linear";
  float alpha = kDefaultLeakyAlpha;
  bool use_bias = true;
  std::string kernel_initializer = "glorot_uniform";
  // Output scale: y = act(scale * (x W^T + b)) (airbench's last layer: no bias, scale 1/9).
  // Finite and non-zero; config key "scale" (written only when not 1).
  float scale = 1.0f;
};

class Dense : public LayerCompute<Dense> {
 public:
  Dense(int units, std::string activation = "linear");
  explicit Dense(DenseOptions options);

  std::string type() const override { return "Dense"; }
  Shape build(const Shape& input_shape) override;
  std::vector<ParamSpec> param_specs() const override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<Dense>(*this); }
  Activation activation() const override { return act_.kind; }
  void emit_logits(bool on) override { logits_ = on; }
  friend class LayerCompute<Dense>;

  const DenseOptions& options() const { return opt_; }
  // What the training step needs to run this layer inside a fused chain of Dense layers.
  ActivationSpec output_activation() const { return logits_ ? ActivationSpec{} : act_; }
  int input_width() const { return in_; }

 private:
  DenseOptions opt_;
  ActivationSpec act_;
  int in_ = 0;
  bool logits_ = false;
  LayerScratch pre_activation_;
  LayerScratch rounded_x_, rounded_w_;  // the product operands under a tf32/bf16 precision policy
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};
extern template class LayerCompute<Dense>;  // src/host/layers/dense.cpp

// [C, H, W] (or any shape) -> [C*H*W], in row-major (C, H, W) order.
class Flatten : public LayerCompute<Flatten> {
 public:
  Flatten() = default;
  std::string type() const override { return "Flatten"; }
  Shape build(const Shape& input_shape) override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<Flatten>(*this); }
  bool output_is_input() const override { return true; }
  friend class LayerCompute<Flatten>;

 private:
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};
extern template class LayerCompute<Flatten>;  // src/host/layers/flatten.cpp

struct Pooling2DOptions {
  Size2 pool_size = 2;
  std::optional<Size2> strides{};  // default: the pool size (Keras)
  std::string padding = "valid";
};

class Pooling2D : public LayerCompute<Pooling2D> {
 public:
  enum class Kind { Max, Average };
  Pooling2D(Kind kind, Pooling2DOptions options);
  std::string type() const override { return kind_ == Kind::Max ? "MaxPooling2D" : "AveragePooling2D"; }
  Shape build(const Shape& input_shape) override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<Pooling2D>(*this); }
  bool takes_activation_below() const override { return true; }
  friend class LayerCompute<Pooling2D>;

  const Pooling2DOptions& options() const { return opt_; }
  bool is_max() const { return kind_ == Kind::Max; }
  Padding padding() const { return padding_; }

 private:
  Kind kind_;
  Pooling2DOptions opt_;
  Padding padding_;
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};
extern template class LayerCompute<Pooling2D>;  // src/host/layers/pooling2d.cpp

class MaxPooling2D : public Pooling2D {
 public:
  MaxPooling2D(Size2 pool_size = 2, std::optional<Size2> strides = {}, std::string padding = "valid")
      : Pooling2D(Kind::Max, {pool_size, strides, std::move(padding)}) {}
  explicit MaxPooling2D(Pooling2DOptions options) : Pooling2D(Kind::Max, std::move(options)) {}
};

class AveragePooling2D : public Pooling2D {
 public:
  AveragePooling2D(Size2 pool_size = 2, std::optional<Size2> strides = {}, std::string padding = "valid")
      : Pooling2D(Kind::Average, {pool_size, strides, std::move(padding)}) {}
  explicit AveragePooling2D(Pooling2DOptions options) : Pooling2D(Kind::Average, std::move(options)) {}
};

// A standalone activation: ActivationLayer("relu"), LeakyReLU(0.1), Softmax() (over the last axis).
class ActivationLayer : public LayerCompute<ActivationLayer> {
 public:
  explicit ActivationLayer(const std::string& activation, float alpha = kDefaultLeakyAlpha);
  std::string type() const override { return "Activation"; }
  Shape build(const Shape& input_shape) override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<ActivationLayer>(*this); }
  Activation activation() const override { return act_.kind; }
  void emit_logits(bool on) override { logits_ = on; }
  friend class LayerCompute<ActivationLayer>;

 private:
  ActivationSpec act_;
  bool logits_ = false;
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};
extern template class LayerCompute<ActivationLayer>;  // src/host/layers/activation_layer.cpp

class ReLU : public ActivationLayer {
 public:
  ReLU() : ActivationLayer("relu") {}
};
class LeakyReLU : public ActivationLayer {
 public:
  explicit LeakyReLU(float alpha = kDefaultLeakyAlpha) : ActivationLayer("leaky_relu", alpha) {}
};
class Softmax : public ActivationLayer {
 public:
  Softmax() : ActivationLayer("softmax") {}
};

// ---- Normalisation, regularisation, global pooling ---------------------------------------

struct BatchNormOptions {
  // Running statistics' update, in PyTorch's convention (the weight of the NEW batch):
  //   running = (1 - momentum) running + momentum batch        (default 0.1, as PyTorch)
  // Keras's `momentum` is the weight of the OLD value, i.e. 1 - this: Keras's 0.99 is 0.01
  // here, airbench's BatchNorm(momentum=0.6) is 0.4. In JSON configs "momentum" has this
  // (PyTorch) meaning; "keras_momentum" is accepted instead and converted (1 - value).
  float momentum = 0.1f;
  float epsilon = 1e-5f;  // added to the variance (PyTorch's default; Keras's is 1e-3)
  // Learn gamma ("weight"). false freezes it: it keeps its value (1 unless loaded) and the
  // optimizer never touches it (airbench's weight=False; Keras's scale=False while gamma is 1).
  bool scale = true;
  // Learn beta ("bias"); false freezes it (0 unless loaded) (Keras's center=False).
  bool center = true;
};

// Normalises each channel (the first per-sample axis: C of [C, H, W], F of [F]) with the
// batch's mean and biased variance in training, and with the running statistics in
// inference; y = gamma xhat + beta. Parameters, each [C]: "weight" (gamma, ones), "bias"
// (beta, zeros), "running_mean" (zeros) and "running_var" (ones); the last two are
// non-trainable and are updated by the forward pass in training mode (unbiased variance,
// as PyTorch). Ops and formulas: src/kernels/ops.hpp.
// Mode: training statistics when Exec::training and the layer is trainable; a layer with
// trainable = false always runs in inference mode (Keras's rule for frozen BatchNormalization).
// Backward: the full batch-statistics gradient in training mode. Gradients are written for
// gamma and beta even when frozen (the optimizer skips them; gradcheck compares them);
// those of the running statistics are 0.
class BatchNormalization : public LayerCompute<BatchNormalization> {
 public:
  BatchNormalization() : BatchNormalization(BatchNormOptions{}) {}
  explicit BatchNormalization(BatchNormOptions options);

  std::string type() const override { return "BatchNormalization"; }
  Shape build(const Shape& input_shape) override;
  std::vector<ParamSpec> param_specs() const override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<BatchNormalization>(*this); }
  friend class LayerCompute<BatchNormalization>;

  const BatchNormOptions& options() const { return opt_; }

 private:
  BatchNormOptions opt_;
  int channels_ = 0, spatial_ = 1;  // per sample: channels x spatial values
  LayerScratch saved_;              // the batch mean and invstd, from forward to backward
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};
extern template class LayerCompute<BatchNormalization>;  // src/host/layers/batch_normalization.cpp

// Inverted dropout: in training each value is zeroed with probability `rate` and the rest
// are scaled by 1 / (1 - rate); in inference the layer is the identity. The mask is a hash
// of (Exec::seed, element index in the batch) (src/kernels/random.hpp): the same on the CPU
// and the GPU, and recomputed in backward from the same seed (nothing stored), so forward and
// backward of a step must see the same Exec::seed, and a fixed seed gives a fixed mask.
class Dropout : public LayerCompute<Dropout> {
 public:
  explicit Dropout(float rate);

  std::string type() const override { return "Dropout"; }
  Shape build(const Shape& input_shape) override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<Dropout>(*this); }
  bool uses_random() const override { return rate_ > 0; }
  friend class LayerCompute<Dropout>;

  float rate() const { return rate_; }

 private:
  float rate_;
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};
extern template class LayerCompute<Dropout>;  // src/host/layers/dropout.cpp

// [C, H, W] -> [C]: the average or the maximum of each channel's plane (the max's gradient
// goes to the plane's first maximum in row-major order).
class GlobalPooling2D : public LayerCompute<GlobalPooling2D> {
 public:
  enum class Kind { Max, Average };
  explicit GlobalPooling2D(Kind kind) : kind_(kind) {}
  std::string type() const override { return kind_ == Kind::Max ? "GlobalMaxPooling2D" : "GlobalAveragePooling2D"; }
  Shape build(const Shape& input_shape) override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<GlobalPooling2D>(*this); }
  friend class LayerCompute<GlobalPooling2D>;

 private:
  Kind kind_;
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};
extern template class LayerCompute<GlobalPooling2D>;  // src/host/layers/global_pooling2d.cpp

class GlobalAveragePooling2D : public GlobalPooling2D {
 public:
  GlobalAveragePooling2D() : GlobalPooling2D(Kind::Average) {}
};

class GlobalMaxPooling2D : public GlobalPooling2D {
 public:
  GlobalMaxPooling2D() : GlobalPooling2D(Kind::Max) {}
};

}  // namespace cnn
