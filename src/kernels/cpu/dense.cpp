// Dense on the CPU: y = x . W^T + b with W stored [out, in] (PyTorch's layout). float32 runs
// the SIMD kernels of fast_kernels.inc when the CPU has AVX2 (fast.hpp); this is the reference.
#include <algorithm>
#include <type_traits>

#include "kernels/cpu/fast.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {

template <class T>
void dense_forward(int n, int in, int out, const T* x, const T* w, const T* bias, ActivationSpec act, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->dense_forward(n, in, out, x, w, bias, act, y)) return;
  }
  if (bias)
    for (int i = 0; i < n; ++i) std::copy(bias, bias + out, y + int64_t(i) * out);
  gemm<T>(false, true, n, out, in, T(1), x, in, w, in, bias ? T(1) : T(0), y, out);
  activation_forward<T>(act, int64_t(n) * out, y, y);
}

template <class T>
void dense_backward_input(int n, int in, int out, const T* dy, const T* w, T* dx) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->dense_backward_input(n, in, out, dy, w, dx)) return;
  }
  gemm<T>(false, false, n, in, out, T(1), dy, out, w, in, T(0), dx, in);  // dx = dy . W
}

template <class T>
void dense_backward_params(int n, int in, int out, const T* x, const T* dy, T* dw, T* dbias) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->dense_backward_params(n, in, out, x, dy, dw, dbias)) return;
  }
  gemm<T>(true, false, out, in, n, T(1), dy, out, x, in, T(0), dw, in);  // dW = dy^T . x
  if (!dbias) return;
  std::fill(dbias, dbias + out, T(0));
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o) dbias[o] += dy[int64_t(i) * out + o];
}

#define CNN_INSTANTIATE(T)                                                                          \
  template void dense_forward<T>(int, int, int, const T*, const T*, const T*, ActivationSpec, T*); \
  template void dense_backward_input<T>(int, int, int, const T*, const T*, T*);                   \
  template void dense_backward_params<T>(int, int, int, const T*, const T*, T*, T*);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu

namespace cnn::ops {
bool dense_chain_takes(int in, int out, ActivationSpec act) {
  const bool elementwise = act.kind == Activation::Linear || pool_backward_takes_activation(act);
  return in > 0 && out > 0 && in <= kDenseChainMaxWidth && out <= kDenseChainMaxWidth && elementwise;
}
}  // namespace cnn::ops
