#pragma once
// Shared plumbing for layer implementations: running an op on the right backend
// (run_ops.hpp), and LayerCompute's float/double entry points, which each layer's .cpp
// instantiates for itself.
#include <cstdint>
#include <string>

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
