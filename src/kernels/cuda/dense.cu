// Dense on the GPU: the three products go to cuBLAS (FP32, no TF32), bias + activation
// run as one small epilogue kernel, dbias as a column-sum kernel, which can also take the
// activation's gradient on its way (one launch where the two ops take two).
#include "kernels/cuda/common.cuh"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;

// Row-major C[M, N] = op(A) op(B), op(X) = X or X^T, inner dimension K; lda/ldb/ldc are the
// row lengths of the matrices as stored. The only place that translates to cuBLAS's
// column-major view: a row-major matrix read column-major is its transpose, so we ask
// cuBLAS for C^T = op(B)^T op(A)^T, an N x M column-major product with the operands swapped.
void gemm_row_major(Context& ctx, bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda,
                    const float* B, int ldb, float* C, int ldc) {
  const float alpha = 1.f, beta = 0.f;
  ::cnn::cuda::detail::count_launch();  // one GEMM: cuBLAS may run more than one kernel for it
  CNN_CUBLAS_CHECK(cublasGemmEx(ctx.cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// y[r, o] = act(y[r, o] + bias[o]) in place; bias may be null.
__global__ void bias_activation_kernel(int64_t count, int cols, const float* __restrict__ bias, ActivationSpec act,
                                       float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const float b = bias ? bias[i % cols] : 0.f;
    y[i] = formulas::activate(act, y[i] + b);
  }
}

// out[o] = sum over rows of dy[row, o]. A 32 x 8 block owns 32 columns: each of its 8 thread
// rows sums a strided share of the rows (coalesced 128-byte row segments), then the 8
// partial sums are added in a fixed order.
//
// With dz (not null): each element first becomes act'(.) dy, written to dz (which may be dy:
// each thread rewrites only what it read), as activation_backward_kernel computes it, and the
// sums are over those: the same bits as that kernel then this one.
constexpr int kSumCols = 32, kSumRows = kColumnPartials;
__global__ void column_sum_kernel(const float* dy, int rows, int cols, float* __restrict__ out, ActivationSpec act,
                                  const float* z, const float* y, float* dz) {
  __shared__ float partial[kSumRows][kSumCols + 1];
  const int col = int(blockIdx.x) * kSumCols + int(threadIdx.x);
  float sum = 0.f;
  if (col < cols) {
    sum = column_partial(rows, int(threadIdx.y), [&](int r) {
      const int64_t i = int64_t(r) * cols + col;
      float d = dy[i];
      if (dz) {
        d = formulas::activation_grad(act, z, i, y[i], d);
        dz[i] = d;
      }
      return d;
    });
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) out[col] = column_total<kSumCols + 1>(&partial[0][threadIdx.x]);
}

// ---- A chain of small Dense layers, forward, in one kernel --------------------------------
// A block takes kChainRows rows through every link: their activations stay in shared memory
// (two [rows][width] buffers, ping-pong), each link's y also goes to global memory. A warp
// computes one output column for all the block's rows: its lanes read that column's weight
// row coalesced, once per block, and multiply it into every row's activations; then one
// butterfly sum per row (a fixed order: deterministic).
constexpr int kChainRows = 8, kChainThreads = 256, kChainWarps = kChainThreads / kWarpSize;
struct DenseChain {
  DenseChainLayer link[kDenseChainMaxLayers];
  int count;
};

__global__ void __launch_bounds__(kChainThreads) dense_chain_forward_kernel(int n, const float* __restrict__ x,
                                                                           DenseChain chain) {
  __shared__ float buf[2][kChainRows][kDenseChainMaxWidth];
  const int row0 = int(blockIdx.x) * kChainRows, rows = min(kChainRows, n - row0);
  const int in0 = chain.link[0].in;
  for (int i = int(threadIdx.x); i < kChainRows * in0; i += kChainThreads) {
    const int r = i / in0, k = i - r * in0;
    buf[0][r][k] = r < rows ? x[int64_t(row0 + r) * in0 + k] : 0.f;
  }
  __syncthreads();
  const int warp = int(threadIdx.x) / kWarpSize, lane = int(threadIdx.x) % kWarpSize;
  for (int l = 0; l < chain.count; ++l) {
    const DenseChainLayer link = chain.link[l];
    const float(*src)[kDenseChainMaxWidth] = buf[l & 1];
    float(*dst)[kDenseChainMaxWidth] = buf[(l + 1) & 1];
    for (int o = warp; o < link.out; o += kChainWarps) {
      const float* w = link.w + int64_t(o) * link.in;
      float acc[kChainRows];
#pragma unroll
      for (int r = 0; r < kChainRows; ++r) acc[r] = 0.f;
      for (int k = lane; k < link.in; k += kWarpSize) {
        const float wk = w[k];
#pragma unroll
        for (int r = 0; r < kChainRows; ++r) acc[r] = fmaf(src[r][k], wk, acc[r]);
      }
      const float b = link.bias ? link.bias[o] : 0.f;
#pragma unroll
      for (int r = 0; r < kChainRows; ++r) {
        const float v = formulas::activate(link.act, warp_sum(acc[r]) + b);
        if (lane == 0) {
          dst[r][o] = v;
          if (r < rows) link.y[int64_t(row0 + r) * link.out + o] = v;
        }
      }
    }
    __syncthreads();
  }
}

}  // namespace

void dense_chain_forward(Context& ctx, int n, const float* x, const DenseChainLayer* layers, int count) {
  CNN_CHECK(count >= 1 && count <= kDenseChainMaxLayers, "dense_chain_forward: ", count, " links, at most ",
            kDenseChainMaxLayers);
  DenseChain chain{};
  chain.count = count;
  for (int l = 0; l < count; ++l) {
    const DenseChainLayer& link = layers[l];
    CNN_CHECK(dense_chain_takes(link.in, link.out, link.act) && link.w && link.y && (l == 0 || link.in == layers[l - 1].out),
              "dense_chain_forward: link ", l, " (", link.in, " -> ", link.out, ", ", to_string(link.act.kind),
              ") cannot be chained");
    chain.link[l] = link;
  }
  if (n <= 0) return;
  dense_chain_forward_kernel<<<unsigned(ceil_div(n, kChainRows)), kChainThreads, 0, ctx.stream>>>(n, x, chain);
  CNN_CUDA_CHECK_LAUNCH("dense_chain_forward_kernel");
}

void dense_forward(Context& ctx, int n, int in, int out, const float* x, const float* w, const float* bias,
                   ActivationSpec act, float* y) {
  check_elementwise(act, "dense_forward");
  if (n <= 0 || out <= 0) return;
  CNN_CHECK(in > 0, "dense_forward: input width ", in, " must be positive");
  gemm_row_major(ctx, false, true, n, out, in, x, in, w, in, y, out);  // y = x W^T
  if (!bias && act.kind == Activation::Linear) return;
  const int64_t count = int64_t(n) * out;
  bias_activation_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(count, out, bias, act, y);
  CNN_CUDA_CHECK_LAUNCH("bias_activation_kernel");
}

void dense_backward_input(Context& ctx, int n, int in, int out, const float* dy, const float* w, float* dx) {
  if (n <= 0 || in <= 0) return;
  CNN_CHECK(out > 0, "dense_backward_input: output width ", out, " must be positive");
  gemm_row_major(ctx, false, false, n, in, out, dy, out, w, in, dx, in);  // dx = dy W
}

void dense_backward_params(Context& ctx, int n, int in, int out, const float* x, const float* dy, float* dw,
                           float* dbias) {
  if (in <= 0 || out <= 0) return;
  CNN_CHECK(n > 0, "dense_backward_params: batch ", n, " must be positive");
  gemm_row_major(ctx, true, false, out, in, n, dy, out, x, in, dw, in);  // dW = dy^T x
  if (!dbias) return;
  const dim3 block(kSumCols, kSumRows);
  column_sum_kernel<<<unsigned(ceil_div(out, kSumCols)), block, 0, ctx.stream>>>(dy, n, out, dbias, ActivationSpec{},
                                                                                nullptr, nullptr, nullptr);
  CNN_CUDA_CHECK_LAUNCH("column_sum_kernel");
}

void activation_backward_with_bias_grad(Context& ctx, ActivationSpec act, int rows, int cols, const float* z,
                                        const float* y, const float* dy, float* dz, float* dbias) {
  check_elementwise(act, "activation_backward_with_bias_grad");
  if (rows <= 0 || cols <= 0) return;
  const dim3 block(kSumCols, kSumRows);
  column_sum_kernel<<<unsigned(ceil_div(cols, kSumCols)), block, 0, ctx.stream>>>(dy, rows, cols, dbias, act, z, y,
                                                                                 dz);
  CNN_CUDA_CHECK_LAUNCH("column_sum_kernel");
}

}  // namespace cnn::ops::cuda
