// Batch normalisation on the GPU (formulas in ops.hpp), deterministic: no atomics.
//
// Per-channel statistics are a split reduction. Channel k's m = n * hw values are cut into
// `splits` equal ranges; block (split, k) reduces one range with block_sum and writes its
// partial to scratch, then one thread per channel adds the partials in split order (in
// double) and finishes the statistics. The forward sums are shifted by the channel's first
// value (sum(x - x0), sum((x - x0)^2)), which keeps the one-pass variance accurate when the
// mean is large next to the spread. Normalisation and the input gradient are elementwise
// kernels reading the per-channel results.
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/device_memory.hpp"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;
constexpr int kMaxSplits = 64;

// Ranges per channel: enough blocks to fill the GPU a few times over, while each block
// still gets a few elements per thread.
int splits_for(const Context& ctx, int c, int64_t m) {
  const int64_t for_gpu = ceil_div(int64_t(ctx.sm_count) * 4, c);
  const int64_t for_work = ceil_div(m, int64_t(kThreads) * 4);
  int64_t s = for_gpu < for_work ? for_gpu : for_work;
  if (s > kMaxSplits) s = kMaxSplits;
  return s < 1 ? 1 : int(s);
}

// The per-channel statistics a kernel normalises with: the batch's (mean, invstd), or the
// running (mean, var) from which invstd = 1 / sqrt(var + eps).
struct Stats {
  const float* mean;
  const float* spread;  // invstd, or var when from_var
  bool from_var;
  float eps;
};

__device__ __forceinline__ float invstd_of(const Stats& s, int k) {
  return s.from_var ? 1.f / sqrtf(s.spread[k] + s.eps) : s.spread[k];
}

// Element j of channel k's m = n * hw values (sample j / hw, pixel j % hw).
__device__ __forceinline__ int64_t channel_element(int k, int c, int hw, int64_t j) {
  const int64_t i = j / hw;
  return (i * c + k) * hw + (j - i * hw);
}

// partial[(k * splits + split) * 2 + {0, 1}] = sum over the block's range of (x - x0) and (x - x0)^2,
// x0 = channel k's first value.
__global__ void channel_moments_kernel(int c, int hw, int64_t m, int splits, const float* __restrict__ x,
                                       float* __restrict__ partial) {
  const int split = int(blockIdx.x), k = int(blockIdx.y);
  const int64_t begin = m * split / splits, end = m * (split + 1) / splits;
  const float x0 = x[int64_t(k) * hw];
  float s1 = 0.f, s2 = 0.f;
  for (int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
    const float d = x[channel_element(k, c, hw, j)] - x0;
    s1 += d;
    s2 += d * d;
  }
  s1 = block_sum<kThreads>(s1);
  __syncthreads();
  s2 = block_sum<kThreads>(s2);
  if (threadIdx.x == 0) {
    partial[(int64_t(k) * splits + split) * 2] = s1;
    partial[(int64_t(k) * splits + split) * 2 + 1] = s2;
  }
}

// One thread per channel: the batch mean and invstd, and the running statistics' update.
__global__ void finish_moments_kernel(int c, int hw, int64_t m, int splits, const float* __restrict__ x,
                                      const float* __restrict__ partial, float eps, float momentum,
                                      float* running_mean, float* running_var, float* __restrict__ save_mean,
                                      float* __restrict__ save_invstd) {
  const int k = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (k >= c) return;
  double s1 = 0, s2 = 0;
  for (int s = 0; s < splits; ++s) {
    s1 += double(partial[(int64_t(k) * splits + s) * 2]);
    s2 += double(partial[(int64_t(k) * splits + s) * 2 + 1]);
  }
  const double shift = s1 / double(m);
  double var = s2 / double(m) - shift * shift;
  if (var < 0) var = 0;
  const float mean = float(double(x[int64_t(k) * hw]) + shift);
  save_mean[k] = mean;
  save_invstd[k] = float(1.0 / sqrt(var + double(eps)));
  if (running_mean) running_mean[k] = (1.f - momentum) * running_mean[k] + momentum * mean;
  if (running_var) {
    const float unbiased = float(m > 1 ? var * double(m) / double(m - 1) : var);
    running_var[k] = (1.f - momentum) * running_var[k] + momentum * unbiased;
  }
}

// y = gamma (x - mean) invstd + beta, elementwise.
__global__ void batchnorm_normalize_kernel(int64_t count, int c, int hw, const float* __restrict__ x, Stats st,
                                           const float* __restrict__ gamma, const float* __restrict__ beta,
                                           float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int k = int((i / hw) % c);
    const float g = gamma ? gamma[k] : 1.f, b = beta ? beta[k] : 0.f;
    y[i] = g * ((x[i] - st.mean[k]) * invstd_of(st, k)) + b;
  }
}

// partial[(k * splits + split) * 2 + {0, 1}] = sum of dy and of dy xhat over the block's range.
__global__ void channel_gradient_sums_kernel(int c, int hw, int64_t m, int splits, const float* __restrict__ x,
                                             const float* __restrict__ dy, Stats st, float* __restrict__ partial) {
  const int split = int(blockIdx.x), k = int(blockIdx.y);
  const int64_t begin = m * split / splits, end = m * (split + 1) / splits;
  const float mean = st.mean[k], invstd = invstd_of(st, k);
  float s_dy = 0.f, s_dy_xhat = 0.f;
  for (int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
    const int64_t at = channel_element(k, c, hw, j);
    const float g = dy[at];
    s_dy += g;
    s_dy_xhat += g * ((x[at] - mean) * invstd);
  }
  s_dy = block_sum<kThreads>(s_dy);
  __syncthreads();
  s_dy_xhat = block_sum<kThreads>(s_dy_xhat);
  if (threadIdx.x == 0) {
    partial[(int64_t(k) * splits + split) * 2] = s_dy;
    partial[(int64_t(k) * splits + split) * 2 + 1] = s_dy_xhat;
  }
}

// One thread per channel: sums[k * 2 + {0, 1}] = sum(dy), sum(dy xhat), also written to dbeta
// and dgamma when they are not null.
__global__ void finish_gradient_sums_kernel(int c, int splits, const float* __restrict__ partial,
                                            float* __restrict__ sums, float* __restrict__ dgamma,
                                            float* __restrict__ dbeta) {
  const int k = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (k >= c) return;
  double s_dy = 0, s_dy_xhat = 0;
  for (int s = 0; s < splits; ++s) {
    s_dy += double(partial[(int64_t(k) * splits + s) * 2]);
    s_dy_xhat += double(partial[(int64_t(k) * splits + s) * 2 + 1]);
  }
  sums[k * 2] = float(s_dy);
  sums[k * 2 + 1] = float(s_dy_xhat);
  if (dbeta) dbeta[k] = float(s_dy);
  if (dgamma) dgamma[k] = float(s_dy_xhat);
}

// dx = gamma invstd (dy - sum(dy) / m - xhat sum(dy xhat) / m), or gamma invstd dy when sums
// is null (inference: the statistics are constants). dx may alias dy.
__global__ void batchnorm_input_grad_kernel(int64_t count, int c, int hw, int64_t m, const float* x, const float* dy,
                                            Stats st, const float* __restrict__ gamma, const float* __restrict__ sums,
                                            float* dx) {
  const float inv_m = 1.f / float(m);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int k = int((i / hw) % c);
    const float invstd = invstd_of(st, k), factor = (gamma ? gamma[k] : 1.f) * invstd;
    if (!sums) {
      dx[i] = factor * dy[i];
      continue;
    }
    const float xhat = (x[i] - st.mean[k]) * invstd;
    dx[i] = factor * (dy[i] - sums[k * 2] * inv_m - xhat * (sums[k * 2 + 1] * inv_m));
  }
}

void check_shape(int n, int c, int hw, const char* op) {
  CNN_CHECK(n >= 0 && c >= 0 && hw >= 0, op, ": negative shape n=", n, " c=", c, " hw=", hw);
  CNN_CHECK(c <= 65535, op, ": at most 65535 channels, got ", c);
}

void normalize(Context& ctx, int n, int c, int hw, const float* x, Stats st, const float* gamma, const float* beta,
               float* y) {
  const int64_t count = int64_t(n) * c * hw;
  batchnorm_normalize_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, c, hw, x, st, gamma,
                                                                                           beta, y);
  CNN_CUDA_CHECK_LAUNCH("batchnorm_normalize_kernel");
}

// The per-channel gradient sums into scratch (returned: [c][2]), and into dgamma/dbeta.
float* gradient_sums(Context& ctx, int n, int c, int hw, const float* x, const float* dy, Stats st, float* dgamma,
                     float* dbeta) {
  const int64_t m = int64_t(n) * hw;
  const int splits = splits_for(ctx, c, m);
  float* partial = ctx.scratch(size_t(c) * splits * 2 + size_t(c) * 2);
  float* sums = partial + size_t(c) * splits * 2;
  channel_gradient_sums_kernel<<<dim3(unsigned(splits), unsigned(c)), kThreads, 0, ctx.stream>>>(c, hw, m, splits, x,
                                                                                                 dy, st, partial);
  CNN_CUDA_CHECK_LAUNCH("channel_gradient_sums_kernel");
  finish_gradient_sums_kernel<<<unsigned(ceil_div(c, kThreads)), kThreads, 0, ctx.stream>>>(c, splits, partial, sums,
                                                                                            dgamma, dbeta);
  CNN_CUDA_CHECK_LAUNCH("finish_gradient_sums_kernel");
  return sums;
}

void input_grad(Context& ctx, int n, int c, int hw, const float* x, const float* dy, Stats st, const float* gamma,
                const float* sums, float* dx) {
  const int64_t count = int64_t(n) * c * hw;
  batchnorm_input_grad_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(
      count, c, hw, int64_t(n) * hw, x, dy, st, gamma, sums, dx);
  CNN_CUDA_CHECK_LAUNCH("batchnorm_input_grad_kernel");
}

}  // namespace

void batchnorm_forward_training(Context& ctx, int n, int c, int hw, const BatchNormForwardTrainingArgs<float>& a) {
  check_shape(n, c, hw, "batchnorm_forward_training");
  CNN_CHECK(!a.across_ranks, "batchnorm_forward_training: synchronised statistics (sync_batchnorm) run on CPU ranks only");
  const int64_t m = int64_t(n) * hw;
  if (m == 0 || c == 0) return;
  const int splits = splits_for(ctx, c, m);
  float* partial = ctx.scratch(size_t(c) * splits * 2);
  channel_moments_kernel<<<dim3(unsigned(splits), unsigned(c)), kThreads, 0, ctx.stream>>>(c, hw, m, splits, a.x,
                                                                                           partial);
  CNN_CUDA_CHECK_LAUNCH("channel_moments_kernel");
  finish_moments_kernel<<<unsigned(ceil_div(c, kThreads)), kThreads, 0, ctx.stream>>>(
      c, hw, m, splits, a.x, partial, a.eps, a.momentum, a.running_mean, a.running_var, a.save_mean,
      a.save_invstd);
  CNN_CUDA_CHECK_LAUNCH("finish_moments_kernel");
  normalize(ctx, n, c, hw, a.x, Stats{a.save_mean, a.save_invstd, false, 0.f}, a.gamma, a.beta, a.y);
}

void batchnorm_forward_inference(Context& ctx, int n, int c, int hw, const BatchNormForwardInferenceArgs<float>& a) {
  check_shape(n, c, hw, "batchnorm_forward_inference");
  if (int64_t(n) * c * hw == 0) return;
  normalize(ctx, n, c, hw, a.x, Stats{a.running_mean, a.running_var, true, a.eps}, a.gamma, a.beta, a.y);
}

void batchnorm_backward_training(Context& ctx, int n, int c, int hw, const BatchNormBackwardTrainingArgs<float>& a) {
  check_shape(n, c, hw, "batchnorm_backward_training");
  CNN_CHECK(!a.across_ranks, "batchnorm_backward_training: synchronised statistics (sync_batchnorm) run on CPU ranks only");
  if (c == 0) return;
  if (int64_t(n) * hw == 0) {  // no values: the parameter gradients are zero
    if (a.dgamma) memory::cuda_set_zero(a.dgamma, size_t(c) * sizeof(float));
    if (a.dbeta) memory::cuda_set_zero(a.dbeta, size_t(c) * sizeof(float));
    return;
  }
  const Stats st{a.save_mean, a.save_invstd, false, 0.f};
  const float* sums = gradient_sums(ctx, n, c, hw, a.x, a.dy, st, a.dgamma, a.dbeta);
  if (a.dx) input_grad(ctx, n, c, hw, a.x, a.dy, st, a.gamma, sums, a.dx);
}

void batchnorm_backward_inference(Context& ctx, int n, int c, int hw, const BatchNormBackwardInferenceArgs<float>& a) {
  check_shape(n, c, hw, "batchnorm_backward_inference");
  if (c == 0) return;
  const Stats st{a.running_mean, a.running_var, true, a.eps};
  if (int64_t(n) * hw == 0) {
    if (a.dgamma) memory::cuda_set_zero(a.dgamma, size_t(c) * sizeof(float));
    if (a.dbeta) memory::cuda_set_zero(a.dbeta, size_t(c) * sizeof(float));
    return;
  }
  if (a.dgamma || a.dbeta) gradient_sums(ctx, n, c, hw, a.x, a.dy, st, a.dgamma, a.dbeta);
  if (a.dx) input_grad(ctx, n, c, hw, a.x, a.dy, st, a.gamma, nullptr, a.dx);
}

}  // namespace cnn::ops::cuda
