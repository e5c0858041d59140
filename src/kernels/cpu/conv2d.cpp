// Conv2D on the CPU. float32 with stride 1 runs the SIMD kernels of fast_kernels.inc (see
// fast.hpp); what follows is the readable reference (double, other strides, CPUs without
// AVX2): im2col + GEMM per sample, samples spread over the thread pool.
//   forward          y_n[c_out, HW]  = W[c_out, K] . col_n[K, HW]      (K = c_in k_h k_w)
//   backward input   dcol[K, HW]     = W^T . dy_n, scattered back by col2im
//   backward params  dW              = sum_n dy_n . col_n^T,  dbias = sum_n,hw dy
#include <type_traits>
#include <vector>

#include "kernels/cpu/fast.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

// col[(ci, kh, kw), (oh, ow)] = x[ci, oh*s - pad + kh, ow*s - pad + kw], 0 outside the image.
template <class T>
void im2col(const Conv2DShape& s, const T* x, T* col) {
  const int hw = s.h_out * s.w_out;
  for (int ci = 0; ci < s.c_in; ++ci)
    for (int kh = 0; kh < s.k_h; ++kh)
      for (int kw = 0; kw < s.k_w; ++kw) {
        T* row = col + int64_t((ci * s.k_h + kh) * s.k_w + kw) * hw;
        const T* plane = x + int64_t(ci) * s.h_in * s.w_in;
        for (int oh = 0; oh < s.h_out; ++oh) {
          const int ih = oh * s.stride_h - s.pad_top + kh;
          T* out = row + oh * s.w_out;
          if (ih < 0 || ih >= s.h_in) {
            std::fill(out, out + s.w_out, T(0));
            continue;
          }
          const T* in = plane + int64_t(ih) * s.w_in;
          for (int ow = 0; ow < s.w_out; ++ow) {
            const int iw = ow * s.stride_w - s.pad_left + kw;
            out[ow] = (iw >= 0 && iw < s.w_in) ? in[iw] : T(0);
          }
        }
      }
}

// The adjoint of im2col: dx[ci, ih, iw] += dcol[...] for every window that read it.
template <class T>
void col2im(const Conv2DShape& s, const T* col, T* dx) {
  const int hw = s.h_out * s.w_out;
  std::fill(dx, dx + int64_t(s.c_in) * s.h_in * s.w_in, T(0));
  for (int ci = 0; ci < s.c_in; ++ci)
    for (int kh = 0; kh < s.k_h; ++kh)
      for (int kw = 0; kw < s.k_w; ++kw) {
        const T* row = col + int64_t((ci * s.k_h + kh) * s.k_w + kw) * hw;
        T* plane = dx + int64_t(ci) * s.h_in * s.w_in;
        for (int oh = 0; oh < s.h_out; ++oh) {
          const int ih = oh * s.stride_h - s.pad_top + kh;
          if (ih < 0 || ih >= s.h_in) continue;
          T* out = plane + int64_t(ih) * s.w_in;
          for (int ow = 0; ow < s.w_out; ++ow) {
            const int iw = ow * s.stride_w - s.pad_left + kw;
            if (iw >= 0 && iw < s.w_in) out[iw] += row[oh * s.w_out + ow];
          }
        }
      }
}

template <class T>
std::vector<T>& thread_scratch(size_t size) {
  thread_local std::vector<T> buf;
  if (buf.size() < size) buf.resize(size);
  return buf;
}

}  // namespace

template <class T>
void conv2d_forward(const Conv2DShape& s, const T* x, const T* w, const T* bias, ActivationSpec act, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->conv2d_forward(s, x, w, bias, act, y)) return;
  }
  const int K = s.c_in * s.k_h * s.k_w, hw = s.h_out * s.w_out;
  parallel_for(s.n, threads_for(s.n, double(K) * hw * s.c_out), [&](int64_t n) {
    T* col = thread_scratch<T>(size_t(K) * hw).data();
    im2col(s, x + int64_t(n) * s.c_in * s.h_in * s.w_in, col);
    T* yn = y + int64_t(n) * s.c_out * hw;
    if (bias) {
      for (int co = 0; co < s.c_out; ++co) std::fill(yn + int64_t(co) * hw, yn + int64_t(co + 1) * hw, bias[co]);
    }
    gemm<T>(false, false, s.c_out, hw, K, T(1), w, K, col, hw, bias ? T(1) : T(0), yn, hw);
    activation_forward<T>(act, int64_t(s.c_out) * hw, yn, yn);
  });
}

template <class T>
void conv2d_backward_input(const Conv2DShape& s, const T* dy, const T* w, T* dx) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->conv2d_backward_input(s, dy, w, dx)) return;
  }
  const int K = s.c_in * s.k_h * s.k_w, hw = s.h_out * s.w_out;
  parallel_for(s.n, threads_for(s.n, double(K) * hw * s.c_out), [&](int64_t n) {
    T* col = thread_scratch<T>(size_t(K) * hw).data();
    gemm<T>(true, false, K, hw, s.c_out, T(1), w, K, dy + int64_t(n) * s.c_out * hw, hw, T(0), col, hw);
    col2im(s, col, dx + int64_t(n) * s.c_in * s.h_in * s.w_in);
  });
}

template <class T>
void conv2d_backward_params(const Conv2DShape& s, const T* x, const T* dy, T* dw, T* dbias) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->conv2d_backward_params(s, x, dy, dw, dbias)) return;
  }
  const int K = s.c_in * s.k_h * s.k_w, hw = s.h_out * s.w_out;
  reduce_over_batch<T>(s.n, size_t(s.w_size()), dw, [&](int n, T* partial) {
    T* col = thread_scratch<T>(size_t(K) * hw).data();
    im2col(s, x + int64_t(n) * s.c_in * s.h_in * s.w_in, col);
    gemm<T>(false, true, s.c_out, K, hw, T(1), dy + int64_t(n) * s.c_out * hw, hw, col, hw, T(1), partial, K);
  }, double(K) * hw * s.c_out);
  if (!dbias) return;
  for (int co = 0; co < s.c_out; ++co) {
    T sum = 0;
    for (int n = 0; n < s.n; ++n) {
      const T* d = dy + (int64_t(n) * s.c_out + co) * hw;
      for (int i = 0; i < hw; ++i) sum += d[i];
    }
    dbias[co] = sum;
  }
}

#define CNN_INSTANTIATE(T)                                                                        \
  template void conv2d_forward<T>(const Conv2DShape&, const T*, const T*, const T*, ActivationSpec, T*); \
  template void conv2d_backward_input<T>(const Conv2DShape&, const T*, const T*, T*);            \
  template void conv2d_backward_params<T>(const Conv2DShape&, const T*, const T*, T*, T*);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
