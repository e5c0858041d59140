#pragma once
// The optimizer updates of one parameter element, in PyTorch's formulation (so runs match
// torch.optim), written once for the CPU reference (float/double) and the CUDA kernels. The
// per-call scalars are computed on the host, in T, by the *_scalars functions.
#include <cmath>
#include <cstdint>

#include "kernels/host_device.hpp"
#include "kernels/ops.hpp"

namespace cnn::formulas {

template <class T>
struct SgdScalars {
  T lr, momentum, wd;
  T shrink;      // 1 - lr wd for decoupled weight decay, else 1
  bool coupled;  // L2 decay added to the gradient
  bool nesterov;
};

template <class T>
SgdScalars<T> sgd_scalars(const ops::SgdConfig& cfg) {
  const T lr = T(cfg.lr), wd = T(cfg.weight_decay);
  return {lr,
          T(cfg.momentum),
          wd,
          cfg.decoupled_weight_decay ? T(1) - lr * wd : T(1),
          wd != T(0) && !cfg.decoupled_weight_decay,
          cfg.nesterov};
}

// g = grad (+ wd p when coupled); with velocity (null without momentum): v = m v + g, step
// g + m v (Nesterov) or v; p = p shrink - lr step.
template <class T>
CNN_HOST_DEVICE void sgd_update_at(int64_t i, T* param, const T* grad, T* velocity, const SgdScalars<T>& s) {
  T g = grad[i];
  if (s.coupled) g += s.wd * param[i];
  if (velocity) {
    const T v = s.momentum * velocity[i] + g;
    velocity[i] = v;
    g = s.nesterov ? g + s.momentum * v : v;
  }
  param[i] = param[i] * s.shrink - s.lr * g;
}

template <class T>
struct AdamScalars {
  T lr, beta1, beta2, eps, wd;
  T shrink;      // 1 - lr wd for decoupled weight decay (AdamW), else 1
  T c1, c2;      // bias corrections 1 - beta1^step, 1 - beta2^step
  bool coupled;  // L2 decay added to the gradient
};

template <class T>
AdamScalars<T> adam_scalars(const ops::AdamConfig& cfg) {
  const T lr = T(cfg.lr), b1 = T(cfg.beta1), b2 = T(cfg.beta2), wd = T(cfg.weight_decay);
  return {lr,
          b1,
          b2,
          T(cfg.eps),
          wd,
          cfg.decoupled_weight_decay ? T(1) - lr * wd : T(1),
          T(1) - std::pow(b1, T(cfg.step)),
          T(1) - std::pow(b2, T(cfg.step)),
          wd != T(0) && !cfg.decoupled_weight_decay};
}

// Adam / AdamW with bias correction.
template <class T>
CNN_HOST_DEVICE void adam_update_at(int64_t i, T* param, const T* grad, T* m, T* v, const AdamScalars<T>& s) {
  T g = grad[i];
  if (s.coupled) g += s.wd * param[i];
  const T mi = s.beta1 * m[i] + (T(1) - s.beta1) * g;
  const T vi = s.beta2 * v[i] + (T(1) - s.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  const T m_hat = mi / s.c1, v_hat = vi / s.c2;
  param[i] = param[i] * s.shrink - s.lr * m_hat / (std::sqrt(v_hat) + s.eps);
}

}  // namespace cnn::formulas
