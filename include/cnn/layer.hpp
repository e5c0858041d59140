#pragma once
// Layer: the unit a Sequential model stacks. A layer knows its shapes, its parameters'
// shapes and initialisers, and how to run forward and backward on raw buffers; the model
// owns every buffer (parameters and gradients in one flat array each, activations in an
// arena planned at compile) and hands each layer its slice.
//
// The compute entry points exist for float (CPU or CUDA, as Exec says) and for double (CPU
// only, for gradient checks of whole models); concrete layers implement both with one
// template by deriving from LayerCompute (below).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cnn/rng.hpp"
#include "cnn/tensor.hpp"
#include "cnn/types.hpp"

namespace cnn {

namespace cuda {
struct Context;
}
namespace ops {
struct RankSum;
}

// glorot_uniform and he_uniform: Keras's (fans with the receptive field). torch_uniform:
// PyTorch's default for Conv2d and Linear weights, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
// torch_uniform_dirac: that, then the first min(c_out, c_in) filters set to the identity
// (1 at channel i of filter i, in the kernel's centre (k_h / 2, k_w / 2), 0 elsewhere in
// them), as torch.nn.init.dirac_ on those filters: airbench's Conv.
enum class Initializer { GlorotUniform, HeUniform, Zeros, Ones, TorchUniform, TorchUniformDirac };
inline constexpr const char* kValidInitializers =
    "glorot_uniform, he_uniform, zeros, ones, torch_uniform, torch_uniform_dirac";
std::string to_string(Initializer init);
Initializer parse_initializer(const std::string& name);  // the names above, lower case with underscores

struct ParamSpec {
  std::string name;  // "weight", "bias"
  Shape shape;
  Initializer init = Initializer::Zeros;
  int64_t fan_in = 1, fan_out = 1;  // for the scaled initialisers
  bool trainable = true;  // false: never updated by the optimizer (e.g. running statistics)
  float lr_scale = 1.0f;  // multiplies the learning rate for this parameter
};

// Where a layer's compute runs for this call.
struct Exec {
  Device device = Device::CPU;
  cuda::Context* cuda = nullptr;  // set when device == CUDA
  bool training = false;
  // Seed for this call's random numbers (dropout masks, augmentation): the model derives it
  // from the fit seed, the epoch and the step, so runs and resumed runs repeat exactly.
  uint64_t seed = 0;
  // The model's precision policy for conv/dense products (float steps only; double is fp32).
  Precision precision = Precision::FP32;
  // Data-parallel fit with synchronised BatchNormalization (FitOptions::sync_batchnorm): sums
  // over the ranks for the batch statistics of training steps; null otherwise.
  const ops::RankSum* across_ranks = nullptr;
  bool on_cuda() const { return device == Device::CUDA; }
};

// The buffers of one call. Shapes are [n, per-sample shape]; `params`/`grads` point at this
// layer's slice of the model's flat buffers (its ParamSpecs in order, contiguous).
template <class T>
struct LayerBuffers {
  int n = 0;
  const T* x = nullptr;  // input
  T* y = nullptr;        // output (forward writes it; backward reads it)
  T* params = nullptr;  // mutable: stateful layers (BatchNorm's running statistics) update theirs
  T* grads = nullptr;  // backward overwrites the layer's parameter gradients
  T* dy = nullptr;     // backward: gradient w.r.t. y; the layer may overwrite it
  T* dx = nullptr;     // backward: gradient w.r.t. x to write, or null when not needed
  // Backward, where the training step folds the activation of the layer below into this
  // layer's pass (Layer::takes_activation_below): dx is then the gradient before that
  // activation, and the layer below gets dy_before_activation (its dy is that already).
  ActivationSpec dx_activation{};
  bool dy_before_activation = false;
  // Backward: the bias gradient is written already (the last Dense layer's, by the fused loss).
  bool bias_grad_done = false;
};

class Layer {
 public:
  virtual ~Layer();

  virtual std::string type() const = 0;  // Keras class name: "Conv2D"
  // Per-sample input shape -> per-sample output shape. Validates and fixes internal shapes;
  // throws cnn::Error naming the problem (the model adds the layer's index and type).
  virtual Shape build(const Shape& input_shape) = 0;
  virtual std::vector<ParamSpec> param_specs() const { return {}; }
  // The layer's configuration as in models/*.json ({"type": ..., ...}).
  virtual nlohmann::json config() const = 0;
  virtual std::shared_ptr<Layer> clone() const = 0;

  virtual void forward(const Exec& e, const LayerBuffers<float>& b) = 0;
  virtual void forward(const Exec& e, const LayerBuffers<double>& b) = 0;
  virtual void backward(const Exec& e, const LayerBuffers<float>& b) = 0;
  virtual void backward(const Exec& e, const LayerBuffers<double>& b) = 0;

  // True for layers that draw random numbers from Exec.seed in training (dropout): their
  // steps cannot be replayed from a recorded CUDA graph.
  virtual bool uses_random() const { return false; }

  // True for layers whose output is their input's values in the same order (Flatten): a
  // training step gives both one buffer and skips the layer (no copy either way).
  virtual bool output_is_input() const { return false; }

  // The activation applied to the output (Linear for layers without one).
  virtual Activation activation() const { return Activation::Linear; }
  // The activation whose gradient this layer's backward can leave to the layer above, which
  // takes it from this layer's output alone (ReLU, leaky ReLU, sigmoid, tanh: the pooling
  // layers do, LayerBuffers::dx_activation); Linear when none.
  virtual ActivationSpec activation_for_layer_above() const { return {}; }
  // Whether this layer's backward can take the gradient of the activation of the layer below.
  virtual bool takes_activation_below() const { return false; }
  // Called by the model when it fuses this (last) layer's softmax or sigmoid into the loss:
  // from then on the layer outputs logits.
  virtual void emit_logits(bool on) { (void)on; }

  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }
  int64_t param_count() const;
  bool trainable = true;  // false freezes every parameter of the layer
  // Finer freezing of a trainable layer (model files: "trainable": "bias", "trainable_epochs",
  // "bias_lr_scale"; airbench trains its whitening conv's bias, alone, for 3 epochs):
  bool bias_only = false;    // only the parameter named "bias" trains; the others stay frozen
  int trainable_epochs = -1;  // >= 0: the trainable parameters train in fit epochs [0, N) only
  float bias_lr_scale = 0;   // > 0: this layer's bias lr multiple, instead of compile's bias_lr_scale
  std::string name;       // optional user label; shown by summary()

 protected:
  // {"type": type(), plus "trainable"/"name" when not default}: the start of every config().
  nlohmann::json common_config() const;
  Shape input_shape_, output_shape_;  // per sample, set by build()
};

// Scratch memory a layer keeps between forward and backward (e.g. pre-activations). It
// grows to the largest batch seen and is reused, so a training step allocates nothing.
class LayerScratch {
 public:
  LayerScratch() = default;
  LayerScratch(const LayerScratch&) {}  // copies of a layer start with their own scratch
  LayerScratch& operator=(const LayerScratch&) { return *this; }
  template <class T>
  T* get(int64_t count, Device device);

 private:
  struct Block {
    void* ptr = nullptr;
    size_t bytes = 0;
    Device device = Device::CPU;
    ~Block();
  };
  std::unique_ptr<Block> float_, double_;
};

// The four compute entry points of a concrete layer, each calling the layer's own templates
//   template <class T> void forward_t(const Exec&, const LayerBuffers<T>&);
//   template <class T> void backward_t(const Exec&, const LayerBuffers<T>&);
// (CRTP: class Conv2D : public LayerCompute<Conv2D>, with LayerCompute<Conv2D> a friend).
// Defined in src/host/layers/layer_impl.hpp and instantiated in each layer's .cpp; the double
// entry points refuse a CUDA Exec.
template <class Derived>
class LayerCompute : public Layer {
 public:
  void forward(const Exec& e, const LayerBuffers<float>& b) override;
  void forward(const Exec& e, const LayerBuffers<double>& b) override;
  void backward(const Exec& e, const LayerBuffers<float>& b) override;
  void backward(const Exec& e, const LayerBuffers<double>& b) override;
};

// Holds any layer by value so models can be written as Sequential({Conv2D(...), Dense(...)}).
class AnyLayer {
 public:
  template <class L, class = std::enable_if_t<std::is_base_of_v<Layer, std::decay_t<L>>>>
  AnyLayer(L&& layer) : ptr_(std::make_shared<std::decay_t<L>>(std::forward<L>(layer))) {}
  AnyLayer(std::shared_ptr<Layer> layer) : ptr_(std::move(layer)) {}
  const std::shared_ptr<Layer>& get() const { return ptr_; }

 private:
  std::shared_ptr<Layer> ptr_;
};

// Builds a layer from its JSON configuration; unknown types raise cnn::Error listing the known ones.
std::shared_ptr<Layer> layer_from_config(const nlohmann::json& config);

}  // namespace cnn
