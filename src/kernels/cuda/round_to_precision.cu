// The precision policy's rounding on the GPU: the same formulas/precision.hpp as the CPU, so
// both give the same bits.
#include "kernels/cuda/common.cuh"
#include "kernels/formulas/precision.hpp"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;

template <Precision P>
__global__ void round_kernel(int64_t count, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = P == Precision::BF16 ? formulas::round_to_bf16(x[i]) : formulas::round_to_tf32(x[i]);
}

}  // namespace

void round_to_precision(Context& ctx, Precision p, int64_t count, const float* x, float* y) {
  if (count <= 0) return;
  if (p == Precision::FP32) {
    copy(ctx, count, x, y);
    return;
  }
  const unsigned grid = grid_for(ctx, count, kThreads);
  if (p == Precision::BF16) round_kernel<Precision::BF16><<<grid, kThreads, 0, ctx.stream>>>(count, x, y);
  else round_kernel<Precision::TF32><<<grid, kThreads, 0, ctx.stream>>>(count, x, y);
  CNN_CUDA_CHECK_LAUNCH("round_to_precision");
}

}  // namespace cnn::ops::cuda
