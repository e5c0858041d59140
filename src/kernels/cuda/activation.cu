// Elementwise activations and the row-wise softmax on the GPU.
#include "kernels/cuda/common.cuh"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / kWarpSize;  // one warp per softmax row

// y = act(x). Grid-stride so any count fits one launch; x == y (in place) is fine.
__global__ void activation_forward_kernel(ActivationSpec act, int64_t count, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = formulas::activate(act, x[i]);
}

__global__ void activation_backward_kernel(ActivationSpec act, int64_t count, const float* x, const float* y,
                                           const float* dy, float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = formulas::activation_grad(act, x, i, y[i], dy[i]);
}

// One warp per row: max, then sum of exp(x - max), then the normalised values. Each lane
// only rewrites elements it has read, so y may alias x.
__global__ void softmax_forward_kernel(int rows, int cols, const float* x, float* y) {
  const int row = blockIdx.x * kRowsPerBlock + int(threadIdx.x) / kWarpSize;
  const int lane = int(threadIdx.x) % kWarpSize;
  if (row >= rows) return;  // whole warps leave together
  const float* in = x + int64_t(row) * cols;
  float* out = y + int64_t(row) * cols;
  float m = -INFINITY;
  for (int j = lane; j < cols; j += kWarpSize) m = fmaxf(m, in[j]);
  m = warp_max(m);
  float sum = 0.f;
  for (int j = lane; j < cols; j += kWarpSize) sum += expf(in[j] - m);
  sum = warp_sum(sum);
  for (int j = lane; j < cols; j += kWarpSize) out[j] = expf(in[j] - m) / sum;
}

// dx = y (dy - <y, dy>) per row, one warp per row.
__global__ void softmax_backward_kernel(int rows, int cols, const float* y, const float* dy, float* dx) {
  const int row = blockIdx.x * kRowsPerBlock + int(threadIdx.x) / kWarpSize;
  const int lane = int(threadIdx.x) % kWarpSize;
  if (row >= rows) return;
  const int64_t base = int64_t(row) * cols;
  float dot = 0.f;
  for (int j = lane; j < cols; j += kWarpSize) dot += y[base + j] * dy[base + j];
  dot = warp_sum(dot);
  for (int j = lane; j < cols; j += kWarpSize) dx[base + j] = y[base + j] * (dy[base + j] - dot);
}

}  // namespace

void activation_forward(Context& ctx, ActivationSpec act, int64_t count, const float* x, float* y) {
  check_elementwise(act, "activation_forward");
  if (count <= 0) return;
  activation_forward_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(act, count, x, y);
  CNN_CUDA_CHECK_LAUNCH("activation_forward_kernel");
}

void activation_backward(Context& ctx, ActivationSpec act, int64_t count, const float* x, const float* y,
                         const float* dy, float* dx) {
  check_elementwise(act, "activation_backward");
  if (count <= 0) return;
  activation_backward_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(act, count, x, y, dy, dx);
  CNN_CUDA_CHECK_LAUNCH("activation_backward_kernel");
}

void softmax_forward(Context& ctx, int rows, int cols, const float* x, float* y) {
  if (rows <= 0 || cols <= 0) return;
  softmax_forward_kernel<<<unsigned(ceil_div(rows, kRowsPerBlock)), kThreads, 0, ctx.stream>>>(rows, cols, x, y);
  CNN_CUDA_CHECK_LAUNCH("softmax_forward_kernel");
}

void softmax_backward(Context& ctx, int rows, int cols, const float* y, const float* dy, float* dx) {
  if (rows <= 0 || cols <= 0) return;
  softmax_backward_kernel<<<unsigned(ceil_div(rows, kRowsPerBlock)), kThreads, 0, ctx.stream>>>(rows, cols, y, dy,
                                                                                               dx);
  CNN_CUDA_CHECK_LAUNCH("softmax_backward_kernel");
}

}  // namespace cnn::ops::cuda
