// Elementwise activations and the row-wise softmax on the CPU.
#include <algorithm>
#include <cmath>

#include "cnn/error.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

template <class T>
T sigmoid(T x) {
  // Two branches so exp never overflows.
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

}  // namespace

template <class T>
void activation_forward(ActivationSpec act, int64_t count, const T* x, T* y) {
  const T alpha = T(act.alpha);
  switch (act.kind) {
    case Activation::Linear:
      if (x != y) std::copy(x, x + count, y);
      return;
    case Activation::ReLU:
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
      return;
    case Activation::LeakyReLU:
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) y[i] = x[i] > T(0) ? x[i] : alpha * x[i];
      return;
    case Activation::Sigmoid:
      for (int64_t i = 0; i < count; ++i) y[i] = sigmoid(x[i]);
      return;
    case Activation::Tanh:
      for (int64_t i = 0; i < count; ++i) y[i] = std::tanh(x[i]);
      return;
    case Activation::GELU:  // exact form: x * Phi(x)
      for (int64_t i = 0; i < count; ++i) y[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * T(kInvSqrt2)));
      return;
    case Activation::Softmax:
      fail("activation_forward: softmax is not elementwise; use softmax_forward");
  }
}

template <class T>
void activation_backward(ActivationSpec act, int64_t count, const T* x, const T* y, const T* dy, T* dx) {
  const T alpha = T(act.alpha);
  switch (act.kind) {
    case Activation::Linear:
      if (dy != dx) std::copy(dy, dy + count, dx);
      return;
    case Activation::ReLU:
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
      return;
    case Activation::LeakyReLU:  // y > 0 exactly where x > 0 because alpha >= 0
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) dx[i] = y[i] > T(0) ? dy[i] : alpha * dy[i];
      return;
    case Activation::Sigmoid:
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
      return;
    case Activation::Tanh:
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
      return;
    case Activation::GELU:  // d/dx x Phi(x) = Phi(x) + x phi(x)
      for (int64_t i = 0; i < count; ++i) {
        const T cdf = T(0.5) * (T(1) + std::erf(x[i] * T(kInvSqrt2)));
        const T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * x[i] * x[i]);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
      }
      return;
    case Activation::Softmax:
      fail("activation_backward: softmax is not elementwise; use softmax_backward");
  }
}

template <class T>
void softmax_forward(int rows, int cols, const T* x, T* y) {
  for (int r = 0; r < rows; ++r) {
    const T* in = x + int64_t(r) * cols;
    T* out = y + int64_t(r) * cols;
    const T m = *std::max_element(in, in + cols);
    T sum = 0;
    for (int j = 0; j < cols; ++j) sum += (out[j] = std::exp(in[j] - m));
    for (int j = 0; j < cols; ++j) out[j] /= sum;
  }
}

template <class T>
void softmax_backward(int rows, int cols, const T* y, const T* dy, T* dx) {
  for (int r = 0; r < rows; ++r) {
    const T* p = y + int64_t(r) * cols;
    const T* g = dy + int64_t(r) * cols;
    T dot = 0;
    for (int j = 0; j < cols; ++j) dot += p[j] * g[j];
    for (int j = 0; j < cols; ++j) dx[int64_t(r) * cols + j] = p[j] * (g[j] - dot);
  }
}

#define CNN_INSTANTIATE(T)                                                                            \
  template void activation_forward<T>(ActivationSpec, int64_t, const T*, T*);                        \
  template void activation_backward<T>(ActivationSpec, int64_t, const T*, const T*, const T*, T*);   \
  template void softmax_forward<T>(int, int, const T*, T*);                                          \
  template void softmax_backward<T>(int, int, const T*, const T*, T*);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
