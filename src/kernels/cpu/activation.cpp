// Elementwise activations and the row-wise softmax on the CPU.
#include <algorithm>
#include <cmath>

#include "cnn/error.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/formulas/activation.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {
namespace f = ::cnn::formulas;

// body(begin, end) over [0, count) in blocks of 16k elements, on the pool when large
// (`cost`: rough work per element, 1 for a compare, ~20 for exp/erf).
template <class Body>
void elementwise(int64_t count, double cost, Body body) {
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  parallel_for(blocks, threads_for(blocks, double(kBlock) * cost), [&](int64_t b) {
    body(b * kBlock, std::min(count, (b + 1) * kBlock));
  });
}

// The elementwise loops take their pointers as arguments (locals the compiler can keep in
// registers), one loop per activation, and load every operand unconditionally (the formulas
// take values, not pointers): a load inside
// `c ? dy[i] : 0` is control flow to GCC, which then neither vectorizes the loop nor avoids
// the branch (mispredicted half the time on ReLU's random signs). dx may equal dy.
template <class T>
void forward_range(Activation kind, T alpha, int64_t begin, int64_t end, const T* x, T* y) {
  switch (kind) {
    case Activation::ReLU:
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) y[i] = f::relu(x[i]);
      return;
    case Activation::LeakyReLU:
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) y[i] = f::leaky_relu(x[i], alpha);
      return;
    case Activation::Sigmoid:
      for (int64_t i = begin; i < end; ++i) y[i] = f::sigmoid(x[i]);
      return;
    case Activation::Tanh:
      for (int64_t i = begin; i < end; ++i) y[i] = f::tanh(x[i]);
      return;
    case Activation::GELU:
      for (int64_t i = begin; i < end; ++i) y[i] = f::gelu(x[i]);
      return;
    case Activation::Linear:
    case Activation::Softmax:
      return;
  }
}

template <class T>
void backward_range(Activation kind, T alpha, int64_t begin, int64_t end, const T* x, const T* y, const T* dy, T* dx) {
  switch (kind) {
    case Activation::ReLU:
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) dx[i] = f::relu_grad(y[i], dy[i]);
      return;
    case Activation::LeakyReLU:
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) dx[i] = f::leaky_relu_grad(y[i], dy[i], alpha);
      return;
    case Activation::Sigmoid:
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) dx[i] = f::sigmoid_grad(y[i], dy[i]);
      return;
    case Activation::Tanh:
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) dx[i] = f::tanh_grad(y[i], dy[i]);
      return;
    case Activation::GELU:
      for (int64_t i = begin; i < end; ++i) dx[i] = f::gelu_grad(x[i], dy[i]);
      return;
    case Activation::Linear:
    case Activation::Softmax:
      return;
  }
}

inline double cost_of(Activation a) {
  return a == Activation::Sigmoid || a == Activation::Tanh || a == Activation::GELU ? 20.0 : 1.0;
}

}  // namespace

template <class T>
void activation_forward(ActivationSpec act, int64_t count, const T* x, T* y) {
  if (act.kind == Activation::Softmax) fail("activation_forward: softmax is not elementwise; use softmax_forward");
  if (act.kind == Activation::Linear) {
    copy<T>(count, x, y);
    return;
  }
  const T alpha = T(act.alpha);
  elementwise(count, cost_of(act.kind),
              [=](int64_t begin, int64_t end) { forward_range<T>(act.kind, alpha, begin, end, x, y); });
}

template <class T>
void activation_backward(ActivationSpec act, int64_t count, const T* x, const T* y, const T* dy, T* dx) {
  if (act.kind == Activation::Softmax) fail("activation_backward: softmax is not elementwise; use softmax_backward");
  if (act.kind == Activation::Linear) {
    copy<T>(count, dy, dx);
    return;
  }
  const T alpha = T(act.alpha);
  elementwise(count, cost_of(act.kind),
              [=](int64_t begin, int64_t end) { backward_range<T>(act.kind, alpha, begin, end, x, y, dy, dx); });
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
