// A standalone activation layer (Keras's Activation / ReLU / LeakyReLU / Softmax).
#include <cmath>

#include <nlohmann/json.hpp>

#include "cnn/layers.hpp"
#include "layers/layer_impl.hpp"

namespace cnn {

ActivationLayer::ActivationLayer(const std::string& activation, float alpha)
    : act_{parse_activation(activation), alpha} {
  CNN_CHECK(std::isfinite(alpha) && alpha >= 0, "Activation: leaky_relu alpha must be >= 0, got ", alpha);
}

Shape ActivationLayer::build(const Shape& in) {
  CNN_CHECK(act_.kind != Activation::Softmax || in.size() == 1,
            "Activation: softmax needs a flat input [features], got ", shape_str(in), "; add Flatten() before it");
  input_shape_ = output_shape_ = in;
  return output_shape_;
}

nlohmann::json ActivationLayer::config() const {
  auto c = common_config();
  c["activation"] = to_string(act_.kind);
  if (act_.kind == Activation::LeakyReLU) c["alpha"] = act_.alpha;
  return c;
}

template <class T>
void ActivationLayer::forward_t(const Exec& e, const LayerBuffers<T>& b) {
  const ActivationSpec act = logits_ ? ActivationSpec{} : act_;
  const int cols = int(shape_numel(input_shape_));
  apply_activation<T>(e, act, b.n, cols, b.x, b.y);
}

template <class T>
void ActivationLayer::backward_t(const Exec& e, const LayerBuffers<T>& b) {
  if (!b.dx) return;
  const ActivationSpec act = logits_ ? ActivationSpec{} : act_;
  undo_activation<T>(e, act, b.n, int(shape_numel(input_shape_)), b.x, b.y, b.dy, b.dx);
}

template class LayerCompute<ActivationLayer>;

}  // namespace cnn
