// Conv2D on bf16 tensor cores: implicit GEMMs on mma.sync m16n8k16 with fp32 accumulators
// (and the forward and input gradient on tf32, m16n8k8, with fp32 NHWC storage rounded to tf32),
// operands staged global -> shared by cp.async in a 3-stage pipeline and read by ldmatrix from
// swizzled tiles (conv2d_mma.cuh). Activations NHWC bf16, weights [c_out, k_h, k_w, c_in] bf16,
// so each 16-byte load is 8 consecutive channels of one pixel (or one filter tap).
//
//   forward         Y[(n, p, q), c_out] = X_col[(n, p, q), (r, s, c)] . W[c_out, (r, s, c)]^T
//                   + bias, activation; Y written fp32 NHWC. Both operands are stored
//                   reduction-fastest, so ldmatrix reads them without .trans.
//   backward input  the forward conv of dy with W_rot[c_in, r, s, c_out] = W[c_out, k_h-1-r,
//                   k_w-1-s, c_in] (rotate_filters_kernel) and padding k-1-pad; for stride > 1 dy
//                   is read dilated (zeros between its pixels, never stored), which spends
//                   1 - 1/(stride_h stride_w) of the products on zeros.
//   backward params dW[c_out, (r, s, c)] = sum over (n, p, q) of dY^T . X_col: the reduction runs
//                   over pixels, which are the tiles' rows, so ldmatrix .trans transposes both
//                   operands. Split over pixel slices; slice z writes its fp32 partial tile to
//                   scratch, sum_slices_kernel adds the slices in order z = 0, 1, ... (no atomics).
#include <algorithm>
#include <climits>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv2d_mma.cuh"
#include "kernels/formulas/precision.hpp"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;
using namespace ::cnn::cuda::mma;

constexpr int kStages = 3;
constexpr int kThreads = 128;  // 4 warps in a 2 x 2 grid
constexpr int64_t kIndexLimit = INT_MAX / 2;  // every element index and GEMM extent below this
constexpr int kFarAway = -(1 << 28);          // an input row that fails every bounds test

// (kh, kw, c) of reduction index k = (kh k_w + kw) c_in + c; k and c_in are multiples of the
// chunk (8 bf16, 4 tf32), so the chunk's indices from k lie in one tap.
struct Tap {
  int kh, kw, c;
};
__device__ __forceinline__ Tap tap_of(int k, int c_in, int k_w) {
  const int t = k / c_in, kh = t / k_w;
  return {kh, t - kh * k_w, k - t * c_in};
}

// Address of channel `c` of input pixel (img, ih, iw), or null outside the image.
template <class T>
__device__ __forceinline__ const T* pixel(const Conv2DShape& s, const T* x, int img, int ih, int iw, int c) {
  if (ih < 0 || ih >= s.h_in || iw < 0 || iw >= s.w_in) return nullptr;
  return x + ((int64_t(img) * s.h_in + ih) * s.w_in + iw) * s.c_in + c;
}

// The same for an input seen through a zero-inserting dilation (u, v) = (ih dil_h, iw dil_w):
// pixel (u, v) of the dilated grid is input pixel (u / dil_h, v / dil_w) when both divide,
// else an inserted zero (null). The strided input gradient reads dy this way.
template <class T>
__device__ __forceinline__ const T* dilated_pixel(const Conv2DShape& s, const T* x, int img, int u, int v, int c,
                                                  int dil_h, int dil_w) {
  if (u < 0 || v < 0 || u % dil_h != 0 || v % dil_w != 0) return nullptr;
  return pixel(s, x, img, u / dil_h, v / dil_w, c);
}

// ---- Forward --------------------------------------------------------------------------------
// CTA tile 128 pixels x 64 output channels x 64 bytes of reduction (32 bf16 or 16 tf32); warp
// (wm, wn) computes pixels 64 wm.., channels 32 wn..: 4 x 4 mma tiles of 16 x 8. Shared: A
// 128 x 4 chunks, B 64 x 4 chunks per stage, 12 KB, 36 KB for 3 stages (under the 48 KB every
// GPU grants).
//
// The two element types share the tile layout, the swizzle and the ldmatrix addressing: a
// chunk is 8 bf16 or 4 tf32 (fp32 storage), an mma step two chunks (k16 bf16, k8 tf32). For
// 32-bit elements ldmatrix's 8x8 b16 matrix is an 8x4 matrix of words, lane l getting word
// (l / 4, l % 4): exactly the tf32 fragment (g, t).
struct Bf16Elems {
  using T = uint16_t;
  static constexpr int kChunk = 8;
  __device__ __forceinline__ static void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_bf16_16x8x16(d, a, b0, b1);
  }
};
struct Tf32Elems {
  using T = float;
  static constexpr int kChunk = 4;
  __device__ __forceinline__ static void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_tf32_16x8x8(d, a, b0, b1);
  }
};

namespace fwd {
constexpr int kTileM = 128, kTileN = 64;
constexpr int kChunks = 4;  // per row: 64 bytes
template <class Elems>
constexpr int kTileK = kChunks * Elems::kChunk;
constexpr int kRowsPerPass = kThreads / kChunks;  // 32 rows loaded per pass
constexpr int kARows = kTileM / kRowsPerPass, kBRows = kTileN / kRowsPerPass;
constexpr int kABytes = kTileM * kChunks * 16, kBBytes = kTileN * kChunks * 16;
constexpr int kStageBytes = kABytes + kBBytes;
constexpr int kSharedBytes = kStages * kStageBytes;
constexpr int kWarpTilesM = 4, kWarpTilesN = 4;  // 16 x 8 mma tiles per warp
}  // namespace fwd

// The pixels (rows of A) one thread loads, fixed for the whole kernel.
struct ForwardRows {
  int img[fwd::kARows], ih0[fwd::kARows], iw0[fwd::kARows];
};

__device__ __forceinline__ ForwardRows forward_rows(const Conv2DShape& s, int m0, int row0) {
  ForwardRows rows;
  const int PQ = s.h_out * s.w_out, M = s.n * PQ;
#pragma unroll
  for (int i = 0; i < fwd::kARows; ++i) {
    const int m = m0 + row0 + fwd::kRowsPerPass * i;
    const int img = m / PQ, pq = m - img * PQ, oh = pq / s.w_out, ow = pq - oh * s.w_out;
    rows.img[i] = img;
    rows.ih0[i] = m < M ? oh * s.stride_h - s.pad_top : kFarAway;
    rows.iw0[i] = ow * s.stride_w - s.pad_left;
  }
  return rows;
}

// Queues the copies of reduction tile kt into one stage: A[row][k] = x at (pixel row, tap of k),
// B[row][k] = w[n0 + row][k]; zeros past the reduction, the image, the pixels or the filters.
// kDilated: x is read through dilated_pixel (dil_h, dil_w), for the strided input gradient.
template <class Elems, bool kDilated, class T = typename Elems::T>
__device__ __forceinline__ void forward_load_tile(const Conv2DShape& s, const T* x, const T* w, const ForwardRows& rows,
                                                  int n0, int kt, int row0, int chunk, int dil_h, int dil_w,
                                                  unsigned char* stage) {
  const int K = s.c_in * s.k_h * s.k_w;
  const int k = kt * fwd::kTileK<Elems> + chunk * Elems::kChunk;
  const bool k_ok = k < K;
  const Tap t = tap_of(k_ok ? k : 0, s.c_in, s.k_w);
  const uint32_t a = shared_address(stage), b = a + fwd::kABytes;
#pragma unroll
  for (int i = 0; i < fwd::kARows; ++i) {
    const int ih = rows.ih0[i] + t.kh, iw = rows.iw0[i] + t.kw;
    const T* src =
        kDilated ? dilated_pixel(s, x, rows.img[i], ih, iw, t.c, dil_h, dil_w) : pixel(s, x, rows.img[i], ih, iw, t.c);
    const bool ok = k_ok && src;
    copy_16_bytes_async(a + swizzled_offset<fwd::kChunks>(row0 + fwd::kRowsPerPass * i, chunk), ok ? src : x, ok);
  }
#pragma unroll
  for (int i = 0; i < fwd::kBRows; ++i) {
    const int co = n0 + row0 + fwd::kRowsPerPass * i;
    const bool ok = k_ok && co < s.c_out;
    copy_16_bytes_async(b + swizzled_offset<fwd::kChunks>(row0 + fwd::kRowsPerPass * i, chunk),
                        ok ? w + int64_t(co) * K + k : w, ok);
  }
}

// The warp's 4 x 4 mma tiles over one stage (two mma steps of two chunks). A fragments: lane l
// addresses row l % 16, chunk l / 16 of a 16-row block; B: rows (filters) l % 8 + 8 (l / 16),
// chunk (l / 8) % 2, two 8-filter tiles per ldmatrix.x4.
template <class Elems>
__device__ __forceinline__ void forward_multiply_tile(const unsigned char* stage, int warp_m, int warp_n, int lane,
                                                      float (&acc)[fwd::kWarpTilesM][fwd::kWarpTilesN][4]) {
  const uint32_t a_base = shared_address(stage), b_base = a_base + fwd::kABytes;
#pragma unroll
  for (int ks = 0; ks < fwd::kChunks / 2; ++ks) {
    uint32_t a[fwd::kWarpTilesM][4], b[fwd::kWarpTilesN][2];
#pragma unroll
    for (int mi = 0; mi < fwd::kWarpTilesM; ++mi) {
      const int row = warp_m * 64 + mi * 16 + lane % 16;
      load_matrix_x4(a[mi], a_base + swizzled_offset<fwd::kChunks>(row, 2 * ks + lane / 16));
    }
#pragma unroll
    for (int nj = 0; nj < fwd::kWarpTilesN / 2; ++nj) {
      uint32_t r[4];
      const int row = warp_n * 32 + nj * 16 + lane % 8 + 8 * (lane / 16);
      load_matrix_x4(r, b_base + swizzled_offset<fwd::kChunks>(row, 2 * ks + (lane / 8) % 2));
      b[2 * nj][0] = r[0];
      b[2 * nj][1] = r[1];
      b[2 * nj + 1][0] = r[2];
      b[2 * nj + 1][1] = r[3];
    }
#pragma unroll
    for (int mi = 0; mi < fwd::kWarpTilesM; ++mi)
#pragma unroll
      for (int ni = 0; ni < fwd::kWarpTilesN; ++ni) Elems::mma(acc[mi][ni], a[mi], b[ni][0], b[ni][1]);
  }
}

// Accumulator (g, 2t..) of tile (mi, ni) -> y[pixel][channel] = act(acc + bias), fp32 NHWC.
__device__ __forceinline__ void forward_store(const Conv2DShape& s, const float (&acc)[fwd::kWarpTilesM][fwd::kWarpTilesN][4],
                                              int m0, int n0, int warp_m, int warp_n, int lane, const float* bias,
                                              ActivationSpec act, float* y) {
  const int M = s.n * s.h_out * s.w_out, N = s.c_out, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int mi = 0; mi < fwd::kWarpTilesM; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int m = m0 + warp_m * 64 + mi * 16 + g + 8 * half;
      if (m >= M) continue;
      float* row = y + int64_t(m) * N;
#pragma unroll
      for (int ni = 0; ni < fwd::kWarpTilesN; ++ni) {
        const int co = n0 + warp_n * 32 + ni * 8 + 2 * t;
        if (co < N) row[co] = formulas::activate(act, acc[mi][ni][2 * half] + (bias ? bias[co] : 0.f));
        if (co + 1 < N) row[co + 1] = formulas::activate(act, acc[mi][ni][2 * half + 1] + (bias ? bias[co + 1] : 0.f));
      }
    }
}

template <class Elems, bool kDilated, class T = typename Elems::T>
__global__ void __launch_bounds__(kThreads)
    conv_forward_mma_kernel(Conv2DShape s, const T* __restrict__ x, const T* __restrict__ w,
                            const float* __restrict__ bias, ActivationSpec act, int dil_h, int dil_w,
                            float* __restrict__ y) {
  extern __shared__ __align__(128) unsigned char shared[];
  const int tid = int(threadIdx.x), lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int warp_m = warp / 2, warp_n = warp % 2;
  const int m0 = int(blockIdx.x) * fwd::kTileM, n0 = int(blockIdx.y) * fwd::kTileN;
  const int row0 = tid / fwd::kChunks, chunk = tid % fwd::kChunks;
  const int k_tiles = (s.c_in * s.k_h * s.k_w + fwd::kTileK<Elems> - 1) / fwd::kTileK<Elems>;
  const ForwardRows rows = forward_rows(s, m0, row0);
  auto stage = [&](int kt) { return shared + (kt % kStages) * fwd::kStageBytes; };

  // Pipeline: tiles kt+1, kt+2 are in flight while tile kt is multiplied. One commit per
  // iteration (empty near the end) keeps wait_group's count aligned with the tile index.
#pragma unroll
  for (int kt = 0; kt < kStages - 1; ++kt) {
    if (kt < k_tiles) forward_load_tile<Elems, kDilated>(s, x, w, rows, n0, kt, row0, chunk, dil_h, dil_w, stage(kt));
    commit_async_copies();
  }
  float acc[fwd::kWarpTilesM][fwd::kWarpTilesN][4] = {};
  for (int kt = 0; kt < k_tiles; ++kt) {
    wait_async_copies<kStages - 2>();  // tile kt has landed (this thread's copies)
    __syncthreads();                   // ... everyone's; and stage kt-1 is free to refill
    const int next = kt + kStages - 1;
    if (next < k_tiles) forward_load_tile<Elems, kDilated>(s, x, w, rows, n0, next, row0, chunk, dil_h, dil_w, stage(next));
    commit_async_copies();
    forward_multiply_tile<Elems>(stage(kt), warp_m, warp_n, lane, acc);
  }
  forward_store(s, acc, m0, n0, warp_m, warp_n, lane, bias, act, y);
}

// dil_h, dil_w > 1: x dilated (the strided input gradient); 1, 1: the plain forward.
template <class Elems, class T = typename Elems::T>
void launch_forward(Context& ctx, const Conv2DShape& s, const T* x, const T* w, const float* bias, ActivationSpec act,
                    float* y, int dil_h = 1, int dil_w = 1) {
  const int64_t M = int64_t(s.n) * s.h_out * s.w_out;
  const dim3 grid(unsigned(ceil_div(M, fwd::kTileM)), unsigned(ceil_div(s.c_out, fwd::kTileN)));
  if (dil_h == 1 && dil_w == 1) {
    conv_forward_mma_kernel<Elems, false><<<grid, kThreads, fwd::kSharedBytes, ctx.stream>>>(s, x, w, bias, act, 1, 1, y);
    CNN_CUDA_CHECK_LAUNCH("conv_forward_mma_kernel<Elems, false>");
  } else {
    conv_forward_mma_kernel<Elems, true>
        <<<grid, kThreads, fwd::kSharedBytes, ctx.stream>>>(s, x, w, bias, act, dil_h, dil_w, y);
    CNN_CUDA_CHECK_LAUNCH("conv_forward_mma_kernel<Elems, true>");
  }
}

// ---- Backward input ---------------------------------------------------------------------------
// w_rot[c][r][s][k] = w[k][k_h-1-r][k_w-1-s][c].
template <class T>
__global__ void rotate_filters_kernel(int K, int C, int R, int S, const T* __restrict__ w, T* __restrict__ w_rot) {
  const int64_t count = int64_t(K) * C * R * S;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int k = int(i % K);
    int64_t rest = i / K;
    const int sx = int(rest % S);
    rest /= S;
    const int r = int(rest % R), c = int(rest / R);
    w_rot[i] = w[((int64_t(k) * R + (R - 1 - r)) * S + (S - 1 - sx)) * C + c];
  }
}

// The forward shape whose output is dx: input dy (c_out channels, h_out x w_out) dilated by the
// stride (zeros between its pixels: dx[ih] takes dy[oh] w[r] where oh stride = ih + pad - r),
// filters w_rot (c_in of them), stride 1, padding k-1-pad, output h_in x w_in.
Conv2DShape backward_input_as_forward(const Conv2DShape& s) {
  Conv2DShape f;
  f.n = s.n;
  f.c_in = s.c_out;
  f.h_in = s.h_out;
  f.w_in = s.w_out;
  f.c_out = s.c_in;
  f.k_h = s.k_h;
  f.k_w = s.k_w;
  f.stride_h = f.stride_w = 1;
  f.pad_top = s.k_h - 1 - s.pad_top;
  f.pad_left = s.k_w - 1 - s.pad_left;
  f.h_out = s.h_in;
  f.w_out = s.w_in;
  return f;
}

// ---- Backward params ------------------------------------------------------------------------
// CTA tile 64 filters x 64 reduction columns (r, s, c) x 32 pixels; warp (wm, wn) computes
// filters 32 wm.., columns 32 wn..: 2 x 4 mma tiles. Both stage tiles are [32 pixels][64]
// (8 chunks per row), 4 KB each, 24 KB for 3 stages.
namespace wgrad {
constexpr int kTileM = 64, kTileN = 64, kTileK = 32;
constexpr int kChunks = kTileM / kChunkElems;  // 8 per row (kTileM == kTileN)
constexpr int kRowsPerPass = kThreads / kChunks;  // 16
constexpr int kRows = kTileK / kRowsPerPass;      // 2 pixel rows per thread per tile
constexpr int kTileBytes = kTileK * kTileM * 2;
constexpr int kStageBytes = 2 * kTileBytes;
constexpr int kSharedBytes = kStages * kStageBytes;
constexpr int kWarpTilesM = 2, kWarpTilesN = 4;
static_assert(kTileM == kTileN, "one chunk column per thread serves both tiles");
}  // namespace wgrad

// Queues pixel tile [p0, p0 + 32) of dy (A: [pixel][filter m0..]) and of the im2col columns
// (B: [pixel][column n0..]) into one stage. Columns: this thread's chunk is fixed (`tap`).
__device__ __forceinline__ void weight_grad_load_tile(const Conv2DShape& s, const uint16_t* x, const uint16_t* dy,
                                                      int p0, int p_end, int m0, bool col_ok, Tap tap, int row0,
                                                      int chunk, unsigned char* stage) {
  const int PQ = s.h_out * s.w_out;
  const int co = m0 + chunk * kChunkElems;
  const uint32_t a = shared_address(stage), b = a + wgrad::kTileBytes;
#pragma unroll
  for (int i = 0; i < wgrad::kRows; ++i) {
    const int row = row0 + wgrad::kRowsPerPass * i, p = p0 + row;
    const bool p_ok = p < p_end;
    const int img = p / PQ, pq = p - img * PQ, oh = pq / s.w_out, ow = pq - oh * s.w_out;
    const bool dy_ok = p_ok && co < s.c_out;
    copy_16_bytes_async(a + swizzled_offset<wgrad::kChunks>(row, chunk), dy_ok ? dy + int64_t(p) * s.c_out + co : dy,
                        dy_ok);
    const uint16_t* src =
        pixel<uint16_t>(s, x, img, oh * s.stride_h - s.pad_top + tap.kh, ow * s.stride_w - s.pad_left + tap.kw, tap.c);
    const bool x_ok = p_ok && col_ok && src;
    copy_16_bytes_async(b + swizzled_offset<wgrad::kChunks>(row, chunk), x_ok ? src : x, x_ok);
  }
}

// The warp's 2 x 4 mma tiles over one stage. The tiles are [pixel][filter] and [pixel][column]
// with pixels the reduction, so .trans: A's matrices are (pixels 0-7 | 8-15) x (filters
// 0-7 | 8-15) addressed as rows l % 8 + 8 (l / 16), chunk (l / 8) % 2; B's as rows
// l % 8 + 8 ((l / 8) % 2), chunk l / 16 (two 8-column tiles per ldmatrix.x4).
__device__ __forceinline__ void weight_grad_multiply_tile(const unsigned char* stage, int warp_m, int warp_n, int lane,
                                                          float (&acc)[wgrad::kWarpTilesM][wgrad::kWarpTilesN][4]) {
  const uint32_t a_base = shared_address(stage), b_base = a_base + wgrad::kTileBytes;
#pragma unroll
  for (int ks = 0; ks < wgrad::kTileK / 16; ++ks) {
    uint32_t a[wgrad::kWarpTilesM][4], b[wgrad::kWarpTilesN][2];
#pragma unroll
    for (int mi = 0; mi < wgrad::kWarpTilesM; ++mi) {
      const int row = ks * 16 + lane % 8 + 8 * (lane / 16);
      const int chunk = (warp_m * 32 + mi * 16) / kChunkElems + (lane / 8) % 2;
      load_matrix_x4_trans(a[mi], a_base + swizzled_offset<wgrad::kChunks>(row, chunk));
    }
#pragma unroll
    for (int nj = 0; nj < wgrad::kWarpTilesN / 2; ++nj) {
      uint32_t r[4];
      const int row = ks * 16 + lane % 8 + 8 * ((lane / 8) % 2);
      const int chunk = (warp_n * 32 + nj * 16) / kChunkElems + lane / 16;
      load_matrix_x4_trans(r, b_base + swizzled_offset<wgrad::kChunks>(row, chunk));
      b[2 * nj][0] = r[0];
      b[2 * nj][1] = r[1];
      b[2 * nj + 1][0] = r[2];
      b[2 * nj + 1][1] = r[3];
    }
#pragma unroll
    for (int mi = 0; mi < wgrad::kWarpTilesM; ++mi)
#pragma unroll
      for (int ni = 0; ni < wgrad::kWarpTilesN; ++ni) mma_bf16_16x8x16(acc[mi][ni], a[mi], b[ni][0], b[ni][1]);
  }
}

// Block (x, y, z) computes columns 64 x.., filters 64 y.. over pixel slice z and writes the
// fp32 tile to out + z c_out K (K = k_h k_w c_in; even, so the float2 stores are aligned).
__global__ void __launch_bounds__(kThreads)
    conv_weight_grad_bf16_mma_kernel(Conv2DShape s, const uint16_t* __restrict__ x, const uint16_t* __restrict__ dy,
                                     int pixels_per_slice, float* __restrict__ out) {
  extern __shared__ __align__(128) unsigned char shared[];
  const int tid = int(threadIdx.x), lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int warp_m = warp / 2, warp_n = warp % 2;
  const int K = s.k_h * s.k_w * s.c_in, P = s.n * s.h_out * s.w_out;
  const int n0 = int(blockIdx.x) * wgrad::kTileN, m0 = int(blockIdx.y) * wgrad::kTileM;
  const int p_begin = int(blockIdx.z) * pixels_per_slice, p_end = min(p_begin + pixels_per_slice, P);
  const int row0 = tid / wgrad::kChunks, chunk = tid % wgrad::kChunks;
  const int col = n0 + chunk * kChunkElems;
  const bool col_ok = col < K;
  const Tap tap = tap_of(col_ok ? col : 0, s.c_in, s.k_w);
  const int p_tiles = (p_end - p_begin + wgrad::kTileK - 1) / wgrad::kTileK;
  auto stage = [&](int pt) { return shared + (pt % kStages) * wgrad::kStageBytes; };
  auto load = [&](int pt) {
    weight_grad_load_tile(s, x, dy, p_begin + pt * wgrad::kTileK, p_end, m0, col_ok, tap, row0, chunk, stage(pt));
  };

#pragma unroll
  for (int pt = 0; pt < kStages - 1; ++pt) {
    if (pt < p_tiles) load(pt);
    commit_async_copies();
  }
  float acc[wgrad::kWarpTilesM][wgrad::kWarpTilesN][4] = {};
  for (int pt = 0; pt < p_tiles; ++pt) {
    wait_async_copies<kStages - 2>();
    __syncthreads();
    if (pt + kStages - 1 < p_tiles) load(pt + kStages - 1);
    commit_async_copies();
    weight_grad_multiply_tile(stage(pt), warp_m, warp_n, lane, acc);
  }

  float* slice = out + int64_t(blockIdx.z) * s.c_out * K;
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int mi = 0; mi < wgrad::kWarpTilesM; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int co = m0 + warp_m * 32 + mi * 16 + g + 8 * half;
      if (co >= s.c_out) continue;
#pragma unroll
      for (int ni = 0; ni < wgrad::kWarpTilesN; ++ni) {
        const int k = n0 + warp_n * 32 + ni * 8 + 2 * t;
        if (k < K)
          *reinterpret_cast<float2*>(slice + int64_t(co) * K + k) =
              make_float2(acc[mi][ni][2 * half], acc[mi][ni][2 * half + 1]);
      }
    }
}

// partial_bias[z][co] = sum of dy[p][co] over slice z's pixels: lane -> channel (32 per block,
// coalesced), warp w -> pixels w, w + 8, ...; the 8 warps' sums added in order.
constexpr int kBiasWarps = 8;
__global__ void __launch_bounds__(kBiasWarps * kWarpSize)
    bias_grad_slices_bf16_kernel(const uint16_t* __restrict__ dy, int pixels, int channels, int pixels_per_slice,
                                 float* __restrict__ partial_bias) {
  __shared__ float warp_sums[kBiasWarps][kWarpSize];
  const int lane = int(threadIdx.x) % kWarpSize, warp = int(threadIdx.x) / kWarpSize;
  const int co = int(blockIdx.x) * kWarpSize + lane;
  const int p_begin = int(blockIdx.y) * pixels_per_slice, p_end = min(p_begin + pixels_per_slice, pixels);
  float sum = 0.f;
  if (co < channels)
    for (int p = p_begin + warp; p < p_end; p += kBiasWarps)
      sum += formulas::bf16_bits_to_float(dy[int64_t(p) * channels + co]);
  warp_sums[warp][lane] = sum;
  __syncthreads();
  if (warp != 0 || co >= channels) return;
  float total = 0.f;
  for (int w = 0; w < kBiasWarps; ++w) total += warp_sums[w][lane];
  partial_bias[int64_t(blockIdx.y) * channels + co] = total;
}

// out[i] = sum over z = 0, 1, ... of partial[z][i], always in that order.
__global__ void sum_slices_kernel(const float* __restrict__ partial, int slices, int64_t count,
                                  float* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (int z = 0; z < slices; ++z) sum += partial[z * count + i];
    out[i] = sum;
  }
}

void sum_slices(Context& ctx, const float* partial, int slices, int64_t count, float* out) {
  sum_slices_kernel<<<grid_for(ctx, count, 256), 256, 0, ctx.stream>>>(partial, slices, count, out);
  CNN_CUDA_CHECK_LAUNCH("sum_slices_kernel");
}

// ---- Layout conversions -----------------------------------------------------------------------
__global__ void nchw_to_nhwc_bf16_kernel(int n, int c, int h, int w, int c_padded, const float* __restrict__ x,
                                         uint16_t* __restrict__ y) {
  const int64_t count = int64_t(n) * h * w * c_padded;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int ch = int(i % c_padded);
    const int64_t pix = i / c_padded, hw = int64_t(h) * w;
    const int64_t img = pix / hw, p = pix - img * hw;
    y[i] = ch < c ? formulas::bf16_bits(x[(img * c + ch) * hw + p]) : uint16_t(0);
  }
}

__global__ void nchw_to_nhwc_tf32_kernel(int n, int c, int h, int w, int c_padded, const float* __restrict__ x,
                                         float* __restrict__ y) {
  const int64_t count = int64_t(n) * h * w * c_padded;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int ch = int(i % c_padded);
    const int64_t pix = i / c_padded, hw = int64_t(h) * w;
    const int64_t img = pix / hw, p = pix - img * hw;
    y[i] = ch < c ? formulas::round_to_tf32(x[(img * c + ch) * hw + p]) : 0.f;
  }
}

__global__ void nhwc_to_nchw_kernel(int n, int c, int h, int w, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t hw = int64_t(h) * w, count = int64_t(n) * c * hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i % hw, plane = i / hw;
    const int64_t img = plane / c, ch = plane - img * c;
    y[i] = x[(img * hw + p) * c + ch];
  }
}

bool fits_indices(const Conv2DShape& s) {
  const int64_t pixels_out = int64_t(s.n) * s.h_out * s.w_out, pixels_in = int64_t(s.n) * s.h_in * s.w_in;
  const int64_t c = std::max(s.c_in, s.c_out);
  return pixels_out * c < kIndexLimit && pixels_in * c < kIndexLimit && s.w_size() < kIndexLimit;
}

void check_indices(const Conv2DShape& s, const char* op) {
  CNN_CHECK(fits_indices(s), op, ": tensor too large for the kernel's 32-bit indices (batch ", s.n, ", ", s.c_in,
            "x", s.h_in, "x", s.w_in, " -> ", s.c_out, "x", s.h_out, "x", s.w_out, ")");
}

}  // namespace

bool bf16_forward_takes(const Conv2DShape& s) { return s.c_in % kChunkElems == 0 && fits_indices(s); }
bool bf16_backward_input_takes(const Conv2DShape& s) {
  return s.c_out % kChunkElems == 0 && s.pad_top < s.k_h && s.pad_left < s.k_w && fits_indices(s);
}
bool bf16_backward_params_takes(const Conv2DShape& s) {
  return s.c_in % kChunkElems == 0 && s.c_out % kChunkElems == 0 && fits_indices(s);
}

void conv2d_forward_bf16(Context& ctx, const Conv2DShape& s, const uint16_t* x, const uint16_t* w, const float* bias,
                         ActivationSpec act, float* y) {
  check_elementwise(act, "conv2d_forward_bf16");
  check_indices(s, "conv2d_forward_bf16");
  CNN_CHECK(bf16_forward_takes(s), "conv2d_forward_bf16: ", s.c_in,
            " input channels; the bf16 kernels need a multiple of 8 (pad with nchw_to_nhwc_bf16)");
  launch_forward<Bf16Elems>(ctx, s, x, w, bias, act, y);
}

namespace {
// dx = conv(dy dilated by the stride, rotated filters): the filters rotated into scratch first.
template <class Elems, class T = typename Elems::T>
void backward_input(Context& ctx, const Conv2DShape& s, const T* dy, const T* w, float* dx) {
  const int64_t count = s.w_size();
  static_assert(sizeof(T) <= sizeof(float), "scratch holds floats");
  auto* w_rot = reinterpret_cast<T*>(ctx.scratch(size_t(ceil_div(count * int64_t(sizeof(T)), sizeof(float)))));
  rotate_filters_kernel<T><<<grid_for(ctx, count, 256), 256, 0, ctx.stream>>>(s.c_out, s.c_in, s.k_h, s.k_w, w, w_rot);
  CNN_CUDA_CHECK_LAUNCH("rotate_filters_kernel");
  launch_forward<Elems>(ctx, backward_input_as_forward(s), dy, w_rot, nullptr, ActivationSpec{Activation::Linear}, dx,
                        s.stride_h, s.stride_w);
}
}  // namespace

void conv2d_backward_input_bf16(Context& ctx, const Conv2DShape& s, const uint16_t* dy, const uint16_t* w, float* dx) {
  check_indices(s, "conv2d_backward_input_bf16");
  CNN_CHECK(bf16_backward_input_takes(s), "conv2d_backward_input_bf16: ", s.c_out,
            " filters; the bf16 kernels need a multiple of 8");
  backward_input<Bf16Elems>(ctx, s, dy, w, dx);
}

bool tf32_forward_takes(const Conv2DShape& s) { return s.c_in % Tf32Elems::kChunk == 0 && fits_indices(s); }
bool tf32_backward_input_takes(const Conv2DShape& s) {
  return s.c_out % Tf32Elems::kChunk == 0 && s.pad_top < s.k_h && s.pad_left < s.k_w && fits_indices(s);
}

void conv2d_forward_tf32(Context& ctx, const Conv2DShape& s, const float* x, const float* w, const float* bias,
                         ActivationSpec act, float* y) {
  check_elementwise(act, "conv2d_forward_tf32");
  check_indices(s, "conv2d_forward_tf32");
  CNN_CHECK(tf32_forward_takes(s), "conv2d_forward_tf32: ", s.c_in,
            " input channels; the tf32 kernels need a multiple of 4 (pad with nchw_to_nhwc_tf32)");
  launch_forward<Tf32Elems>(ctx, s, x, w, bias, act, y);
}

void conv2d_backward_input_tf32(Context& ctx, const Conv2DShape& s, const float* dy, const float* w, float* dx) {
  check_indices(s, "conv2d_backward_input_tf32");
  CNN_CHECK(tf32_backward_input_takes(s), "conv2d_backward_input_tf32: ", s.c_out,
            " filters; the tf32 kernels need a multiple of 4");
  backward_input<Tf32Elems>(ctx, s, dy, w, dx);
}

void conv2d_backward_params_bf16(Context& ctx, const Conv2DShape& s, const uint16_t* x, const uint16_t* dy, float* dw,
                                 float* dbias) {
  check_indices(s, "conv2d_backward_params_bf16");
  CNN_CHECK(bf16_backward_params_takes(s), "conv2d_backward_params_bf16: ", s.c_in, " -> ", s.c_out,
            " channels; the bf16 kernels need multiples of 8");
  const int K = s.k_h * s.k_w * s.c_in, P = s.n * s.h_out * s.w_out;
  // Slices: enough blocks to cover every multiprocessor about twice, each slice at least 8
  // pixel tiles so that its write-out is amortised.
  const int64_t tiles = ceil_div(K, wgrad::kTileN) * ceil_div(s.c_out, wgrad::kTileM);
  const int64_t steps = ceil_div(P, wgrad::kTileK);
  int64_t slices = std::clamp<int64_t>(ceil_div(2 * int64_t(ctx.sm_count), tiles), 1, std::max<int64_t>(1, steps / 8));
  slices = std::min<int64_t>(slices, 1024);
  const int64_t steps_per_slice = ceil_div(steps, slices);
  slices = ceil_div(steps, steps_per_slice);  // no empty slice
  const int pixels_per_slice = int(steps_per_slice * wgrad::kTileK);

  const int64_t w_count = int64_t(s.c_out) * K;
  float* partial = ctx.scratch(size_t(slices) * size_t(w_count + (dbias ? s.c_out : 0)));
  float* partial_bias = partial + slices * w_count;
  const dim3 grid(unsigned(ceil_div(K, wgrad::kTileN)), unsigned(ceil_div(s.c_out, wgrad::kTileM)), unsigned(slices));
  conv_weight_grad_bf16_mma_kernel<<<grid, kThreads, wgrad::kSharedBytes, ctx.stream>>>(
      s, x, dy, pixels_per_slice, slices == 1 ? dw : partial);
  CNN_CUDA_CHECK_LAUNCH("conv_weight_grad_bf16_mma_kernel");
  if (slices > 1) sum_slices(ctx, partial, int(slices), w_count, dw);
  if (dbias) {
    const dim3 bias_grid(unsigned(ceil_div(s.c_out, kWarpSize)), unsigned(slices));
    bias_grad_slices_bf16_kernel<<<bias_grid, kBiasWarps * kWarpSize, 0, ctx.stream>>>(dy, P, s.c_out,
                                                                                         pixels_per_slice, partial_bias);
    CNN_CUDA_CHECK_LAUNCH("bias_grad_slices_bf16_kernel");
    sum_slices(ctx, partial_bias, int(slices), s.c_out, dbias);
  }
}

void nchw_to_nhwc_bf16(Context& ctx, int n, int c, int h, int w, int c_padded, const float* x, uint16_t* y) {
  CNN_CHECK(n > 0 && c > 0 && h > 0 && w > 0 && c_padded >= c, "nchw_to_nhwc_bf16: bad sizes ", n, "x", c, "x", h,
            "x", w, " padded to ", c_padded, " channels");
  const int64_t count = int64_t(n) * h * w * c_padded;
  nchw_to_nhwc_bf16_kernel<<<grid_for(ctx, count, 256), 256, 0, ctx.stream>>>(n, c, h, w, c_padded, x, y);
  CNN_CUDA_CHECK_LAUNCH("nchw_to_nhwc_bf16_kernel");
}

void nchw_to_nhwc_tf32(Context& ctx, int n, int c, int h, int w, int c_padded, const float* x, float* y) {
  CNN_CHECK(n > 0 && c > 0 && h > 0 && w > 0 && c_padded >= c, "nchw_to_nhwc_tf32: bad sizes ", n, "x", c, "x", h,
            "x", w, " padded to ", c_padded, " channels");
  const int64_t count = int64_t(n) * h * w * c_padded;
  nchw_to_nhwc_tf32_kernel<<<grid_for(ctx, count, 256), 256, 0, ctx.stream>>>(n, c, h, w, c_padded, x, y);
  CNN_CUDA_CHECK_LAUNCH("nchw_to_nhwc_tf32_kernel");
}

void nhwc_to_nchw(Context& ctx, int n, int c, int h, int w, const float* x, float* y) {
  CNN_CHECK(n > 0 && c > 0 && h > 0 && w > 0, "nhwc_to_nchw: bad sizes ", n, "x", c, "x", h, "x", w);
  const int64_t count = int64_t(n) * c * h * w;
  nhwc_to_nchw_kernel<<<grid_for(ctx, count, 256), 256, 0, ctx.stream>>>(n, c, h, w, x, y);
  CNN_CUDA_CHECK_LAUNCH("nhwc_to_nchw_kernel");
}

}  // namespace cnn::ops::cuda
