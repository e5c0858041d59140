// MaxPooling2D and AveragePooling2D (pool size, strides defaulting to the pool size, padding).
#include <nlohmann/json.hpp>

#include "cnn/layers.hpp"
#include "layers/layer_impl.hpp"

namespace cnn {

Pooling2D::Pooling2D(Kind kind, Pooling2DOptions options) : kind_(kind), opt_(std::move(options)) {
  if (!opt_.strides) opt_.strides = opt_.pool_size;
  CNN_CHECK(opt_.pool_size.h > 0 && opt_.pool_size.w > 0, type(), ": pool_size must be positive, got ",
            opt_.pool_size.h, "x", opt_.pool_size.w);
  CNN_CHECK(opt_.strides->h > 0 && opt_.strides->w > 0, type(), ": strides must be positive, got ", opt_.strides->h,
            "x", opt_.strides->w);
  padding_ = parse_padding(opt_.padding);
}

Shape Pooling2D::build(const Shape& in) {
  CNN_CHECK(in.size() == 3, type(), ": input must be [channels, height, width], got ", shape_str(in));
  const auto s = ops::Pool2DShape::make(1, int(in[0]), int(in[1]), int(in[2]), opt_.pool_size.h, opt_.pool_size.w,
                                        opt_.strides->h, opt_.strides->w, padding_);
  input_shape_ = in;
  output_shape_ = {in[0], s.h_out, s.w_out};
  return output_shape_;
}

nlohmann::json Pooling2D::config() const {
  auto c = common_config();
  c["pool_size"] = {opt_.pool_size.h, opt_.pool_size.w};
  c["strides"] = {opt_.strides->h, opt_.strides->w};
  c["padding"] = to_string(padding_);
  return c;
}

template <class T>
void Pooling2D::forward_t(const Exec& e, const LayerBuffers<T>& b) {
  const auto s = ops::Pool2DShape::make(b.n, int(input_shape_[0]), int(input_shape_[1]), int(input_shape_[2]),
                                        opt_.pool_size.h, opt_.pool_size.w, opt_.strides->h, opt_.strides->w, padding_);
  if (kind_ == Kind::Max) run::maxpool2d_forward<T>(e, s, b.x, b.y);
  else run::avgpool2d_forward<T>(e, s, b.x, b.y);
}

template <class T>
void Pooling2D::backward_t(const Exec& e, const LayerBuffers<T>& b) {
  if (!b.dx) return;
  const auto s = ops::Pool2DShape::make(b.n, int(input_shape_[0]), int(input_shape_[1]), int(input_shape_[2]),
                                        opt_.pool_size.h, opt_.pool_size.w, opt_.strides->h, opt_.strides->w, padding_);
  if (kind_ == Kind::Max) run::maxpool2d_backward<T>(e, s, b.x, b.dy, b.dx, b.dx_activation);
  else run::avgpool2d_backward<T>(e, s, b.dy, b.dx, b.x, b.dx_activation);
}

template class LayerCompute<Pooling2D>;

}  // namespace cnn
