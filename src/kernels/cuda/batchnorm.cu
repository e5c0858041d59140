// Batch normalisation on the GPU (formulas in ops.hpp), deterministic: no atomics.
//
// Per-channel statistics are a split reduction. Channel k's m = n * hw values are cut into
// `splits` equal ranges; block (split, k) reduces one range with block_sum and writes its
// partial to scratch, then one thread per channel adds the partials in split order (in
// double) and finishes the statistics. The forward sums are shifted by the channel's first
// value (sum(x - x0), sum((x - x0)^2)), which keeps the one-pass variance accurate when the
// mean is large next to the spread. Normalisation and the input gradient are elementwise
// kernels reading the per-channel results.
//
// Synchronised statistics (a.across_ranks; formulas in ops.hpp): this rank's per-channel sums
// become [2c + 1] doubles on the device, its row count last, which RankSum::on_device sums
// over the ranks. The forward makes two such reductions, as the CPU's passes: the sum of x,
// then the squared deviations about every rank's mean (rounded to float, the shift); the
// backward one (m sum(dy), m sum(dy xhat), m). A rank without rows still joins each of them.
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

// The value channel k's forward sums are shifted by: its first value on this rank, or with
// synchronised statistics (ranks_sums: the ranks' [2c + 1] sums, sum of x at 2k, the row
// count last) every rank's mean, rounded to float. 0 on a rank without rows.
__device__ __forceinline__ float shift_of(int c, int k, int hw, int64_t m, const float* x, const double* ranks_sums) {
  if (ranks_sums) return ranks_sums[2 * c] > 0 ? float(ranks_sums[2 * k] / ranks_sums[2 * c]) : 0.f;
  return m > 0 ? x[int64_t(k) * hw] : 0.f;
}

// partial[(k * splits + split) * 2 + {0, 1}] = sum over the block's range of (x - x0) and (x - x0)^2,
// x0 = shift_of(k).
__global__ void channel_moments_kernel(int c, int hw, int64_t m, int splits, const float* __restrict__ x,
                                       const double* __restrict__ ranks_sums, float* __restrict__ partial) {
  const int split = int(blockIdx.x), k = int(blockIdx.y);
  const int64_t begin = m * split / splits, end = m * (split + 1) / splits;
  const float x0 = shift_of(c, k, hw, m, x, ranks_sums);
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

// Channel k's two partial sums added over the splits in split order, in double.
struct SplitSums {
  double first = 0, second = 0;
};
__device__ SplitSums add_splits(const float* partial, int k, int splits) {
  SplitSums t;
  for (int s = 0; s < splits; ++s) {
    t.first += double(partial[(int64_t(k) * splits + s) * 2]);
    t.second += double(partial[(int64_t(k) * splits + s) * 2 + 1]);
  }
  return t;
}

// Channel k's batch statistics from its mean and (biased) variance over `count` values:
// save_mean, save_invstd, and the running statistics' update (unbiased variance).
__device__ void finish_channel(int k, double mean, double var, double count, float eps, float momentum,
                               float* running_mean, float* running_var, float* save_mean, float* save_invstd) {
  if (var < 0) var = 0;
  const float mean_f = float(mean);
  save_mean[k] = mean_f;
  save_invstd[k] = float(1.0 / sqrt(var + double(eps)));
  if (running_mean) running_mean[k] = (1.f - momentum) * running_mean[k] + momentum * mean_f;
  if (running_var) {
    const float unbiased = float(count > 1 ? var * count / (count - 1) : var);
    running_var[k] = (1.f - momentum) * running_var[k] + momentum * unbiased;
  }
}

// One thread per channel: the batch mean and invstd, and the running statistics' update.
__global__ void finish_moments_kernel(int c, int hw, int64_t m, int splits, const float* __restrict__ x,
                                      const float* __restrict__ partial, float eps, float momentum,
                                      float* running_mean, float* running_var, float* __restrict__ save_mean,
                                      float* __restrict__ save_invstd) {
  const int k = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (k >= c) return;
  const SplitSums t = add_splits(partial, k, splits);
  const double shift = t.first / double(m);
  finish_channel(k, double(x[int64_t(k) * hw]) + shift, t.second / double(m) - shift * shift, double(m), eps,
                 momentum, running_mean, running_var, save_mean, save_invstd);
}

// One thread per channel, synchronised statistics: this rank's sums for the ranks to add,
// sums[2k] = sum of x (the shifted sum plus m x0), sums[2k + 1] = sum of (x - x0)^2, and
// sums[2c] = m.
__global__ void rank_moments_kernel(int c, int hw, int64_t m, int splits, const float* __restrict__ x,
                                    const double* __restrict__ ranks_sums, const float* __restrict__ partial,
                                    double* __restrict__ sums) {
  const int k = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (k >= c) return;
  const SplitSums t = add_splits(partial, k, splits);
  sums[2 * k] = t.first + double(m) * double(shift_of(c, k, hw, m, x, ranks_sums));
  sums[2 * k + 1] = t.second;
  if (k == 0) sums[2 * c] = double(m);
}

// One thread per channel, synchronised statistics, from the ranks' sums of the second pass
// (deviations about x0 = the first pass's mean, rounded to float): mean = S / M,
// var = Q / M - (mean - x0)^2, M the rows of every rank.
__global__ void finish_ranks_moments_kernel(int c, const double* __restrict__ first_pass,
                                            const double* __restrict__ second_pass, float eps, float momentum,
                                            float* running_mean, float* running_var, float* __restrict__ save_mean,
                                            float* __restrict__ save_invstd) {
  const int k = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (k >= c) return;
  const double count = second_pass[2 * c];
  if (count <= 0) return;  // no rank has rows: nothing to normalise (as the CPU's)
  const double x0 = double(float(first_pass[2 * k] / first_pass[2 * c]));
  const double mean = second_pass[2 * k] / count, offset = mean - x0;
  finish_channel(k, mean, second_pass[2 * k + 1] / count - offset * offset, count, eps, momentum, running_mean,
                 running_var, save_mean, save_invstd);
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

// One thread per channel: this rank's sum(dy) and sum(dy xhat), into dbeta and dgamma when
// they are not null, and either the means the input gradient subtracts,
// means[2k + {0, 1}] = sum(dy) / m, sum(dy xhat) / m, or (rank_sums not null: synchronised
// statistics) this rank's share for the ranks to add, rank_sums[2k + {0, 1}] = m sum(dy),
// m sum(dy xhat), rank_sums[2c] = m.
__global__ void finish_gradient_sums_kernel(int c, int splits, int64_t m, const float* __restrict__ partial,
                                            float* __restrict__ means, double* __restrict__ rank_sums,
                                            float* __restrict__ dgamma, float* __restrict__ dbeta) {
  const int k = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (k >= c) return;
  const SplitSums t = add_splits(partial, k, splits);
  const double s_dy = t.first, s_dy_xhat = t.second;
  if (dbeta) dbeta[k] = float(s_dy);
  if (dgamma) dgamma[k] = float(s_dy_xhat);
  if (rank_sums) {
    rank_sums[2 * k] = double(m) * s_dy;
    rank_sums[2 * k + 1] = double(m) * s_dy_xhat;
    if (k == 0) rank_sums[2 * c] = double(m);
  } else if (means) {
    means[2 * k] = float(s_dy / double(m));
    means[2 * k + 1] = float(s_dy_xhat / double(m));
  }
}

// One thread per channel, synchronised statistics: the means this rank's input gradient
// subtracts, from the ranks' sums: means[j] = ranks_sums[j] / (M m), M = every rank's rows.
__global__ void ranks_gradient_means_kernel(int c, int64_t m, const double* __restrict__ ranks_sums,
                                            float* __restrict__ means) {
  const int k = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (k >= c) return;
  const double divisor = ranks_sums[2 * c] * double(m);
  means[2 * k] = float(ranks_sums[2 * k] / divisor);
  means[2 * k + 1] = float(ranks_sums[2 * k + 1] / divisor);
}

// dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)) with means[2k + {0, 1}] those two
// means, or gamma invstd dy when means is null (inference: the statistics are constants).
// dx may alias dy.
__global__ void batchnorm_input_grad_kernel(int64_t count, int c, int hw, const float* x, const float* dy, Stats st,
                                            const float* __restrict__ gamma, const float* __restrict__ means,
                                            float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int k = int((i / hw) % c);
    const float invstd = invstd_of(st, k), factor = (gamma ? gamma[k] : 1.f) * invstd;
    if (!means) {
      dx[i] = factor * dy[i];
      continue;
    }
    const float xhat = (x[i] - st.mean[k]) * invstd;
    dx[i] = factor * (dy[i] - means[k * 2] - xhat * means[k * 2 + 1]);
  }
}

void check_shape(int n, int c, int hw, const char* op) {
  CNN_CHECK(n >= 0 && c >= 0 && hw >= 0, op, ": negative shape n=", n, " c=", c, " hw=", hw);
  CNN_CHECK(c <= 65535, op, ": at most 65535 channels, got ", c);
}

unsigned channel_blocks(int c) { return unsigned(ceil_div(c, kThreads)); }

// Scratch for `floats` floats followed by `doubles` doubles (8-byte aligned).
struct ScratchSplit {
  float* floats;
  double* doubles;
};
ScratchSplit scratch_with_doubles(Context& ctx, size_t floats, size_t doubles) {
  const size_t at = (floats + 1) / 2 * 2;
  float* base = ctx.scratch(at + 2 * doubles);
  return {base, reinterpret_cast<double*>(base + at)};
}

void normalize(Context& ctx, int n, int c, int hw, const float* x, Stats st, const float* gamma, const float* beta,
               float* y) {
  const int64_t count = int64_t(n) * c * hw;
  if (count == 0) return;
  batchnorm_normalize_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, c, hw, x, st, gamma,
                                                                                           beta, y);
  CNN_CUDA_CHECK_LAUNCH("batchnorm_normalize_kernel");
}

void channel_moments(Context& ctx, int c, int hw, int64_t m, int splits, const float* x, const double* ranks_sums,
                     float* partial) {
  channel_moments_kernel<<<dim3(unsigned(splits), unsigned(c)), kThreads, 0, ctx.stream>>>(c, hw, m, splits, x,
                                                                                           ranks_sums, partial);
  CNN_CUDA_CHECK_LAUNCH("channel_moments_kernel");
}

// This rank's moments about shift_of(ranks_sums) into sums [2c + 1], summed over the ranks.
void ranks_moments(Context& ctx, int c, int hw, int64_t m, int splits, const float* x, const double* ranks_sums,
                   float* partial, double* sums, const RankSum& ranks) {
  channel_moments(ctx, c, hw, m, splits, x, ranks_sums, partial);
  rank_moments_kernel<<<channel_blocks(c), kThreads, 0, ctx.stream>>>(c, hw, m, splits, x, ranks_sums, partial, sums);
  CNN_CUDA_CHECK_LAUNCH("rank_moments_kernel");
  ranks.on_device(ctx, sums, 2 * c + 1);
}

// The per-channel means the input gradient subtracts (returned: [c][2], in scratch), and
// dgamma/dbeta; `ranks` not null: over every rank's rows (synchronised statistics).
float* gradient_means(Context& ctx, int n, int c, int hw, const float* x, const float* dy, Stats st, float* dgamma,
                      float* dbeta, const RankSum* ranks) {
  const int64_t m = int64_t(n) * hw;
  const int splits = splits_for(ctx, c, m);
  const ScratchSplit sc = scratch_with_doubles(ctx, size_t(c) * splits * 2 + size_t(c) * 2, ranks ? 2 * size_t(c) + 1 : 0);
  float* partial = sc.floats;
  float* means = partial + size_t(c) * splits * 2;
  channel_gradient_sums_kernel<<<dim3(unsigned(splits), unsigned(c)), kThreads, 0, ctx.stream>>>(c, hw, m, splits, x,
                                                                                                 dy, st, partial);
  CNN_CUDA_CHECK_LAUNCH("channel_gradient_sums_kernel");
  finish_gradient_sums_kernel<<<channel_blocks(c), kThreads, 0, ctx.stream>>>(
      c, splits, m, partial, means, ranks ? sc.doubles : nullptr, dgamma, dbeta);
  CNN_CUDA_CHECK_LAUNCH("finish_gradient_sums_kernel");
  if (ranks) {
    ranks->on_device(ctx, sc.doubles, 2 * c + 1);
    if (m > 0) {
      ranks_gradient_means_kernel<<<channel_blocks(c), kThreads, 0, ctx.stream>>>(c, m, sc.doubles, means);
      CNN_CUDA_CHECK_LAUNCH("ranks_gradient_means_kernel");
    }
  }
  return means;
}

void input_grad(Context& ctx, int n, int c, int hw, const float* x, const float* dy, Stats st, const float* gamma,
                const float* means, float* dx) {
  const int64_t count = int64_t(n) * c * hw;
  if (count == 0) return;
  batchnorm_input_grad_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, c, hw, x, dy, st,
                                                                                            gamma, means, dx);
  CNN_CUDA_CHECK_LAUNCH("batchnorm_input_grad_kernel");
}

}  // namespace

void batchnorm_forward_training(Context& ctx, int n, int c, int hw, const BatchNormForwardTrainingArgs<float>& a) {
  check_shape(n, c, hw, "batchnorm_forward_training");
  const int64_t m = int64_t(n) * hw;
  if (c == 0 || (m == 0 && !a.across_ranks)) return;
  const int splits = splits_for(ctx, c, m);
  if (a.across_ranks) {  // two passes, each summed over the ranks
    const ScratchSplit sc = scratch_with_doubles(ctx, size_t(c) * splits * 2, 2 * (2 * size_t(c) + 1));
    double* first = sc.doubles;
    double* second = first + 2 * c + 1;
    ranks_moments(ctx, c, hw, m, splits, a.x, nullptr, sc.floats, first, *a.across_ranks);
    ranks_moments(ctx, c, hw, m, splits, a.x, first, sc.floats, second, *a.across_ranks);
    finish_ranks_moments_kernel<<<channel_blocks(c), kThreads, 0, ctx.stream>>>(
        c, first, second, a.eps, a.momentum, a.running_mean, a.running_var, a.save_mean, a.save_invstd);
    CNN_CUDA_CHECK_LAUNCH("finish_ranks_moments_kernel");
  } else {
    float* partial = ctx.scratch(size_t(c) * splits * 2);
    channel_moments(ctx, c, hw, m, splits, a.x, nullptr, partial);
    finish_moments_kernel<<<channel_blocks(c), kThreads, 0, ctx.stream>>>(
        c, hw, m, splits, a.x, partial, a.eps, a.momentum, a.running_mean, a.running_var, a.save_mean,
        a.save_invstd);
    CNN_CUDA_CHECK_LAUNCH("finish_moments_kernel");
  }
  normalize(ctx, n, c, hw, a.x, Stats{a.save_mean, a.save_invstd, false, 0.f}, a.gamma, a.beta, a.y);
}

void batchnorm_forward_inference(Context& ctx, int n, int c, int hw, const BatchNormForwardInferenceArgs<float>& a) {
  check_shape(n, c, hw, "batchnorm_forward_inference");
  normalize(ctx, n, c, hw, a.x, Stats{a.running_mean, a.running_var, true, a.eps}, a.gamma, a.beta, a.y);
}

void batchnorm_backward_training(Context& ctx, int n, int c, int hw, const BatchNormBackwardTrainingArgs<float>& a) {
  check_shape(n, c, hw, "batchnorm_backward_training");
  if (c == 0) return;
  if (int64_t(n) * hw == 0 && !a.across_ranks) {  // no values: the parameter gradients are zero
    if (a.dgamma) memory::cuda_set_zero(a.dgamma, size_t(c) * sizeof(float));
    if (a.dbeta) memory::cuda_set_zero(a.dbeta, size_t(c) * sizeof(float));
    return;
  }
  const Stats st{a.save_mean, a.save_invstd, false, 0.f};
  // (A rank without rows sums nothing, which gives zero gradients, and joins the reduction.)
  const float* means = gradient_means(ctx, n, c, hw, a.x, a.dy, st, a.dgamma, a.dbeta, a.across_ranks);
  if (a.dx) input_grad(ctx, n, c, hw, a.x, a.dy, st, a.gamma, means, a.dx);
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
  if (a.dgamma || a.dbeta) gradient_means(ctx, n, c, hw, a.x, a.dy, st, a.dgamma, a.dbeta, nullptr);
  if (a.dx) input_grad(ctx, n, c, hw, a.x, a.dy, st, a.gamma, nullptr, a.dx);
}

}  // namespace cnn::ops::cuda
