// Inverted dropout and the elementwise scale on the GPU. The keep decision is the CPU's own
// function (src/kernels/random.hpp) of (seed, element index), so masks match the CPU bit for
// bit and backward recomputes the forward's mask.
#include "kernels/cuda/common.cuh"
#include "kernels/random.hpp"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;

// out = keep(i) ? in * factor : 0. in and out may be the same array.
__global__ void dropout_mask_kernel(int64_t count, uint32_t threshold, float factor, uint64_t seed, const float* in,
                                    float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = random::dropout_keep(seed, uint64_t(i), threshold) ? in[i] * factor : 0.f;
}

__global__ void scale_kernel(int64_t count, float alpha, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = alpha * x[i];
}

void masked_scale(Context& ctx, int64_t count, float rate, uint64_t seed, const float* in, float* out, const char* op) {
  CNN_CHECK(rate >= 0.0f && rate < 1.0f, op, ": rate must be in [0, 1), got ", rate);
  if (count <= 0) return;
  const float factor = 1.f / (1.f - rate);
  dropout_mask_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(
      count, random::dropout_threshold(rate), factor, seed, in, out);
  CNN_CUDA_CHECK_LAUNCH("dropout_mask_kernel");
}

}  // namespace

void dropout_forward(Context& ctx, int64_t count, float rate, uint64_t seed, const float* x, float* y) {
  masked_scale(ctx, count, rate, seed, x, y, "dropout_forward");
}

void dropout_backward(Context& ctx, int64_t count, float rate, uint64_t seed, const float* dy, float* dx) {
  masked_scale(ctx, count, rate, seed, dy, dx, "dropout_backward");
}

void scale(Context& ctx, int64_t count, float alpha, const float* x, float* y) {
  if (count <= 0) return;
  scale_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, alpha, x, y);
  CNN_CUDA_CHECK_LAUNCH("scale_kernel");
}

}  // namespace cnn::ops::cuda
