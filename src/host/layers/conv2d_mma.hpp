#pragma once
// Conv2D's products on the tensor cores (ops.hpp "Convolution on bf16 tensor cores") under a
// bf16 or tf32 precision policy: the one place that decides, per op, whether those kernels
// take the shape, and that changes the layouts around them (NCHW fp32 -> NHWC bf16 / tf32,
// OIHW -> [c_out, k_h, k_w, c_in], and the fp32 NHWC results back).
//
// Each entry returns what it computed; it computes nothing for the CPU, double, fp32,
// CNN_CUDA_CONV_MMA=0 or a shape whose rule refuses, and the caller then runs the fp32 op on
// operands rounded by the policy (layer_impl.hpp product_operand), which is the reference:
// the kernels round the same operands the same way and differ only in the order of the fp32
// sums. Few-channel inputs are padded with zero channels to the forward's multiple; the
// weight gradient has no tf32 kernel and no padded form (bf16, c_in % 8 == 0 only).
#include <type_traits>

#include "cnn/layer.hpp"
#include "cnn/layers.hpp"
#include "kernels/ops.hpp"

namespace cnn::conv_mma {

struct Backward {
  bool dx = false;      // the input gradient was written
  bool params = false;  // the weight gradient (and the bias gradient, when asked) was written
};

bool forward(const Exec& e, const ops::Conv2DShape& s, const float* x, const float* w, const float* bias,
             ActivationSpec act, float* y, Conv2DMmaScratch& m);
// What backward would compute (nothing run): the gradients wanted whose rules take the shape.
Backward takes_backward(const Exec& e, const ops::Conv2DShape& s, bool want_dx, bool want_dw);
// dz: the gradient before the activation. The kernels' layout change rounds it to the policy's
// precision; the fp32 ops the caller runs for what is not taken need it rounded in place
// (round_gradient) first. dx / dw null: not wanted; dbias null: no bias.
Backward backward(const Exec& e, const ops::Conv2DShape& s, const float* dz, const float* x, const float* w,
                  float* dx, float* dw, float* dbias, Conv2DMmaScratch& m);

// The layers' templates: double steps (CPU only) never take this path.
template <class T>
bool forward(const Exec& e, const ops::Conv2DShape& s, const T* x, const T* w, const T* bias, ActivationSpec act,
             T* y, Conv2DMmaScratch& m) {
  if constexpr (std::is_same_v<T, float>) return forward(e, s, x, w, bias, act, y, m);
  else return false;
}
template <class T>
Backward takes_backward(const Exec& e, const ops::Conv2DShape& s, bool want_dx, bool want_dw) {
  if constexpr (std::is_same_v<T, float>) return takes_backward(e, s, want_dx, want_dw);
  else return {};
}
template <class T>
Backward backward(const Exec& e, const ops::Conv2DShape& s, const T* dz, const T* x, const T* w, T* dx, T* dw,
                  T* dbias, Conv2DMmaScratch& m) {
  if constexpr (std::is_same_v<T, float>) return backward(e, s, dz, x, w, dx, dw, dbias, m);
  else return {};
}

}  // namespace cnn::conv_mma
