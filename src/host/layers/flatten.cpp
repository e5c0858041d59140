// Flatten: [C, H, W] -> [C*H*W]. The data is already in that order: the training step's arena
// gives Flatten its input's buffer and skips it (Layer::output_is_input); where an arena keeps
// every layer apart (the checkers), or Flatten comes first, it copies.
#include <nlohmann/json.hpp>

#include "cnn/layers.hpp"
#include "layers/layer_impl.hpp"

namespace cnn {

Shape Flatten::build(const Shape& in) {
  CNN_CHECK(!in.empty(), "Flatten: empty input shape");
  input_shape_ = in;
  output_shape_ = {shape_numel(in)};
  return output_shape_;
}

nlohmann::json Flatten::config() const { return common_config(); }

template <class T>
void Flatten::forward_t(const Exec& e, const LayerBuffers<T>& b) {
  run::copy<T>(e, b.n * output_shape_[0], b.x, b.y);
}

template <class T>
void Flatten::backward_t(const Exec& e, const LayerBuffers<T>& b) {
  if (b.dx) run::copy<T>(e, b.n * output_shape_[0], b.dy, b.dx);
}

template class LayerCompute<Flatten>;

}  // namespace cnn
