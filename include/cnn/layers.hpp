#pragma once
// The layers, written as in Keras: Conv2D(6, 5, 1, "valid", "relu"), Dense(10, "softmax"),
// Flatten(), AveragePooling2D(2, 2), MaxPooling2D(2, 2); options structs (C++20 designated
// initialisers) for the rest: Conv2D({.filters = 32, .kernel_size = {3, 5}, .padding = "same"}).
// Weight layouts (also in saved files): Conv2D weight [filters, in_channels, k_h, k_w],
// Dense weight [units, in_features], biases [filters] / [units].
#include <optional>
#include <string>

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

class Conv2D : public Layer {
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
  void emit_logits(bool on) override { logits_ = on; }
  CNN_LAYER_COMPUTE_DECLS

  const Conv2DOptions& options() const { return opt_; }

 private:
  Conv2DOptions opt_;
  Padding padding_;
  ActivationSpec act_;
  bool logits_ = false;
  LayerScratch pre_activation_;  // kept only when the activation's gradient needs its input
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};

struct DenseOptions {
  int units = 0;
  std::string activation = "linear";
  float alpha = kDefaultLeakyAlpha;
  bool use_bias = true;
  std::string kernel_initializer = "glorot_uniform";
};

class Dense : public Layer {
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
  CNN_LAYER_COMPUTE_DECLS

  const DenseOptions& options() const { return opt_; }

 private:
  DenseOptions opt_;
  ActivationSpec act_;
  int in_ = 0;
  bool logits_ = false;
  LayerScratch pre_activation_;
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};

// [C, H, W] (or any shape) -> [C*H*W], in row-major (C, H, W) order.
class Flatten : public Layer {
 public:
  Flatten() = default;
  std::string type() const override { return "Flatten"; }
  Shape build(const Shape& input_shape) override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<Flatten>(*this); }
  CNN_LAYER_COMPUTE_DECLS

 private:
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};

struct Pooling2DOptions {
  Size2 pool_size = 2;
  std::optional<Size2> strides;  // default: the pool size (Keras)
  std::string padding = "valid";
};

class Pooling2D : public Layer {
 public:
  enum class Kind { Max, Average };
  Pooling2D(Kind kind, Pooling2DOptions options);
  std::string type() const override { return kind_ == Kind::Max ? "MaxPooling2D" : "AveragePooling2D"; }
  Shape build(const Shape& input_shape) override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<Pooling2D>(*this); }
  CNN_LAYER_COMPUTE_DECLS

  const Pooling2DOptions& options() const { return opt_; }

 private:
  Kind kind_;
  Pooling2DOptions opt_;
  Padding padding_;
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};

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
class ActivationLayer : public Layer {
 public:
  explicit ActivationLayer(const std::string& activation, float alpha = kDefaultLeakyAlpha);
  std::string type() const override { return "Activation"; }
  Shape build(const Shape& input_shape) override;
  nlohmann::json config() const override;
  std::shared_ptr<Layer> clone() const override { return std::make_shared<ActivationLayer>(*this); }
  Activation activation() const override { return act_.kind; }
  void emit_logits(bool on) override { logits_ = on; }
  CNN_LAYER_COMPUTE_DECLS

 private:
  ActivationSpec act_;
  bool logits_ = false;
  template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
  template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
};

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

}  // namespace cnn
