// Optimizer updates on the GPU, elementwise over a flat parameter buffer, with the CPU
// reference's formulas (formulas/optimizer.hpp); the per-call scalars are computed on the
// host by the same functions as on the CPU and reach the kernel as an argument, or through
// device memory for a step that is replayed from a CUDA graph.
#include "kernels/cuda/common.cuh"
#include "kernels/formulas/optimizer.hpp"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;

// The scalars themselves (an argument), or where ops::*_scalars wrote them in device memory.
template <class S>
__device__ __forceinline__ const S& scalars_of(const S& s) {
  return s;
}
template <class S>
struct FromDevice {
  const ops::OptimizerScalars* at;
};
template <class S>
__device__ __forceinline__ S scalars_of(FromDevice<S> s) {
  return *reinterpret_cast<const S*>(s.at->bytes);  // one copy per thread, a broadcast load
}

// Grid-stride loops over the per-element formulas of formulas/optimizer.hpp.
template <class Scalars>
__global__ void sgd_update_kernel(int64_t count, float* param, const float* grad, float* velocity, Scalars scalars) {
  const formulas::SgdScalars<float> s = scalars_of(scalars);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    formulas::sgd_update_at(i, param, grad, velocity, s);
}

template <class Scalars>
__global__ void adam_update_kernel(int64_t count, float* param, const float* grad, float* m, float* v,
                                   Scalars scalars) {
  const formulas::AdamScalars<float> s = scalars_of(scalars);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    formulas::adam_update_at(i, param, grad, m, v, s);
}

template <class Scalars>
void launch_sgd(Context& ctx, int64_t count, float* param, const float* grad, float* velocity, Scalars s) {
  if (count <= 0) return;
  sgd_update_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, param, grad, velocity, s);
  CNN_CUDA_CHECK_LAUNCH("sgd_update_kernel");
}

template <class Scalars>
void launch_adam(Context& ctx, int64_t count, float* param, const float* grad, float* m, float* v, Scalars s) {
  if (count <= 0) return;
  adam_update_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, param, grad, m, v, s);
  CNN_CUDA_CHECK_LAUNCH("adam_update_kernel");
}

}  // namespace

void sgd_update(Context& ctx, int64_t count, float* param, const float* grad, float* velocity, const SgdConfig& cfg) {
  launch_sgd(ctx, count, param, grad, velocity, formulas::sgd_scalars<float>(cfg));
}

void adam_update(Context& ctx, int64_t count, float* param, const float* grad, float* m, float* v, const AdamConfig& cfg) {
  launch_adam(ctx, count, param, grad, m, v, formulas::adam_scalars<float>(cfg));
}

void sgd_update(Context& ctx, int64_t count, float* param, const float* grad, float* velocity,
                const OptimizerScalars* device_scalars) {
  launch_sgd(ctx, count, param, grad, velocity, FromDevice<formulas::SgdScalars<float>>{device_scalars});
}

void adam_update(Context& ctx, int64_t count, float* param, const float* grad, float* m, float* v,
                 const OptimizerScalars* device_scalars) {
  launch_adam(ctx, count, param, grad, m, v, FromDevice<formulas::AdamScalars<float>>{device_scalars});
}

}  // namespace cnn::ops::cuda
