// The CPU reference of the bf16 (and tf32) tensor-core convolutions (ops.hpp): round the two
// product operands to bf16 (tf32) where the GPU stores them, then run the reference convolution
// in T. The products of two bf16 (tf32) values are exact in fp32 (8 + 8, 11 + 11 significant
// bits), so what remains between this and the GPU is the order and precision of the sums.
// Also the NCHW <-> NHWC conversions the kernels' layouts need, bit-identical to the GPU's.
#include <vector>

#include "cnn/error.hpp"
#include "kernels/formulas/precision.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

// x rounded to bf16 or tf32 (through float: the GPU rounds the fp32 value).
template <class T>
std::vector<T> rounded_to_bf16(const T* x, int64_t count) {
  std::vector<T> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out[size_t(i)] = T(formulas::round_to_bf16(float(x[i])));
  return out;
}
template <class T>
std::vector<T> rounded_to_tf32(const T* x, int64_t count) {
  std::vector<T> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out[size_t(i)] = T(formulas::round_to_tf32(float(x[i])));
  return out;
}

}  // namespace

template <class T>
void conv2d_forward_bf16(const Conv2DShape& s, const T* x, const T* w, const T* bias, ActivationSpec act, T* y) {
  const auto xb = rounded_to_bf16(x, s.x_size()), wb = rounded_to_bf16(w, s.w_size());
  conv2d_forward<T>(s, xb.data(), wb.data(), bias, act, y);
}

template <class T>
void conv2d_backward_input_bf16(const Conv2DShape& s, const T* dy, const T* w, T* dx) {
  const auto dyb = rounded_to_bf16(dy, s.y_size()), wb = rounded_to_bf16(w, s.w_size());
  conv2d_backward_input<T>(s, dyb.data(), wb.data(), dx);
}

template <class T>
void conv2d_backward_params_bf16(const Conv2DShape& s, const T* x, const T* dy, T* dw, T* dbias) {
  const auto xb = rounded_to_bf16(x, s.x_size()), dyb = rounded_to_bf16(dy, s.y_size());
  conv2d_backward_params<T>(s, xb.data(), dyb.data(), dw, dbias);
}

template <class T>
void conv2d_forward_tf32(const Conv2DShape& s, const T* x, const T* w, const T* bias, ActivationSpec act, T* y) {
  const auto xr = rounded_to_tf32(x, s.x_size()), wr = rounded_to_tf32(w, s.w_size());
  conv2d_forward<T>(s, xr.data(), wr.data(), bias, act, y);
}

template <class T>
void conv2d_backward_input_tf32(const Conv2DShape& s, const T* dy, const T* w, T* dx) {
  const auto dyr = rounded_to_tf32(dy, s.y_size()), wr = rounded_to_tf32(w, s.w_size());
  conv2d_backward_input<T>(s, dyr.data(), wr.data(), dx);
}

void nchw_to_nhwc_tf32(int n, int c, int h, int w, int c_padded, const float* x, float* y) {
  CNN_CHECK(n > 0 && c > 0 && h > 0 && w > 0 && c_padded >= c, "nchw_to_nhwc_tf32: bad sizes ", n, "x", c, "x", h,
            "x", w, " padded to ", c_padded, " channels");
  const int64_t hw = int64_t(h) * w;
  for (int64_t img = 0; img < n; ++img)
    for (int64_t p = 0; p < hw; ++p) {
      float* pixel = y + (img * hw + p) * c_padded;
      for (int ch = 0; ch < c_padded; ++ch) pixel[ch] = ch < c ? formulas::round_to_tf32(x[(img * c + ch) * hw + p]) : 0.f;
    }
}

void nchw_to_nhwc_bf16(int n, int c, int h, int w, int c_padded, const float* x, uint16_t* y) {
  CNN_CHECK(n > 0 && c > 0 && h > 0 && w > 0 && c_padded >= c, "nchw_to_nhwc_bf16: bad sizes ", n, "x", c, "x", h,
            "x", w, " padded to ", c_padded, " channels");
  const int64_t hw = int64_t(h) * w;
  for (int64_t img = 0; img < n; ++img)
    for (int64_t p = 0; p < hw; ++p) {
      uint16_t* pixel = y + (img * hw + p) * c_padded;
      for (int ch = 0; ch < c_padded; ++ch)
        pixel[ch] = ch < c ? formulas::bf16_bits(x[(img * c + ch) * hw + p]) : uint16_t(0);
    }
}

template <class T>
void nhwc_to_nchw(int n, int c, int h, int w, const T* x, T* y) {
  CNN_CHECK(n > 0 && c > 0 && h > 0 && w > 0, "nhwc_to_nchw: bad sizes ", n, "x", c, "x", h, "x", w);
  const int64_t hw = int64_t(h) * w;
  for (int64_t img = 0; img < n; ++img)
    for (int ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) y[(img * c + ch) * hw + p] = x[(img * hw + p) * c + ch];
}

#define CNN_INSTANTIATE(T)                                                                                     \
  template void conv2d_forward_bf16<T>(const Conv2DShape&, const T*, const T*, const T*, ActivationSpec, T*); \
  template void conv2d_backward_input_bf16<T>(const Conv2DShape&, const T*, const T*, T*);                   \
  template void conv2d_backward_params_bf16<T>(const Conv2DShape&, const T*, const T*, T*, T*);              \
  template void nhwc_to_nchw<T>(int, int, int, int, const T*, T*);                                           \
  template void conv2d_forward_tf32<T>(const Conv2DShape&, const T*, const T*, const T*, ActivationSpec, T*); \
  template void conv2d_backward_input_tf32<T>(const Conv2DShape&, const T*, const T*, T*);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
