#pragma once
// The elementwise activations and their derivatives, written once for the CPU reference
// (templated on float/double), the CPU fast paths' scalar code and the CUDA kernels.
// Each keeps one evaluation order and the scalar type T throughout, so every backend
// computes the same expression.
#include <cmath>
#include <cstdint>

#include "cnn/types.hpp"
#include "kernels/host_device.hpp"

namespace cnn::formulas {

inline constexpr double kInvSqrt2 = 0.70710678118654752440;
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// ---- Forward: y = f(x) --------------------------------------------------------------------
// The products are formed before the selects: a plain value in both arms keeps the CPU
// loops branch-free and vectorized.
template <class T>
CNN_HOST_DEVICE T relu(T x) {
  return x > T(0) ? x : T(0);
}

template <class T>
CNN_HOST_DEVICE T leaky_relu(T x, T alpha) {
  const T scaled = alpha * x;
  return x > T(0) ? x : scaled;
}

template <class T>
CNN_HOST_DEVICE T sigmoid(T x) {
  // Two branches so exp never overflows.
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

template <class T>
CNN_HOST_DEVICE T tanh(T x) {
  return std::tanh(x);
}

template <class T>
CNN_HOST_DEVICE T gelu(T x) {  // the exact form x Phi(x), not the tanh approximation
  return T(0.5) * x * (T(1) + std::erf(x * T(kInvSqrt2)));
}

// ---- Backward: dL/dx from dL/dy, from the output y where it fixes the slope ---------------
template <class T>
CNN_HOST_DEVICE T relu_grad(T y, T dy) {
  return y > T(0) ? dy : T(0);
}

template <class T>
CNN_HOST_DEVICE T leaky_relu_grad(T y, T dy, T alpha) {  // y > 0 exactly where x > 0 (alpha >= 0)
  const T scaled = alpha * dy;
  return y > T(0) ? dy : scaled;
}

template <class T>
CNN_HOST_DEVICE T sigmoid_grad(T y, T dy) {
  return dy * y * (T(1) - y);
}

template <class T>
CNN_HOST_DEVICE T tanh_grad(T y, T dy) {
  return dy * (T(1) - y * y);
}

template <class T>
CNN_HOST_DEVICE T gelu_grad(T x, T dy) {  // d/dx x Phi(x) = Phi(x) + x phi(x)
  const T cdf = T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2)));
  const T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x);
  return dy * (cdf + x * pdf);
}

// ---- One element of any elementwise activation (Softmax is refused by the callers) --------
template <class T>
CNN_HOST_DEVICE T activate(ActivationSpec act, T x) {
  switch (act.kind) {
    case Activation::ReLU: return relu(x);
    case Activation::LeakyReLU: return leaky_relu(x, T(act.alpha));
    case Activation::Sigmoid: return sigmoid(x);
    case Activation::Tanh: return tanh(x);
    case Activation::GELU: return gelu(x);
    default: return x;  // Linear
  }
}

// Reads x[i] only for GELU, so x may be null for the others.
template <class T>
CNN_HOST_DEVICE T activation_grad(ActivationSpec act, const T* x, int64_t i, T y, T dy) {
  switch (act.kind) {
    case Activation::ReLU: return relu_grad(y, dy);
    case Activation::LeakyReLU: return leaky_relu_grad(y, dy, T(act.alpha));
    case Activation::Sigmoid: return sigmoid_grad(y, dy);
    case Activation::Tanh: return tanh_grad(y, dy);
    case Activation::GELU: return gelu_grad(x[i], dy);
    default: return dy;  // Linear
  }
}

}  // namespace cnn::formulas
