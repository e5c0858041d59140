// GlobalAveragePooling2D and GlobalMaxPooling2D: [C, H, W] -> [C].
#include <climits>

#include <nlohmann/json.hpp>

#include "cnn/layers.hpp"
#include "layers/layer_impl.hpp"

namespace cnn {

Shape GlobalPooling2D::build(const Shape& in) {
  CNN_CHECK(in.size() == 3, type(), ": input must be [channels, height, width], got ", shape_str(in));
  CNN_CHECK(in[1] > 0 && in[2] > 0 && in[1] * in[2] <= INT32_MAX, type(), ": bad input ", shape_str(in));
  input_shape_ = in;
  output_shape_ = {in[0]};
  return output_shape_;
}

nlohmann::json GlobalPooling2D::config() const { return common_config(); }

template <class T>
void GlobalPooling2D::forward_t(const Exec& e, const LayerBuffers<T>& b) {
  const int c = int(input_shape_[0]), hw = int(input_shape_[1] * input_shape_[2]);
  if (kind_ == Kind::Max) run::global_maxpool_forward<T>(e, b.n, c, hw, b.x, b.y);
  else run::global_avgpool_forward<T>(e, b.n, c, hw, b.x, b.y);
}

template <class T>
void GlobalPooling2D::backward_t(const Exec& e, const LayerBuffers<T>& b) {
  if (!b.dx) return;
  const int c = int(input_shape_[0]), hw = int(input_shape_[1] * input_shape_[2]);
  if (kind_ == Kind::Max) run::global_maxpool_backward<T>(e, b.n, c, hw, b.x, b.dy, b.dx);
  else run::global_avgpool_backward<T>(e, b.n, c, hw, b.dy, b.dx);
}

template class LayerCompute<GlobalPooling2D>;

}  // namespace cnn
