#pragma once
// Device-side helpers shared by the kernels: launch sizing, the activation guard and
// deterministic warp/block reductions. The activation formulas themselves (used by the
// activation ops and fused into the conv and dense epilogues) are formulas/activation.hpp.
#include <cmath>
#include <cstdint>

#include "cnn/error.hpp"
#include "kernels/cuda/context.cuh"
#include "kernels/formulas/activation.hpp"

namespace cnn::cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over `count` items: enough to fill every multiprocessor a
// few times over, never more than the work needs.
inline unsigned grid_for(const Context& ctx, int64_t count, int threads) {
  const int64_t wanted = ceil_div(count, threads);
  const int64_t cap = int64_t(ctx.sm_count) * 16;
  return unsigned(wanted < cap ? wanted : cap);
}

// Host-side guard shared by every op that takes an ActivationSpec.
inline void check_elementwise(ops::ActivationSpec act, const char* op) {
  CNN_CHECK(act.kind != Activation::Softmax, op, ": softmax is not elementwise; use softmax_forward");
}

// ---- Reductions -----------------------------------------------------------------------------
// Dense's bias-gradient order, shared by every kernel that writes one (the column sum, the
// fused loss): the sum of a column over `rows` is kColumnPartials partial sums, partial p over
// rows p, p + kColumnPartials, ..., added in order p = 0, 1, ...
constexpr int kColumnPartials = 8;
template <class Load>  // load(r): the column's value in row r
__device__ __forceinline__ float column_partial(int rows, int p, Load load) {
  float sum = 0.f;
  for (int r = p; r < rows; r += kColumnPartials) sum += load(r);
  return sum;
}
template <int kStride>  // partials[p * kStride]: partial p
__device__ __forceinline__ float column_total(const float* partials) {
  float total = 0.f;
#pragma unroll
  for (int p = 0; p < kColumnPartials; ++p) total += partials[p * kStride];
  return total;
}

// Butterfly (xor) shuffles: every lane ends with the same, order-independent-of-timing result.
// All 32 lanes of the warp must call them.

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ int warp_sum(int v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Index of the first maximum of v[0, count) (std::max_element's answer), computed by one
// warp: each lane scans a strided share, then the lanes agree on (largest value, smallest
// index). Every lane returns the answer.
__device__ __forceinline__ int warp_argmax(const float* v, int count, int lane) {
  float best = 0.f;
  int best_i = -1;  // -1: this lane saw nothing
  for (int j = lane; j < count; j += kWarpSize) {
    const float x = v[j];
    if (best_i < 0 || x > best) {
      best = x;
      best_i = j;
    }
  }
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(kFullMask, best, offset);
    const int other_i = __shfl_xor_sync(kFullMask, best_i, offset);
    const bool take = other_i >= 0 && (best_i < 0 || other > best || (other == best && other_i < best_i));
    if (take) {
      best = other;
      best_i = other_i;
    }
  }
  return best_i;
}

// Sum over a block of kThreads threads (a multiple of 32), in a fixed order. Every thread
// must call it; the result is valid in thread 0. Reuses its shared buffer, so a second
// call in the same kernel needs a __syncthreads() in between.
template <int kThreads>
__device__ __forceinline__ float block_sum(float v) {
  static_assert(kThreads % kWarpSize == 0 && kThreads <= 1024, "block_sum: block size");
  __shared__ float warp_totals[kThreads / kWarpSize];
  const int lane = int(threadIdx.x) % kWarpSize, warp = int(threadIdx.x) / kWarpSize;
  v = warp_sum(v);
  if (lane == 0) warp_totals[warp] = v;
  __syncthreads();
  float total = 0.f;
  if (threadIdx.x == 0)
    for (int w = 0; w < kThreads / kWarpSize; ++w) total += warp_totals[w];
  return total;
}

}  // namespace cnn::cuda
