// Conv2D on the GPU as implicit GEMMs: the im2col matrix is never stored; the loaders
// gather its elements straight from the image (or from dy) into shared-memory tiles.
//
//   forward          y[c_out, (n, p_out)]  = W[c_out, K] . col[K, (n, p_out)]       K = c_in k_h k_w
//                    + bias, activation fused into the epilogue
//   backward input   dx[c_in, (n, p_in)]   = W^T[c_in, K'] . gather(dy)[K', (n, p_in)]   K' = c_out k_h k_w
//   backward params  dW[c_out, K]          = sum over (n, p_out) of dy . col^T, split over (n, p_out)
//                    into slices whose partial tiles a second pass adds in a fixed order
//                    (deterministic, no atomics); dbias by a per-channel block reduction
//
// All three GEMMs use one tiling: 256 threads compute a 64 x 64 tile of the output, each
// thread a 4 x 4 micro-tile strided by 16 in both directions (so shared-memory reads are
// broadcasts or consecutive words, and the epilogue's stores are coalesced), stepping
// through the inner dimension 16 at a time with two shared-memory buffers: the next
// tile's global loads are issued before the current tile's multiply-adds.
#include <algorithm>
#include <climits>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv2d_fast.cuh"
#include "kernels/cuda/conv_tuner.cuh"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;
constexpr int kTileM = 64;      // output rows per block
constexpr int kTileN = 64;      // output columns per block
constexpr int kTileK = 16;      // inner-dimension step
constexpr int kMicro = 4;       // micro-tile edge: kTileM = kMicro * 16
constexpr int kThreadRows = 16; // threads along each micro-tile stride
// Tiles written with the inner index varying fastest across threads get 2 floats of
// padding per row: the row stride 66 is 2 mod 32, so the 16 x 2 elements a warp writes
// land in 32 distinct banks.
constexpr int kPad = 2;
static_assert(kTileM == kMicro * kThreadRows && kTileN == kMicro * kThreadRows, "micro-tile layout");
static_assert(kThreadRows * kThreadRows == kThreads, "one thread per micro-tile");

// One k step of a thread's register micro-tile: acc[i][j] += a[ty + 16 i] * b[tx + 16 j], with a and
// b one row of the shared-memory tiles.
__device__ __forceinline__ void micro_tile_step(float (&acc)[kMicro][kMicro], const float* a_row, const float* b_row,
                                                int ty, int tx) {
  float a[kMicro], b[kMicro];
#pragma unroll
  for (int i = 0; i < kMicro; ++i) a[i] = a_row[ty + kThreadRows * i];
#pragma unroll
  for (int j = 0; j < kMicro; ++j) b[j] = b_row[tx + kThreadRows * j];
#pragma unroll
  for (int i = 0; i < kMicro; ++i)
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
}

// The double-buffered main loop of the GEMM kernels, over the inner index range
// [begin, end) in steps of kTileK: stage(k0) loads the tile at k0 from global memory into
// the thread's registers (zeros outside the matrices), store(buf) writes the staged tile
// into shared buffer `buf`, and multiply(buf) runs the micro-tile steps on buffer `buf`.
// The next tile's loads are issued before the current tile's multiply-adds.
template <class Stage, class Store, class Multiply>
__device__ __forceinline__ void double_buffered_tiles(int begin, int end, Stage&& stage, Store&& store,
                                                      Multiply&& multiply) {
  stage(begin);
  store(0);
  __syncthreads();
  int buf = 0;
  for (int k0 = begin; k0 < end; k0 += kTileK) {
    const bool more = k0 + kTileK < end;
    if (more) stage(k0 + kTileK);  // in flight during the multiply-adds below
    multiply(buf);
    // The other buffer was last read before the previous iteration's barrier.
    if (more) store(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }
}

// Shared by all loaders: thread roles when a 64 x 16 tile is read with the 16-long index
// fastest (4 elements per thread), and when a 16 x 64 tile is read with the 64-long index
// fastest (4 elements per thread).
constexpr int kLoads = kTileM * kTileK / kThreads;  // 4
static_assert(kLoads == kTileN * kTileK / kThreads, "both tiles take the same loads per thread");
static_assert(kThreads % kTileK == 0 && kThreads % kTileN == 0, "loader roles");

// ---- Operands of the forward and backward-input GEMMs -------------------------------------
// Each provides A(m, k), a per-column setup for B (computed once per thread: its column is
// fixed for the whole kernel) and B(column, k). Both are only asked for in-range indices.

// Forward: A = W as [c_out, K]; B = im2col(x) with rows k = (ci, kh, kw) and columns
// n = (image, oh, ow).
struct ConvForwardOperands {
  Conv2DShape s;
  const float* x;
  const float* w;
  int K;

  struct Column {
    const float* image;  // x of this column's sample
    int ih0, iw0;        // top-left input pixel of its window (may lie in the padding)
  };

  __device__ float a(int m, int k) const { return w[int64_t(m) * K + k]; }

  __device__ Column column(int n) const {
    const int hw = s.h_out * s.w_out;
    const int img = n / hw, p = n - img * hw;
    const int oh = p / s.w_out, ow = p - oh * s.w_out;
    return {x + int64_t(img) * s.c_in * s.h_in * s.w_in, oh * s.stride_h - s.pad_top, ow * s.stride_w - s.pad_left};
  }

  __device__ float b(const Column& c, int k) const {
    const int taps = s.k_h * s.k_w;
    const int ci = k / taps, r = k - ci * taps;
    const int kh = r / s.k_w, kw = r - kh * s.k_w;
    const int ih = c.ih0 + kh, iw = c.iw0 + kw;
    if (ih < 0 || ih >= s.h_in || iw < 0 || iw >= s.w_in) return 0.f;  // padding
    return c.image[(int64_t(ci) * s.h_in + ih) * s.w_in + iw];
  }
};

// Backward input: A = W^T gathered as [c_in, (co, kh, kw)]; B holds, for input pixel
// column n = (image, ih, iw) and row k = (co, kh, kw), the dy of the output whose window
// put tap (kh, kw) on that pixel, or 0 when no output did (stride gaps, borders).
struct ConvBackwardInputOperands {
  Conv2DShape s;
  const float* dy;
  const float* w;

  struct Column {
    const float* grad;  // dy of this column's sample
    int th, tw;         // ih + pad_top, iw + pad_left: output oh reads this pixel via tap kh iff oh * stride_h == th - kh
  };

  __device__ float a(int m, int k) const {
    const int taps = s.k_h * s.k_w;
    const int co = k / taps, r = k - co * taps;
    return w[(int64_t(co) * s.c_in + m) * taps + r];
  }

  __device__ Column column(int n) const {
    const int hw = s.h_in * s.w_in;
    const int img = n / hw, p = n - img * hw;
    const int ih = p / s.w_in, iw = p - ih * s.w_in;
    return {dy + int64_t(img) * s.c_out * s.h_out * s.w_out, ih + s.pad_top, iw + s.pad_left};
  }

  __device__ float b(const Column& c, int k) const {
    const int taps = s.k_h * s.k_w;
    const int co = k / taps, r = k - co * taps;
    const int kh = r / s.k_w, kw = r - kh * s.k_w;
    const int sh = c.th - kh, sw = c.tw - kw;  // oh * stride_h and ow * stride_w, if they exist
    if (sh < 0 || sw < 0) return 0.f;
    const int oh = sh / s.stride_h, ow = sw / s.stride_w;
    if (oh * s.stride_h != sh || ow * s.stride_w != sw || oh >= s.h_out || ow >= s.w_out) return 0.f;
    return c.grad[(int64_t(co) * s.h_out + oh) * s.w_out + ow];
  }
};

// out[img, m, p] = act(sum_k A(m, k) B(k, n) + bias[m]) for n = img * P + p; an M x N GEMM
// whose output columns are scattered back into NCHW planes of P pixels.
template <class Operands>
__global__ void __launch_bounds__(kThreads)
    conv_implicit_gemm_kernel(Operands op, int M, int N, int K, int P, const float* __restrict__ bias,
                              ActivationSpec act, float* __restrict__ out) {
  __shared__ float As[2][kTileK][kTileM + kPad];  // A tile stored k-major: As[k][m]
  __shared__ float Bs[2][kTileK][kTileN];         // B tile: Bs[k][n]

  const int tid = int(threadIdx.x);
  const int m0 = int(blockIdx.y) * kTileM, n0 = int(blockIdx.x) * kTileN;
  // Loader roles: A read along k (rows of W are contiguous in k), B along n (neighbouring
  // output pixels read neighbouring input pixels).
  const int a_k = tid % kTileK, a_m = tid / kTileK;  // rows a_m + 16 i
  const int b_n = tid % kTileN, b_k = tid / kTileN;  // rows b_k + 4 i
  constexpr int kStrideA = kThreads / kTileK, kStrideB = kThreads / kTileN;
  const bool column_in_range = n0 + b_n < N;
  const typename Operands::Column column = op.column(column_in_range ? n0 + b_n : 0);
  // Compute roles.
  const int tx = tid % kThreadRows, ty = tid / kThreadRows;

  float a_next[kLoads], b_next[kLoads];
  float acc[kMicro][kMicro] = {};

  double_buffered_tiles(
      0, K,
      [&](int k0) {
#pragma unroll
        for (int i = 0; i < kLoads; ++i) {
          const int m = m0 + a_m + kStrideA * i, k = k0 + a_k;
          a_next[i] = (m < M && k < K) ? op.a(m, k) : 0.f;
        }
#pragma unroll
        for (int i = 0; i < kLoads; ++i) {
          const int k = k0 + b_k + kStrideB * i;
          b_next[i] = (column_in_range && k < K) ? op.b(column, k) : 0.f;
        }
      },
      [&](int buf) {
#pragma unroll
        for (int i = 0; i < kLoads; ++i) As[buf][a_k][a_m + kStrideA * i] = a_next[i];
#pragma unroll
        for (int i = 0; i < kLoads; ++i) Bs[buf][b_k + kStrideB * i][b_n] = b_next[i];
      },
      [&](int buf) {
#pragma unroll
        for (int kk = 0; kk < kTileK; ++kk) micro_tile_step(acc, As[buf][kk], Bs[buf][kk], ty, tx);
      });

#pragma unroll
  for (int j = 0; j < kMicro; ++j) {
    const int n = n0 + tx + kThreadRows * j;
    if (n >= N) continue;
    const int img = n / P, p = n - img * P;
    float* plane0 = out + int64_t(img) * M * P + p;
#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
      const int m = m0 + ty + kThreadRows * i;
      if (m < M) plane0[int64_t(m) * P] = formulas::activate(act, acc[i][j] + (bias ? bias[m] : 0.f));
    }
  }
}

template <class Operands>
void launch_conv_gemm(Context& ctx, const Operands& op, int M, int N, int K, int P, const float* bias,
                      ActivationSpec act, float* out) {
  const dim3 grid(unsigned(ceil_div(N, kTileN)), unsigned(ceil_div(M, kTileM)));
  CNN_CHECK(grid.y <= 65535, "Conv2D: ", M, " output channels exceed the kernel's grid limit");
  conv_implicit_gemm_kernel<Operands><<<grid, kThreads, 0, ctx.stream>>>(op, M, N, K, P, bias, act, out);
  CNN_CUDA_CHECK_LAUNCH("conv_implicit_gemm_kernel");
}

// ---- Weight gradient ------------------------------------------------------------------------
// dW[co, k] = sum over r = (image, oh, ow) of dy[image, co, oh, ow] * col[k, r]. Block
// (kx, my, z) computes the 64 x 64 tile (my, kx) over slice z of the r range and writes it
// to out + z * M * K (the partial buffer, or dW itself when there is a single slice).
__global__ void __launch_bounds__(kThreads)
    conv_weight_grad_kernel(Conv2DShape s, const float* __restrict__ x, const float* __restrict__ dy,
                            int r_per_slice, float* __restrict__ out) {
  __shared__ float Ds[2][kTileK][kTileM + kPad];  // dy tile, Ds[r][co]
  __shared__ float Cs[2][kTileK][kTileN + kPad];  // col tile, Cs[r][k]

  const int M = s.c_out, K = s.c_in * s.k_h * s.k_w, P = s.h_out * s.w_out, R = s.n * P;
  const int taps = s.k_h * s.k_w;
  const int tid = int(threadIdx.x);
  const int k0 = int(blockIdx.x) * kTileN, m0 = int(blockIdx.y) * kTileM;
  const int r_begin = int(blockIdx.z) * r_per_slice;
  const int64_t slice_end = int64_t(r_begin) + r_per_slice;
  const int r_end = slice_end < R ? int(slice_end) : R;

  // Loader roles: both tiles are read with r fastest (neighbouring output pixels), so each
  // thread owns one r of every step and four fixed rows of each tile.
  const int l_r = tid % kTileK, l_row = tid / kTileK;  // rows l_row + 16 i
  constexpr int kRowStride = kThreads / kTileK;
  // This thread's four columns of dW, fixed for the whole kernel: their (ci, kh, kw).
  int col_offset[kLoads], col_kh[kLoads], col_kw[kLoads];
  bool col_valid[kLoads];
#pragma unroll
  for (int i = 0; i < kLoads; ++i) {
    const int k = k0 + l_row + kRowStride * i;
    col_valid[i] = k < K;
    const int kc = col_valid[i] ? k : 0;
    const int ci = kc / taps, r = kc - ci * taps;
    col_kh[i] = r / s.k_w;
    col_kw[i] = r - col_kh[i] * s.k_w;
    col_offset[i] = ci * s.h_in * s.w_in;
  }
  const int tx = tid % kThreadRows, ty = tid / kThreadRows;

  float d_next[kLoads], c_next[kLoads];
  float acc[kMicro][kMicro] = {};

  double_buffered_tiles(
      r_begin, r_end,
      [&](int r0) {
        const int r = r0 + l_r;
        const bool r_ok = r < r_end;
        const int rr = r_ok ? r : r_begin;
        const int img = rr / P, p = rr - img * P;
        const int oh = p / s.w_out, ow = p - oh * s.w_out;
        const int ih0 = oh * s.stride_h - s.pad_top, iw0 = ow * s.stride_w - s.pad_left;
        const float* image = x + int64_t(img) * s.c_in * s.h_in * s.w_in;
        const float* grad = dy + int64_t(img) * M * P + p;
#pragma unroll
        for (int i = 0; i < kLoads; ++i) {
          const int m = m0 + l_row + kRowStride * i;
          d_next[i] = (r_ok && m < M) ? grad[int64_t(m) * P] : 0.f;
          const int ih = ih0 + col_kh[i], iw = iw0 + col_kw[i];
          const bool inside = ih >= 0 && ih < s.h_in && iw >= 0 && iw < s.w_in;
          c_next[i] = (r_ok && col_valid[i] && inside) ? image[col_offset[i] + int64_t(ih) * s.w_in + iw] : 0.f;
        }
      },
      [&](int buf) {
#pragma unroll
        for (int i = 0; i < kLoads; ++i) {
          Ds[buf][l_r][l_row + kRowStride * i] = d_next[i];
          Cs[buf][l_r][l_row + kRowStride * i] = c_next[i];
        }
      },
      [&](int buf) {
#pragma unroll
        for (int rr = 0; rr < kTileK; ++rr) micro_tile_step(acc, Ds[buf][rr], Cs[buf][rr], ty, tx);
      });

  float* slice = out + int64_t(blockIdx.z) * M * K;
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    const int m = m0 + ty + kThreadRows * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int k = k0 + tx + kThreadRows * j;
      if (k < K) slice[int64_t(m) * K + k] = acc[i][j];
    }
  }
}

// out[i] = sum over slices z = 0, 1, ... of partial[z][i], always in that order.
__global__ void sum_slices_kernel(const float* __restrict__ partial, int slices, int64_t count,
                                  float* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (int z = 0; z < slices; ++z) sum += partial[z * count + i];
    out[i] = sum;
  }
}

// dbias[co] = sum of dy[:, co, :, :]; one block per channel, fixed-order reduction.
__global__ void __launch_bounds__(kThreads) conv_bias_grad_kernel(const float* __restrict__ dy, int n, int C,
                                                                  int P, float* __restrict__ dbias) {
  const int co = int(blockIdx.x);
  float sum = 0.f;
  for (int img = 0; img < n; ++img) {
    const float* plane = dy + (int64_t(img) * C + co) * P;
    for (int p = int(threadIdx.x); p < P; p += kThreads) sum += plane[p];
  }
  sum = block_sum<kThreads>(sum);
  if (threadIdx.x == 0) dbias[co] = sum;
}

void check_sizes(const Conv2DShape& s, const char* op) {
  const int64_t k_fwd = int64_t(s.c_in) * s.k_h * s.k_w, k_bwd = int64_t(s.c_out) * s.k_h * s.k_w;
  const int64_t cols_fwd = int64_t(s.n) * s.h_out * s.w_out, cols_bwd = int64_t(s.n) * s.h_in * s.w_in;
  CNN_CHECK(k_fwd < INT_MAX && k_bwd < INT_MAX && cols_fwd < INT_MAX - kTileN && cols_bwd < INT_MAX - kTileN,
            op, ": tensor too large for 32-bit GEMM indices (batch ", s.n, ", ", s.c_in, "x", s.h_in, "x", s.w_in,
            " -> ", s.c_out, "x", s.h_out, "x", s.w_out, ")");
}

void forward_gemm(Context& ctx, const Conv2DShape& s, const float* x, const float* w, const float* bias,
                  ActivationSpec act, float* y) {
  const int K = s.c_in * s.k_h * s.k_w, P = s.h_out * s.w_out;
  launch_conv_gemm(ctx, ConvForwardOperands{s, x, w, K}, s.c_out, s.n * P, K, P, bias, act, y);
}

void backward_input_gemm(Context& ctx, const Conv2DShape& s, const float* dy, const float* w, float* dx) {
  const int P = s.h_in * s.w_in;
  launch_conv_gemm(ctx, ConvBackwardInputOperands{s, dy, w}, s.c_in, s.n * P, s.c_out * s.k_h * s.k_w, P, nullptr,
                   ActivationSpec{Activation::Linear}, dx);
}

void backward_params_gemm(Context& ctx, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                          float* dbias) {
  const int M = s.c_out, K = s.c_in * s.k_h * s.k_w, R = s.n * s.h_out * s.w_out;
  const int64_t tiles = ceil_div(M, kTileM) * ceil_div(K, kTileN);
  CNN_CHECK(ceil_div(M, kTileM) <= 65535, "conv2d_backward_params: ", M, " filters exceed the grid limit");
  // Slice the reduction so that the grid covers every multiprocessor about four times,
  // keeping at least 8 steps of 16 per slice so each slice amortises its write-out.
  const int64_t steps = ceil_div(R, kTileK);
  int64_t slices = ceil_div(4 * int64_t(ctx.sm_count), tiles);
  slices = std::max<int64_t>(1, std::min({slices, steps / 8, int64_t(1024)}));
  const int64_t steps_per_slice = ceil_div(steps, slices);
  slices = ceil_div(steps, steps_per_slice);  // no empty slice
  const int r_per_slice = int(steps_per_slice * kTileK);

  float* target = slices == 1 ? dw : ctx.scratch(size_t(slices) * size_t(M) * size_t(K));
  const dim3 grid(unsigned(ceil_div(K, kTileN)), unsigned(ceil_div(M, kTileM)), unsigned(slices));
  conv_weight_grad_kernel<<<grid, kThreads, 0, ctx.stream>>>(s, x, dy, r_per_slice, target);
  CNN_CUDA_CHECK_LAUNCH("conv_weight_grad_kernel");
  if (slices > 1) {
    const int64_t count = int64_t(M) * K;
    sum_slices_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(target, int(slices), count, dw);
    CNN_CUDA_CHECK_LAUNCH("sum_slices_kernel");
  }
  if (dbias) {
    conv_bias_grad_kernel<<<unsigned(s.c_out), kThreads, 0, ctx.stream>>>(dy, s.n, s.c_out, s.h_out * s.w_out, dbias);
    CNN_CUDA_CHECK_LAUNCH("conv_bias_grad_kernel");
  }
}

}  // namespace

bool conv2d_forward_pooled(Context& ctx, const Conv2DShape& s, const Pool2DShape& p, bool max_pool, const float* x,
                           const float* w, const float* bias, ActivationSpec act, float* y, float* pooled) {
  if (ctx.conv_kernels != ConvKernels::Fast || !direct_forward_pooled_takes(s, p)) return false;
  conv2d_forward_direct_pooled(ctx, s, p, max_pool, x, w, bias, act, y, pooled);
  return true;
}

// Each pass: the specialised kernel when the context asks for it and the shape passes its
// rule (Fast), the tuner's choice between them (Tuned), else the implicit GEMM.
void conv2d_forward(Context& ctx, const Conv2DShape& s, const float* x, const float* w, const float* bias,
                    ActivationSpec act, float* y) {
  check_elementwise(act, "conv2d_forward");
  check_sizes(s, "conv2d_forward");
  const bool direct = direct_forward_takes(s);
  if (ctx.conv_kernels == ConvKernels::Tuned) {
    std::vector<ConvCandidate> candidates{{ConvKernel::Gemm, [&] { forward_gemm(ctx, s, x, w, bias, act, y); }}};
    if (direct) candidates.push_back({ConvKernel::Direct, [&] { conv2d_forward_direct(ctx, s, x, w, bias, act, y); }});
    const ConvOutput outputs[] = {{y, s.y_size()}};
    return run_tuned_conv(ctx, ConvPass::Forward, s, candidates, outputs);
  }
  if (ctx.conv_kernels == ConvKernels::Fast && direct) return conv2d_forward_direct(ctx, s, x, w, bias, act, y);
  forward_gemm(ctx, s, x, w, bias, act, y);
}

void conv2d_backward_input(Context& ctx, const Conv2DShape& s, const float* dy, const float* w, float* dx) {
  check_sizes(s, "conv2d_backward_input");
  const bool direct = direct_backward_input_takes(s);
  if (ctx.conv_kernels == ConvKernels::Tuned) {
    std::vector<ConvCandidate> candidates{{ConvKernel::Gemm, [&] { backward_input_gemm(ctx, s, dy, w, dx); }}};
    if (direct) candidates.push_back({ConvKernel::Direct, [&] { conv2d_backward_input_direct(ctx, s, dy, w, dx); }});
    const ConvOutput outputs[] = {{dx, s.x_size()}};
    return run_tuned_conv(ctx, ConvPass::BackwardInput, s, candidates, outputs);
  }
  if (ctx.conv_kernels == ConvKernels::Fast && direct) return conv2d_backward_input_direct(ctx, s, dy, w, dx);
  backward_input_gemm(ctx, s, dy, w, dx);
}

void conv2d_backward_params(Context& ctx, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                            float* dbias) {
  check_sizes(s, "conv2d_backward_params");
  const bool split_k = split_k_weight_grad_takes(s);
  if (ctx.conv_kernels == ConvKernels::Tuned) {
    std::vector<ConvCandidate> candidates{{ConvKernel::Gemm, [&] { backward_params_gemm(ctx, s, x, dy, dw, dbias); }}};
    if (split_k)
      candidates.push_back({ConvKernel::SplitK, [&] { conv2d_backward_params_split_k(ctx, s, x, dy, dw, dbias); }});
    const ConvOutput outputs[] = {{dw, s.w_size()}, {dbias, dbias ? s.c_out : 0}};
    return run_tuned_conv(ctx, ConvPass::BackwardParams, s, candidates, outputs);
  }
  if (ctx.conv_kernels == ConvKernels::Fast && split_k) return conv2d_backward_params_split_k(ctx, s, x, dy, dw, dbias);
  backward_params_gemm(ctx, s, x, dy, dw, dbias);
}

}  // namespace cnn::ops::cuda
