// Optimizer updates on the GPU, elementwise over a flat parameter buffer, with the CPU
// reference's formulas (formulas/optimizer.hpp); the per-call scalars are computed on the
// host by the same functions as on the CPU.
#include "kernels/cuda/common.cuh"
#include "kernels/formulas/optimizer.hpp"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;

// Grid-stride loops over the per-element formulas of formulas/optimizer.hpp.
__global__ void sgd_update_kernel(int64_t count, float* param, const float* grad, float* velocity,
                                  formulas::SgdScalars<float> s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    formulas::sgd_update_at(i, param, grad, velocity, s);
}

__global__ void adam_update_kernel(int64_t count, float* param, const float* grad, float* m, float* v,
                                   formulas::AdamScalars<float> s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    formulas::adam_update_at(i, param, grad, m, v, s);
}

}  // namespace

void sgd_update(Context& ctx, int64_t count, float* param, const float* grad, float* velocity, const SgdConfig& cfg) {
  if (count <= 0) return;
  sgd_update_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, param, grad, velocity,
                                                                            formulas::sgd_scalars<float>(cfg));
  CNN_CUDA_CHECK_LAUNCH("sgd_update_kernel");
}

void adam_update(Context& ctx, int64_t count, float* param, const float* grad, float* m, float* v, const AdamConfig& cfg) {
  if (count <= 0) return;
  adam_update_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, param, grad, m, v,
                                                                             formulas::adam_scalars<float>(cfg));
  CNN_CUDA_CHECK_LAUNCH("adam_update_kernel");
}

}  // namespace cnn::ops::cuda
