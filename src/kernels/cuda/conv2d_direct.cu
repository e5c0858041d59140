// Direct convolution kernels for few input channels (c_in <= 8).
//
//   forward         each block stages the input rows that a band of output rows reads (all
//                   c_in channels, zero-padded, so the inner loop has no bounds checks) and the
//                   weights of 8 output channels in shared memory; each thread computes one
//                   output pixel for those 8 channels, bias and activation fused.
//   backward input  the twin: each block stages the dy rows that a band of input rows
//                   receives from (all c_out channels, zero rows outside the output) and all
//                   weights; each thread computes one input pixel for all c_in <= 8 channels.
// Fixed summation orders, (ci, kh, kw) and (co, kh, kw): deterministic.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv2d_fast.cuh"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 128;
constexpr int kChannelGroup = 8;  // output channels per block, one accumulator each per thread
constexpr int kMaxInputChannels = 8;
constexpr size_t kSharedLimit = 48 * 1024;

// One block's band: `rows` output rows (about one output pixel per thread), the input rows
// and columns they read including the padding, and the shared memory for those plus weights.
// With a fused pooling of window `pool_size`, the band is a whole number of windows high and
// its outputs are kept in shared memory too, for the pooled epilogue.
struct DirectBand {
  int rows, in_rows, in_cols;
  size_t shared_bytes;
};

DirectBand direct_band(const Conv2DShape& s, int pool_size = 0) {
  DirectBand b;
  b.rows = std::clamp(kThreads / std::max(s.w_out, 1), 1, std::max(s.h_out, 1));
  if (pool_size > 1) b.rows = std::max(pool_size, b.rows - b.rows % pool_size);
  b.in_rows = (b.rows - 1) * s.stride_h + s.k_h;
  b.in_cols = (s.w_out - 1) * s.stride_w + s.k_w;
  const size_t pooled = pool_size > 1 ? size_t(kChannelGroup) * b.rows * s.w_out : 0;
  b.shared_bytes = sizeof(float) * (size_t(s.c_in) * b.in_rows * b.in_cols +
                                    size_t(kChannelGroup) * s.c_in * s.k_h * s.k_w + pooled);
  return b;
}

// The pooling layer after the convolution, fused into its epilogue (conv2d_forward_pooled):
// window = stride = size, no padding, average or max, computed as the pooling kernels compute
// them (the same window order), so the pooled output has their bits.
struct DirectPool {
  int size = 0;  // 0: no pooling
  bool max = false;
  int h_out = 0, w_out = 0;
  float* y = nullptr;
};

// Block (band, group, image): output rows [band * rows, +rows), channels [group * 8, +8).
__global__ void __launch_bounds__(kThreads)
    conv_direct_forward_kernel(Conv2DShape s, DirectBand band, const float* __restrict__ x, const float* __restrict__ w,
                               const float* __restrict__ bias, ActivationSpec act, float* __restrict__ y,
                               DirectPool pool) {
  extern __shared__ float shared[];
  const int taps = s.k_h * s.k_w, per_filter = s.c_in * taps;
  float* tile = shared;                                            // [c_in][in_rows][in_cols]
  float* filters = shared + s.c_in * band.in_rows * band.in_cols;  // [8][c_in * taps]
  float* outs = filters + kChannelGroup * per_filter;              // pooling: [8][rows][w_out]
  const int oh0 = int(blockIdx.x) * band.rows, co0 = int(blockIdx.y) * kChannelGroup, img = int(blockIdx.z);
  const int ih0 = oh0 * s.stride_h - s.pad_top;
  const float* image = x + int64_t(img) * s.c_in * s.h_in * s.w_in;

  const int tile_count = s.c_in * band.in_rows * band.in_cols;
  for (int e = int(threadIdx.x); e < tile_count; e += kThreads) {
    const int col = e % band.in_cols, rest = e / band.in_cols;
    const int row = rest % band.in_rows, ci = rest / band.in_rows;
    const int ih = ih0 + row, iw = col - s.pad_left;
    tile[e] =
        (ih >= 0 && ih < s.h_in && iw >= 0 && iw < s.w_in) ? image[(int64_t(ci) * s.h_in + ih) * s.w_in + iw] : 0.f;
  }
  for (int e = int(threadIdx.x); e < kChannelGroup * per_filter; e += kThreads) {
    const int co = co0 + e / per_filter;
    filters[e] = co < s.c_out ? w[int64_t(co0) * per_filter + e] : 0.f;
  }
  __syncthreads();

  const int rows_here = min(band.rows, s.h_out - oh0), pixels = rows_here * s.w_out;
  for (int q = int(threadIdx.x); q < pixels; q += kThreads) {
    const int r = q / s.w_out, ow = q - r * s.w_out;
    float acc[kChannelGroup] = {};
    for (int ci = 0; ci < s.c_in; ++ci)
      for (int kh = 0; kh < s.k_h; ++kh) {
        const float* in = tile + (ci * band.in_rows + r * s.stride_h + kh) * band.in_cols + ow * s.stride_w;
        const float* f = filters + ci * taps + kh * s.k_w;  // same address across the warp: a broadcast
        for (int kw = 0; kw < s.k_w; ++kw) {
          const float v = in[kw];
#pragma unroll
          for (int g = 0; g < kChannelGroup; ++g) acc[g] = fmaf(v, f[g * per_filter + kw], acc[g]);
        }
      }
    const int oh = oh0 + r;
#pragma unroll
    for (int g = 0; g < kChannelGroup; ++g) {
      const int co = co0 + g;
      if (co < s.c_out) {
        const float v = formulas::activate(act, acc[g] + (bias ? bias[co] : 0.f));
        y[((int64_t(img) * s.c_out + co) * s.h_out + oh) * s.w_out + ow] = v;
        if (pool.size) outs[(g * band.rows + r) * s.w_out + ow] = v;
      }
    }
  }
  if (!pool.size) return;  // the same for the whole block
  __syncthreads();
  const int p = pool.size, prows = rows_here / p, pooled = kChannelGroup * prows * pool.w_out;
  for (int q = int(threadIdx.x); q < pooled; q += kThreads) {
    const int pc = q % pool.w_out, rest = q / pool.w_out, pr = rest % prows, g = rest / prows;
    const int co = co0 + g;
    if (co >= s.c_out) continue;
    const float* win = outs + (g * band.rows + pr * p) * s.w_out + pc * p;
    float v;
    if (pool.max) {  // maxpool2d_forward_kernel: the first maximum, row-major
      v = win[0];
      for (int i = 0; i < p; ++i)
        for (int j = 0; j < p; ++j)
          if (win[i * s.w_out + j] > v) v = win[i * s.w_out + j];
    } else {  // avgpool2d_forward_kernel: the row-major sum over the window's count
      float sum = 0.f;
      for (int i = 0; i < p; ++i)
        for (int j = 0; j < p; ++j) sum += win[i * s.w_out + j];
      v = sum / float(p * p);
    }
    pool.y[((int64_t(img) * s.c_out + co) * pool.h_out + oh0 / p + pr) * pool.w_out + pc] = v;
  }
}

// The backward twin's band: `rows` input rows, the output rows [oh_first(band), +out_rows)
// whose windows reach them, and the shared memory for those plus the weights.
struct DirectGradBand {
  int rows, out_rows;
  size_t shared_bytes;
};

DirectGradBand direct_grad_band(const Conv2DShape& s) {
  DirectGradBand b;
  b.rows = std::clamp(kThreads / std::max(s.w_in, 1), 1, std::max(s.h_in, 1));
  // oh * stride_h runs over rows + k_h - 1 consecutive values for one band.
  b.out_rows = int(ceil_div(b.rows + s.k_h - 1, s.stride_h));
  b.shared_bytes =
      sizeof(float) * (size_t(s.c_out) * b.out_rows * s.w_out + size_t(kChannelGroup) * s.c_out * s.k_h * s.k_w);
  return b;
}

// Smallest output row whose window reaches input row ih0 (may be negative: staged as zeros).
__device__ __forceinline__ int first_output_row(const Conv2DShape& s, int ih0) {
  const int lo = ih0 + s.pad_top - (s.k_h - 1);  // least oh * stride_h
  return lo >= 0 ? (lo + s.stride_h - 1) / s.stride_h : -((-lo) / s.stride_h);
}

static_assert(kMaxInputChannels <= kChannelGroup, "the backward twin holds every input channel in one group");

// Block (band, 0, image): dx for input rows [band * rows, +rows), every input channel.
__global__ void __launch_bounds__(kThreads)
    conv_direct_backward_input_kernel(Conv2DShape s, DirectGradBand band, const float* __restrict__ dy,
                                      const float* __restrict__ w, float* __restrict__ dx) {
  extern __shared__ float shared[];
  const int taps = s.k_h * s.k_w;
  float* grads = shared;                                        // [c_out][out_rows][w_out]
  float* filters = shared + s.c_out * band.out_rows * s.w_out;  // [c_out][taps][8 input channels]
  const int ih0 = int(blockIdx.x) * band.rows, img = int(blockIdx.z);
  const int oh_first = first_output_row(s, ih0);
  const float* grad = dy + int64_t(img) * s.c_out * s.h_out * s.w_out;

  const int grad_count = s.c_out * band.out_rows * s.w_out;
  for (int e = int(threadIdx.x); e < grad_count; e += kThreads) {
    const int ow = e % s.w_out, rest = e / s.w_out;
    const int u = rest % band.out_rows, co = rest / band.out_rows;
    const int oh = oh_first + u;
    grads[e] = (oh >= 0 && oh < s.h_out) ? grad[(int64_t(co) * s.h_out + oh) * s.w_out + ow] : 0.f;
  }
  for (int e = int(threadIdx.x); e < s.c_out * taps * kChannelGroup; e += kThreads) {
    const int g = e % kChannelGroup, rest = e / kChannelGroup;
    const int t = rest % taps, co = rest / taps;
    filters[e] = g < s.c_in ? w[(int64_t(co) * s.c_in + g) * taps + t] : 0.f;
  }
  __syncthreads();

  const int rows_here = min(band.rows, s.h_in - ih0), pixels = rows_here * s.w_in;
  for (int q = int(threadIdx.x); q < pixels; q += kThreads) {
    const int r = q / s.w_in, iw = q - r * s.w_in, ih = ih0 + r;
    float acc[kChannelGroup] = {};
    for (int co = 0; co < s.c_out; ++co)
      for (int kh = 0; kh < s.k_h; ++kh) {
        const int sh = ih + s.pad_top - kh;  // oh * stride_h, if that output row reads ih via kh
        if (sh % s.stride_h != 0) continue;
        const float* row = grads + (co * band.out_rows + sh / s.stride_h - oh_first) * s.w_out;
        const float* f = filters + (co * taps + kh * s.k_w) * kChannelGroup;  // a broadcast
        for (int kw = 0; kw < s.k_w; ++kw) {
          const int sw = iw + s.pad_left - kw;
          if (sw < 0 || sw % s.stride_w != 0 || sw / s.stride_w >= s.w_out) continue;
          const float v = row[sw / s.stride_w];
#pragma unroll
          for (int g = 0; g < kChannelGroup; ++g) acc[g] = fmaf(v, f[kw * kChannelGroup + g], acc[g]);
        }
      }
#pragma unroll
    for (int g = 0; g < kChannelGroup; ++g)
      if (g < s.c_in) dx[((int64_t(img) * s.c_in + g) * s.h_in + ih) * s.w_in + iw] = acc[g];
  }
}

}  // namespace

bool direct_forward_takes(const Conv2DShape& s) {
  return s.c_in <= kMaxInputChannels && s.n <= 65535 && ceil_div(s.c_out, kChannelGroup) <= 65535 &&
         direct_band(s).shared_bytes <= kSharedLimit;
}

void conv2d_forward_direct(Context& ctx, const Conv2DShape& s, const float* x, const float* w, const float* bias,
                           ActivationSpec act, float* y) {
  check_elementwise(act, "conv2d_forward_direct");
  CNN_CHECK(direct_forward_takes(s), "conv2d_forward_direct: shape outside the kernel's rule (", s.c_in, "x", s.h_in,
            "x", s.w_in, " -> ", s.c_out, ", kernel ", s.k_h, "x", s.k_w, ")");
  const DirectBand band = direct_band(s);
  const dim3 grid(unsigned(ceil_div(s.h_out, band.rows)), unsigned(ceil_div(s.c_out, kChannelGroup)), unsigned(s.n));
  conv_direct_forward_kernel<<<grid, kThreads, band.shared_bytes, ctx.stream>>>(s, band, x, w, bias, act, y,
                                                                                DirectPool{});
  CNN_CUDA_CHECK_LAUNCH("conv_direct_forward_kernel");
}

bool direct_forward_pooled_takes(const Conv2DShape& s, const Pool2DShape& p) {
  const int size = p.k_h;
  const bool windows = size >= 2 && p.k_w == size && p.stride_h == size && p.stride_w == size && p.pad_top == 0 &&
                       p.pad_left == 0 && p.h_out == s.h_out / size && p.w_out == s.w_out / size;
  const bool chained = p.n == s.n && p.c == s.c_out && p.h_in == s.h_out && p.w_in == s.w_out;
  return windows && chained && direct_forward_takes(s) && direct_band(s, size).shared_bytes <= kSharedLimit;
}

void conv2d_forward_direct_pooled(Context& ctx, const Conv2DShape& s, const Pool2DShape& p, bool max_pool,
                                  const float* x, const float* w, const float* bias, ActivationSpec act, float* y,
                                  float* pooled) {
  check_elementwise(act, "conv2d_forward_direct_pooled");
  CNN_CHECK(direct_forward_pooled_takes(s, p), "conv2d_forward_direct_pooled: shapes outside the kernel's rule");
  const DirectBand band = direct_band(s, p.k_h);
  const dim3 grid(unsigned(ceil_div(s.h_out, band.rows)), unsigned(ceil_div(s.c_out, kChannelGroup)), unsigned(s.n));
  conv_direct_forward_kernel<<<grid, kThreads, band.shared_bytes, ctx.stream>>>(
      s, band, x, w, bias, act, y, DirectPool{p.k_h, max_pool, p.h_out, p.w_out, pooled});
  CNN_CUDA_CHECK_LAUNCH("conv_direct_forward_kernel");
}

bool direct_backward_input_takes(const Conv2DShape& s) {
  return s.c_in <= kMaxInputChannels && s.n <= 65535 && direct_grad_band(s).shared_bytes <= kSharedLimit;
}

void conv2d_backward_input_direct(Context& ctx, const Conv2DShape& s, const float* dy, const float* w, float* dx) {
  CNN_CHECK(direct_backward_input_takes(s), "conv2d_backward_input_direct: shape outside the kernel's rule (", s.c_in,
            "x", s.h_in, "x", s.w_in, " -> ", s.c_out, ", kernel ", s.k_h, "x", s.k_w, ")");
  const DirectGradBand band = direct_grad_band(s);
  const dim3 grid(unsigned(ceil_div(s.h_in, band.rows)), 1, unsigned(s.n));
  conv_direct_backward_input_kernel<<<grid, kThreads, band.shared_bytes, ctx.stream>>>(s, band, dy, w, dx);
  CNN_CUDA_CHECK_LAUNCH("conv_direct_backward_input_kernel");
}

}  // namespace cnn::ops::cuda
