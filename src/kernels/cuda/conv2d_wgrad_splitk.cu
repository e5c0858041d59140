// Split-K weight gradient for convolutions with few outputs (LeNet-5's conv1: 6 x 75 weights
// reduced over 128 x 784 positions). The outputs are c_out x (K + 1), K = c_in k_h k_w: the
// weights plus a bias column whose im2col row is all ones, so dbias comes out of the same
// reduction.
//
//   stage 1  block z reduces its slice of the (image, position) range into all outputs, held
//            in registers (at most 16 per thread), 32 positions at a time staged in shared
//            memory; it writes its partial sums to partial[z][outputs]. The grid has about two
//            slices per multiprocessor, however few the outputs.
//   stage 2  32 outputs per block, their slices added in a fixed order (8 strided sequential
//            sums, then those 8 in order) and written to dw and dbias.
// No atomics: the result depends only on the shape and the number of multiprocessors.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv2d_fast.cuh"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;
constexpr int kChunk = 32;  // positions staged per step
constexpr int kOutputsPerThread = 16;
constexpr int kMaxOutputs = kThreads * kOutputsPerThread;
constexpr int kMaxFilters = 32;
constexpr int kSlicesPerSm = 2;

int weight_columns(const Conv2DShape& s) { return s.c_in * s.k_h * s.k_w; }

size_t stage_one_shared_bytes(const Conv2DShape& s) {
  return sizeof(float) * kChunk * size_t(s.c_out + weight_columns(s) + 1);
}

// Block z covers chunks [z * chunks_per_slice, +chunks_per_slice) of the R = n h_out w_out
// positions; outputs o = co * (K + 1) + k, thread t owning o = t + 256 j.
__global__ void __launch_bounds__(kThreads)
    conv_weight_grad_split_k_kernel(Conv2DShape s, const float* __restrict__ x, const float* __restrict__ dy,
                                    int chunks_per_slice, float* __restrict__ partial) {
  extern __shared__ float shared[];
  const int M = s.c_out, K = s.c_in * s.k_h * s.k_w, columns = K + 1, outputs = M * columns;
  const int taps = s.k_h * s.k_w, P = s.h_out * s.w_out, R = s.n * P;
  float* grads = shared;              // [kChunk][M]
  float* cols = shared + kChunk * M;  // [kChunk][K + 1]
  const int tid = int(threadIdx.x);

  int filter[kOutputsPerThread], column[kOutputsPerThread];
#pragma unroll
  for (int j = 0; j < kOutputsPerThread; ++j) {
    const int o = tid + kThreads * j;
    filter[j] = o < outputs ? o / columns : 0;
    column[j] = o < outputs ? o - filter[j] * columns : 0;
  }
  float acc[kOutputsPerThread] = {};

  // Positions fit an int (checked at the launch): no 64-bit divisions in the loaders.
  const int first = int(blockIdx.x) * chunks_per_slice * kChunk;
  const int last = min(first + chunks_per_slice * kChunk, R);
  for (int r0 = first; r0 < last; r0 += kChunk) {
    // Positions fastest across threads: neighbouring output pixels, coalesced reads.
    for (int e = tid; e < kChunk * M; e += kThreads) {
      const int rr = e % kChunk, co = e / kChunk, r = r0 + rr;
      float v = 0.f;
      if (r < last) {
        const int img = r / P, p = r - img * P;
        v = dy[(int64_t(img) * M + co) * P + p];
      }
      grads[rr * M + co] = v;
    }
    for (int e = tid; e < kChunk * columns; e += kThreads) {
      const int rr = e % kChunk, k = e / kChunk, r = r0 + rr;
      float v = 0.f;
      if (r < last) {
        if (k == K) {
          v = 1.f;  // the bias column
        } else {
          const int img = r / P, p = r - img * P;
          const int oh = p / s.w_out, ow = p - oh * s.w_out;
          const int ci = k / taps, t = k - ci * taps, kh = t / s.k_w, kw = t - kh * s.k_w;
          const int ih = oh * s.stride_h - s.pad_top + kh, iw = ow * s.stride_w - s.pad_left + kw;
          if (ih >= 0 && ih < s.h_in && iw >= 0 && iw < s.w_in)
            v = x[((int64_t(img) * s.c_in + ci) * s.h_in + ih) * s.w_in + iw];
        }
      }
      cols[rr * columns + k] = v;
    }
    __syncthreads();
    for (int rr = 0; rr < kChunk; ++rr) {
      const float* g = grads + rr * M;
      const float* c = cols + rr * columns;
#pragma unroll
      for (int j = 0; j < kOutputsPerThread; ++j)
        if (tid + kThreads * j < outputs) acc[j] = fmaf(g[filter[j]], c[column[j]], acc[j]);
    }
    __syncthreads();  // the next chunk overwrites the tiles
  }

  float* out = partial + int64_t(blockIdx.x) * outputs;
#pragma unroll
  for (int j = 0; j < kOutputsPerThread; ++j)
    if (tid + kThreads * j < outputs) out[tid + kThreads * j] = acc[j];
}

// Block b sums outputs [32 b, +32) over the slices: lane l takes output 32 b + l (coalesced
// reads), warp g the slices z = g, g + 8, ...; then warp 0 adds the 8 warps' sums in order
// and writes dw, or dbias for the bias column (skipped when dbias is null).
constexpr int kSliceGroups = kThreads / kWarpSize;

__global__ void __launch_bounds__(kThreads)
    sum_weight_and_bias_slices_kernel(const float* __restrict__ partial, int slices, int columns, int outputs,
                                      float* __restrict__ dw, float* __restrict__ dbias) {
  __shared__ float group_sums[kSliceGroups][kWarpSize];
  const int lane = int(threadIdx.x) % kWarpSize, group = int(threadIdx.x) / kWarpSize;
  const int o = int(blockIdx.x) * kWarpSize + lane;
  float sum = 0.f;
  if (o < outputs)
    for (int z = group; z < slices; z += kSliceGroups) sum += partial[int64_t(z) * outputs + o];
  group_sums[group][lane] = sum;
  __syncthreads();
  if (group != 0 || o >= outputs) return;
  float total = 0.f;
  for (int g = 0; g < kSliceGroups; ++g) total += group_sums[g][lane];
  const int co = o / columns, k = o - co * columns;
  if (k < columns - 1)
    dw[int64_t(co) * (columns - 1) + k] = total;
  else if (dbias)
    dbias[co] = total;
}

}  // namespace

bool split_k_weight_grad_takes(const Conv2DShape& s) {
  const int64_t outputs = int64_t(s.c_out) * (int64_t(weight_columns(s)) + 1);
  return s.c_out <= kMaxFilters && outputs <= kMaxOutputs && stage_one_shared_bytes(s) <= 48 * 1024;
}

void conv2d_backward_params_split_k(Context& ctx, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                                    float* dbias) {
  CNN_CHECK(split_k_weight_grad_takes(s), "conv2d_backward_params_split_k: shape outside the kernel's rule (", s.c_out,
            " filters of ", s.c_in, "x", s.k_h, "x", s.k_w, ")");
  const int columns = weight_columns(s) + 1, outputs = s.c_out * columns;
  const int64_t positions = int64_t(s.n) * s.h_out * s.w_out;
  // Half the int range: a slice's end (first + chunks_per_slice * kChunk) may pass R.
  CNN_CHECK(positions < INT32_MAX / 2, "conv2d_backward_params_split_k: ", positions,
            " positions exceed 32-bit indices (batch ", s.n, ")");
  const int64_t chunks = ceil_div(positions, kChunk);
  const int64_t wanted = std::clamp<int64_t>(int64_t(kSlicesPerSm) * ctx.sm_count, 1, chunks);
  const int chunks_per_slice = int(ceil_div(chunks, wanted));
  const int slices = int(ceil_div(chunks, chunks_per_slice));  // no empty slice

  float* partial = ctx.scratch(size_t(slices) * size_t(outputs));
  conv_weight_grad_split_k_kernel<<<unsigned(slices), kThreads, stage_one_shared_bytes(s), ctx.stream>>>(
      s, x, dy, chunks_per_slice, partial);
  CNN_CUDA_CHECK_LAUNCH("conv_weight_grad_split_k_kernel");
  sum_weight_and_bias_slices_kernel<<<unsigned(ceil_div(outputs, kWarpSize)), kThreads, 0, ctx.stream>>>(
      partial, slices, columns, outputs, dw, dbias);
  CNN_CUDA_CHECK_LAUNCH("sum_weight_and_bias_slices_kernel");
}

}  // namespace cnn::ops::cuda
