#pragma once
// Shared plumbing for layer implementations: running an op on the right backend
// (run_ops.hpp), and the float/double entry points generated from one template per layer.
#include "cnn/error.hpp"
#include "cnn/layer.hpp"
#include "kernels/ops.hpp"
#include "layers/run_ops.hpp"

// Defines the four virtual compute entry points of `Class` from its forward_t/backward_t.
#define CNN_LAYER_COMPUTE_DEFS(Class)                                                                    \
  void Class::forward(const Exec& e, const LayerBuffers<float>& b) { forward_t(e, b); }                 \
  void Class::forward(const Exec& e, const LayerBuffers<double>& b) { check_cpu(e, #Class); forward_t(e, b); } \
  void Class::backward(const Exec& e, const LayerBuffers<float>& b) { backward_t(e, b); }               \
  void Class::backward(const Exec& e, const LayerBuffers<double>& b) { check_cpu(e, #Class); backward_t(e, b); }

namespace cnn {

inline void check_cpu(const Exec& e, const char* layer) {
  CNN_CHECK(!e.on_cuda(), layer, ": double precision runs on the CPU only");
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
