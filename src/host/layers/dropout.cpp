// Dropout: inverted dropout in training (mask from Exec::seed, recomputed in backward),
// the identity in inference.
#include <cmath>

#include <nlohmann/json.hpp>

#include "cnn/layers.hpp"
#include "layers/layer_impl.hpp"

namespace cnn {

Dropout::Dropout(float rate) : rate_(rate) {
  CNN_CHECK(std::isfinite(rate) && rate >= 0 && rate < 1, "Dropout: rate must be in [0, 1), got ", rate);
}

Shape Dropout::build(const Shape& in) {
  CNN_CHECK(!in.empty(), "Dropout: empty input shape");
  input_shape_ = output_shape_ = in;
  return output_shape_;
}

nlohmann::json Dropout::config() const {
  auto c = common_config();
  c["rate"] = rate_;
  return c;
}

template <class T>
void Dropout::forward_t(const Exec& e, const LayerBuffers<T>& b) {
  const int64_t count = b.n * shape_numel(input_shape_);
  if (e.training && rate_ > 0) run::dropout_forward<T>(e, count, rate_, e.seed, b.x, b.y);
  else run::copy<T>(e, count, b.x, b.y);
}

template <class T>
void Dropout::backward_t(const Exec& e, const LayerBuffers<T>& b) {
  if (!b.dx) return;
  const int64_t count = b.n * shape_numel(input_shape_);
  if (e.training && rate_ > 0) run::dropout_backward<T>(e, count, rate_, e.seed, b.dy, b.dx);
  else run::copy<T>(e, count, b.dy, b.dx);
}

template class LayerCompute<Dropout>;

}  // namespace cnn
