// Optimizer updates on the CPU, in PyTorch's formulation (so runs match torch.optim).
#include <algorithm>
#include <cmath>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

// body(begin, end) over [0, count) in blocks of 16k elements, on the pool when large. The
// bodies capture by value: pointers in locals, which the compiler keeps in registers.
template <class Body>
void elementwise(int64_t count, Body body) {
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  parallel_for(blocks, threads_for(blocks, double(kBlock)), [&](int64_t b) {
    body(b * kBlock, std::min(count, (b + 1) * kBlock));
  });
}

}  // namespace

template <class T>
void sgd_update(int64_t count, T* param, const T* grad, T* velocity, const SgdConfig& cfg) {
  const T lr = T(cfg.lr), m = T(cfg.momentum), wd = T(cfg.weight_decay);
  const bool coupled = wd != T(0) && !cfg.decoupled_weight_decay;
  const T shrink = cfg.decoupled_weight_decay ? T(1) - lr * wd : T(1);
  const bool nesterov = cfg.nesterov;
  elementwise(count, [=](int64_t begin, int64_t end) {
    if (velocity) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        T g = grad[i];
        if (coupled) g += wd * param[i];
        const T v = m * velocity[i] + g;
        velocity[i] = v;
        g = nesterov ? g + m * v : v;
        param[i] = param[i] * shrink - lr * g;
      }
    } else {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        T g = grad[i];
        if (coupled) g += wd * param[i];
        param[i] = param[i] * shrink - lr * g;
      }
    }
  });
}

template <class T>
void adam_update(int64_t count, T* param, const T* grad, T* m, T* v, const AdamConfig& cfg) {
  const T lr = T(cfg.lr), b1 = T(cfg.beta1), b2 = T(cfg.beta2), eps = T(cfg.eps), wd = T(cfg.weight_decay);
  const T c1 = T(1) - std::pow(b1, T(cfg.step)), c2 = T(1) - std::pow(b2, T(cfg.step));
  const bool coupled = wd != T(0) && !cfg.decoupled_weight_decay;
  const T shrink = cfg.decoupled_weight_decay ? T(1) - lr * wd : T(1);
  elementwise(count, [=](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      T g = grad[i];
      if (coupled) g += wd * param[i];
      m[i] = b1 * m[i] + (T(1) - b1) * g;
      v[i] = b2 * v[i] + (T(1) - b2) * g * g;
      const T m_hat = m[i] / c1, v_hat = v[i] / c2;
      param[i] = param[i] * shrink - lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  });
}

#define CNN_INSTANTIATE(T)                                                          \
  template void sgd_update<T>(int64_t, T*, const T*, T*, const SgdConfig&);        \
  template void adam_update<T>(int64_t, T*, const T*, T*, T*, const AdamConfig&);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
