// Weight averaging on the GPU: a += t (b - a), for EMA and lookahead callbacks.
#include "kernels/cuda/common.cuh"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;

__global__ void lerp_kernel(int64_t count, float* a, const float* b, float t) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    a[i] += t * (b[i] - a[i]);
}

}  // namespace

void lerp(Context& ctx, int64_t count, float* a, const float* b, float t) {
  if (count <= 0) return;
  lerp_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, a, b, t);
  CNN_CUDA_CHECK_LAUNCH("lerp_kernel");
}

}  // namespace cnn::ops::cuda
