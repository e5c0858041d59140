#pragma once
// Shared plumbing for layer implementations: running an op on the right backend
// (run_ops.hpp), and LayerCompute's float/double entry points, which each layer's .cpp
// instantiates for itself.
#include <cstdint>
#include <string>
#include <type_traits>

#include "cnn/error.hpp"
#include "cnn/layer.hpp"
#include "kernels/ops.hpp"
#include "layers/run_ops.hpp"

namespace cnn {

inline void check_cpu(const Exec& e, const std::string& layer) {
  CNN_CHECK(!e.on_cuda(), layer, ": double precision runs on the CPU only");
}

template <class Derived>
void LayerCompute<Derived>::forward(const Exec& e, const LayerBuffers<float>& b) {
  static_cast<Derived&>(*this).forward_t(e, b);
}
template <class Derived>
void LayerCompute<Derived>::forward(const Exec& e, const LayerBuffers<double>& b) {
  check_cpu(e, type());
  static_cast<Derived&>(*this).forward_t(e, b);
}
template <class Derived>
void LayerCompute<Derived>::backward(const Exec& e, const LayerBuffers<float>& b) {
  static_cast<Derived&>(*this).backward_t(e, b);
}
template <class Derived>
void LayerCompute<Derived>::backward(const Exec& e, const LayerBuffers<double>& b) {
  check_cpu(e, type());
  static_cast<Derived&>(*this).backward_t(e, b);
}

// The precision policy (ops.hpp round_to_precision lists where it rounds). The operand of a
// product: `x` itself under fp32 (and for double), else x rounded into `scratch`.
template <class T>
const T* product_operand(const Exec& e, int64_t count, const T* x, LayerScratch& scratch) {
  if constexpr (std::is_same_v<T, float>) {
    if (e.precision != Precision::FP32) {
      float* r = scratch.get<float>(count, e.device);
      run::round_to_precision(e, e.precision, count, x, r);
      return r;
    }
  }
  return x;
}
// dz rounded in place for the backward products (fp32 and double: untouched).
template <class T>
void round_gradient(const Exec& e, int64_t count, T* dz) {
  if constexpr (std::is_same_v<T, float>)
    if (e.precision != Precision::FP32) run::round_to_precision(e, e.precision, count, dz, dz);
}

// Activations whose gradient needs the pre-activation input rather than the output.
inline bool gradient_needs_input(Activation a) { return a == Activation::GELU; }

// Applies an output activation to `count` = rows x cols values: the elementwise ones in
// place, softmax row-wise.
template <class T>
void apply_activation(const Exec& e, ActivationSpec act, int rows, int cols, const T* z, T* y) {
  if (act.kind == Activation::Softmax) run::softmax_forward<T>(e, rows, cols, z, y);
  else run::activation_forward<T>(e, act, int64_t(rows) * cols, z, y);
}

// Turns dy (gradient after the activation) into the gradient before it, written to dz.
// z is the pre-activation (may be null unless gradient_needs_input(act)).
template <class T>
void undo_activation(const Exec& e, ActivationSpec act, int rows, int cols, const T* z, const T* y, const T* dy,
                     T* dz) {
  if (act.kind == Activation::Softmax) run::softmax_backward<T>(e, rows, cols, y, dy, dz);
  else run::activation_backward<T>(e, act, int64_t(rows) * cols, z, y, dy, dz);
}

}  // namespace cnn
