// Global average and max pooling on the GPU: x [n, c, hw] -> y [n, c]. One warp per plane
// for the reductions (fixed-order shuffles, deterministic); the max's first maximum in
// memory order takes the gradient, as on the CPU (warp_argmax breaks ties by lowest index).
#include "kernels/cuda/common.cuh"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;
constexpr int kPlanesPerBlock = kThreads / kWarpSize;

__global__ void global_avgpool_forward_kernel(int64_t planes, int hw, const float* __restrict__ x,
                                              float* __restrict__ y) {
  const int64_t p = int64_t(blockIdx.x) * kPlanesPerBlock + int(threadIdx.x) / kWarpSize;
  const int lane = int(threadIdx.x) % kWarpSize;
  if (p >= planes) return;  // whole warps leave together
  const float* v = x + p * hw;
  float sum = 0.f;
  for (int j = lane; j < hw; j += kWarpSize) sum += v[j];
  sum = warp_sum(sum);
  if (lane == 0) y[p] = sum / float(hw);
}

__global__ void global_avgpool_backward_kernel(int64_t count, int hw, const float* __restrict__ dy,
                                               float* __restrict__ dx) {
  const float inv = 1.f / float(hw);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dy[i / hw] * inv;
}

__global__ void global_maxpool_forward_kernel(int64_t planes, int hw, const float* __restrict__ x,
                                              float* __restrict__ y) {
  const int64_t p = int64_t(blockIdx.x) * kPlanesPerBlock + int(threadIdx.x) / kWarpSize;
  const int lane = int(threadIdx.x) % kWarpSize;
  if (p >= planes) return;
  const float* v = x + p * hw;
  const int best = warp_argmax(v, hw, lane);
  if (lane == 0) y[p] = v[best];
}

// dx = dy at the plane's first maximum, 0 elsewhere.
__global__ void global_maxpool_backward_kernel(int64_t planes, int hw, const float* __restrict__ x,
                                               const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t p = int64_t(blockIdx.x) * kPlanesPerBlock + int(threadIdx.x) / kWarpSize;
  const int lane = int(threadIdx.x) % kWarpSize;
  if (p >= planes) return;
  const int best = warp_argmax(x + p * hw, hw, lane);
  const float g = dy[p];
  for (int j = lane; j < hw; j += kWarpSize) dx[p * hw + j] = j == best ? g : 0.f;
}

unsigned blocks_for_planes(int64_t planes) { return unsigned(ceil_div(planes, kPlanesPerBlock)); }

void check_shape(int n, int c, int hw, const char* op) {
  CNN_CHECK(n >= 0 && c >= 0 && hw >= 0, op, ": negative shape n=", n, " c=", c, " hw=", hw);
}

}  // namespace

void global_avgpool_forward(Context& ctx, int n, int c, int hw, const float* x, float* y) {
  check_shape(n, c, hw, "global_avgpool_forward");
  const int64_t planes = int64_t(n) * c;
  if (planes == 0 || hw == 0) return;
  global_avgpool_forward_kernel<<<blocks_for_planes(planes), kThreads, 0, ctx.stream>>>(planes, hw, x, y);
  CNN_CUDA_CHECK_LAUNCH("global_avgpool_forward_kernel");
}

void global_avgpool_backward(Context& ctx, int n, int c, int hw, const float* dy, float* dx) {
  check_shape(n, c, hw, "global_avgpool_backward");
  const int64_t count = int64_t(n) * c * hw;
  if (count == 0) return;
  global_avgpool_backward_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, hw, dy, dx);
  CNN_CUDA_CHECK_LAUNCH("global_avgpool_backward_kernel");
}

void global_maxpool_forward(Context& ctx, int n, int c, int hw, const float* x, float* y) {
  check_shape(n, c, hw, "global_maxpool_forward");
  const int64_t planes = int64_t(n) * c;
  if (planes == 0 || hw == 0) return;
  global_maxpool_forward_kernel<<<blocks_for_planes(planes), kThreads, 0, ctx.stream>>>(planes, hw, x, y);
  CNN_CUDA_CHECK_LAUNCH("global_maxpool_forward_kernel");
}

void global_maxpool_backward(Context& ctx, int n, int c, int hw, const float* x, const float* dy, float* dx) {
  check_shape(n, c, hw, "global_maxpool_backward");
  const int64_t planes = int64_t(n) * c;
  if (planes == 0 || hw == 0) return;
  global_maxpool_backward_kernel<<<blocks_for_planes(planes), kThreads, 0, ctx.stream>>>(planes, hw, x, dy, dx);
  CNN_CUDA_CHECK_LAUNCH("global_maxpool_backward_kernel");
}

}  // namespace cnn::ops::cuda
