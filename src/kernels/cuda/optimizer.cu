// Optimizer updates on the GPU, elementwise over a flat parameter buffer, with the CPU
// reference's (PyTorch's) formulas. The per-call scalars are computed on the host in
// float exactly as the CPU computes them.
#include <cmath>

#include "kernels/cuda/common.cuh"

namespace cnn::ops::cuda {
namespace {
using ::cnn::cuda::Context;
using namespace ::cnn::cuda;

constexpr int kThreads = 256;

// g = grad (+ wd p when coupled); with velocity: v = m v + g, step g + m v (Nesterov) or v;
// p = p shrink - lr step, shrink = 1 - lr wd for decoupled decay, else 1.
__global__ void sgd_update_kernel(int64_t count, float* param, const float* grad, float* velocity, float lr,
                                  float momentum, float wd, bool coupled, bool nesterov, float shrink) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    float g = grad[i];
    if (coupled) g += wd * param[i];
    if (velocity) {
      const float v = momentum * velocity[i] + g;
      velocity[i] = v;
      g = nesterov ? g + momentum * v : v;
    }
    param[i] = param[i] * shrink - lr * g;
  }
}

// Adam / AdamW with bias correction: c1 = 1 - beta1^step, c2 = 1 - beta2^step.
__global__ void adam_update_kernel(int64_t count, float* param, const float* grad, float* m, float* v, float lr,
                                   float beta1, float beta2, float eps, float wd, bool coupled, float shrink, float c1,
                                   float c2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    float g = grad[i];
    if (coupled) g += wd * param[i];
    const float mi = beta1 * m[i] + (1.f - beta1) * g;
    const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float m_hat = mi / c1, v_hat = vi / c2;
    param[i] = param[i] * shrink - lr * m_hat / (sqrtf(v_hat) + eps);
  }
}

}  // namespace

void sgd_update(Ctx& c, int64_t count, float* param, const float* grad, float* velocity, const SgdConfig& cfg) {
  if (count <= 0) return;
  const float lr = cfg.lr, wd = cfg.weight_decay;
  const bool coupled = wd != 0.f && !cfg.decoupled_weight_decay;
  const float shrink = cfg.decoupled_weight_decay ? 1.f - lr * wd : 1.f;
  sgd_update_kernel<<<grid_for(c, count, kThreads), kThreads, 0, c.stream>>>(count, param, grad, velocity, lr,
                                                                            cfg.momentum, wd, coupled, cfg.nesterov,
                                                                            shrink);
  CNN_CUDA_CHECK_LAUNCH("sgd_update_kernel");
}

void adam_update(Ctx& c, int64_t count, float* param, const float* grad, float* m, float* v, const AdamConfig& cfg) {
  if (count <= 0) return;
  const float lr = cfg.lr, b1 = cfg.beta1, b2 = cfg.beta2, wd = cfg.weight_decay;
  const float c1 = 1.f - std::pow(b1, float(cfg.step)), c2 = 1.f - std::pow(b2, float(cfg.step));
  const bool coupled = wd != 0.f && !cfg.decoupled_weight_decay;
  const float shrink = cfg.decoupled_weight_decay ? 1.f - lr * wd : 1.f;
  adam_update_kernel<<<grid_for(c, count, kThreads), kThreads, 0, c.stream>>>(count, param, grad, m, v, lr, b1, b2,
                                                                             cfg.eps, wd, coupled, shrink, c1, c2);
  CNN_CUDA_CHECK_LAUNCH("adam_update_kernel");
}

}  // namespace cnn::ops::cuda
