// Max and average pooling on the CPU. Windows clip to the image ('same' padding adds no
// values): the max is over in-bounds elements and the average divides by their count.
// float32 2x2/stride-2 windows run the SIMD kernels of fast_kernels.inc (fast.hpp), which
// add and compare in this code's order and so give the same bits; this is the reference.
#include <algorithm>
#include <type_traits>

#include "cnn/error.hpp"
#include "kernels/cpu/fast.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

struct Window {
  int h0, h1, w0, w1;  // in-bounds input rows [h0, h1) and columns [w0, w1)
};

inline Window window_at(const Pool2DShape& s, int oh, int ow) {
  const int h = oh * s.stride_h - s.pad_top, w = ow * s.stride_w - s.pad_left;
  return {std::max(h, 0), std::min(h + s.k_h, s.h_in), std::max(w, 0), std::min(w + s.k_w, s.w_in)};
}

// Index (within the plane) of the first maximum of a window, row-major.
template <class T>
int argmax_in(const Pool2DShape& s, const T* plane, const Window& win) {
  int best = win.h0 * s.w_in + win.w0;
  for (int ih = win.h0; ih < win.h1; ++ih)
    for (int iw = win.w0; iw < win.w1; ++iw)
      if (plane[ih * s.w_in + iw] > plane[best]) best = ih * s.w_in + iw;
  return best;
}

}  // namespace

template <class T>
void maxpool2d_forward(const Pool2DShape& s, const T* x, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->maxpool2d_forward(s, x, y)) return;
  }
  const int planes = s.n * s.c;
  parallel_for(planes, threads_for(planes, 4.0 * s.h_in * s.w_in), [&](int64_t p) {
    const T* plane = x + int64_t(p) * s.h_in * s.w_in;
    T* out = y + int64_t(p) * s.h_out * s.w_out;
    for (int oh = 0; oh < s.h_out; ++oh)
      for (int ow = 0; ow < s.w_out; ++ow) out[oh * s.w_out + ow] = plane[argmax_in(s, plane, window_at(s, oh, ow))];
  });
}

template <class T>
void maxpool2d_backward_plain(const Pool2DShape& s, const T* x, const T* dy, T* dx) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->maxpool2d_backward(s, x, dy, dx)) return;
  }
  const int planes = s.n * s.c;
  parallel_for(planes, threads_for(planes, 4.0 * s.h_in * s.w_in), [&](int64_t p) {
    const T* plane = x + int64_t(p) * s.h_in * s.w_in;
    const T* d_out = dy + int64_t(p) * s.h_out * s.w_out;
    T* d_in = dx + int64_t(p) * s.h_in * s.w_in;
    std::fill(d_in, d_in + s.h_in * s.w_in, T(0));
    for (int oh = 0; oh < s.h_out; ++oh)
      for (int ow = 0; ow < s.w_out; ++ow) d_in[argmax_in(s, plane, window_at(s, oh, ow))] += d_out[oh * s.w_out + ow];
  });
}

template <class T>
void avgpool2d_forward(const Pool2DShape& s, const T* x, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->avgpool2d_forward(s, x, y)) return;
  }
  const int planes = s.n * s.c;
  parallel_for(planes, threads_for(planes, 4.0 * s.h_in * s.w_in), [&](int64_t p) {
    const T* plane = x + int64_t(p) * s.h_in * s.w_in;
    T* out = y + int64_t(p) * s.h_out * s.w_out;
    for (int oh = 0; oh < s.h_out; ++oh)
      for (int ow = 0; ow < s.w_out; ++ow) {
        const Window win = window_at(s, oh, ow);
        T sum = 0;
        for (int ih = win.h0; ih < win.h1; ++ih)
          for (int iw = win.w0; iw < win.w1; ++iw) sum += plane[ih * s.w_in + iw];
        out[oh * s.w_out + ow] = sum / T((win.h1 - win.h0) * (win.w1 - win.w0));
      }
  });
}

template <class T>
void avgpool2d_backward_plain(const Pool2DShape& s, const T* dy, T* dx) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->avgpool2d_backward(s, dy, dx)) return;
  }
  const int planes = s.n * s.c;
  parallel_for(planes, threads_for(planes, 4.0 * s.h_in * s.w_in), [&](int64_t p) {
    const T* d_out = dy + int64_t(p) * s.h_out * s.w_out;
    T* d_in = dx + int64_t(p) * s.h_in * s.w_in;
    std::fill(d_in, d_in + s.h_in * s.w_in, T(0));
    for (int oh = 0; oh < s.h_out; ++oh)
      for (int ow = 0; ow < s.w_out; ++ow) {
        const Window win = window_at(s, oh, ow);
        const T share = d_out[oh * s.w_out + ow] / T((win.h1 - win.h0) * (win.w1 - win.w0));
        for (int ih = win.h0; ih < win.h1; ++ih)
          for (int iw = win.w0; iw < win.w1; ++iw) d_in[ih * s.w_in + iw] += share;
      }
  });
}

// The gradient of the activation below, taken by a backward pass (ops.hpp): the op the layer
// below would run, on dx in place.
template <class T>
void take_activation_below(const Pool2DShape& s, ActivationSpec below, const T* x, T* dx) {
  if (below.kind == Activation::Linear) return;
  CNN_CHECK(pool_backward_takes_activation(below) && x, "pooling backward: cannot take the gradient of ",
            to_string(below.kind), " below it");
  activation_backward<T>(below, s.x_size(), nullptr, x, dx, dx);
}

template <class T>
void maxpool2d_backward(const Pool2DShape& s, const T* x, const T* dy, T* dx, ActivationSpec below) {
  maxpool2d_backward_plain(s, x, dy, dx);
  take_activation_below(s, below, x, dx);
}

template <class T>
void avgpool2d_backward(const Pool2DShape& s, const T* dy, T* dx, const T* x, ActivationSpec below) {
  avgpool2d_backward_plain(s, dy, dx);
  take_activation_below(s, below, x, dx);
}

#define CNN_INSTANTIATE(T)                                                               \
  template void maxpool2d_forward<T>(const Pool2DShape&, const T*, T*);                \
  template void maxpool2d_backward<T>(const Pool2DShape&, const T*, const T*, T*, ActivationSpec); \
  template void avgpool2d_forward<T>(const Pool2DShape&, const T*, T*);                \
  template void avgpool2d_backward<T>(const Pool2DShape&, const T*, T*, const T*, ActivationSpec);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu

namespace cnn::ops {
bool pool_backward_takes_activation(ActivationSpec below) {
  switch (below.kind) {
    case Activation::Linear:
    case Activation::ReLU:
    case Activation::LeakyReLU:
    case Activation::Sigmoid:
    case Activation::Tanh: return true;
    default: return false;  // GELU's gradient needs its input; softmax is not elementwise
  }
}
}  // namespace cnn::ops
