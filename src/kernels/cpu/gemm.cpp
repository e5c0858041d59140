// The CPU matrix product behind the reference conv and dense (float32 with AVX2 runs the
// micro-kernels of fast_kernels.inc instead, see fast.hpp). Both operands are first packed into
// row-major panels so the innermost loop walks contiguous memory in C and B, which the
// compiler turns into SIMD fused multiply-adds; the loops are blocked so a panel of B
// stays in cache while rows of A stream past it.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/fast.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

constexpr int kBlockK = 256;  // rows of the B panel kept hot in L2
constexpr int kBlockN = 512;  // columns of C computed per pass

// Copies op(X) (rows x cols of the logical matrix) into a dense row-major buffer.
template <class T>
void pack(bool trans, int rows, int cols, const T* X, int ldx, T* out) {
  if (!trans) {
    for (int r = 0; r < rows; ++r) std::copy(X + int64_t(r) * ldx, X + int64_t(r) * ldx + cols, out + int64_t(r) * cols);
  } else {
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) out[int64_t(r) * cols + c] = X[int64_t(c) * ldx + r];
  }
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (const fast::Kernels* k = fast::kernels(); k && k->gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
      return;
  }
  if (M <= 0 || N <= 0) return;
  for (int i = 0; i < M; ++i) {
    T* c = C + int64_t(i) * ldc;
    if (beta == T(0)) std::fill(c, c + N, T(0));
    else if (beta != T(1)) for (int j = 0; j < N; ++j) c[j] *= beta;
  }
  if (K <= 0 || alpha == T(0)) return;

  // Pack only what is not already row-major and contiguous.
  thread_local std::vector<T> a_buf, b_buf;
  const T* a = A;
  int a_ld = lda;
  if (trans_a) {
    a_buf.resize(size_t(M) * K);
    pack(true, M, K, A, lda, a_buf.data());
    a = a_buf.data();
    a_ld = K;
  }
  const T* b = B;
  int b_ld = ldb;
  if (trans_b) {
    b_buf.resize(size_t(K) * N);
    pack(true, K, N, B, ldb, b_buf.data());
    b = b_buf.data();
    b_ld = N;
  }

  for (int n0 = 0; n0 < N; n0 += kBlockN) {
    const int n1 = std::min(N, n0 + kBlockN);
    for (int k0 = 0; k0 < K; k0 += kBlockK) {
      const int k1 = std::min(K, k0 + kBlockK);
      for (int i = 0; i < M; ++i) {
        T* __restrict c = C + int64_t(i) * ldc;
        const T* a_row = a + int64_t(i) * a_ld;
        int k = k0;
        // Four rows of B per pass: fewer loads and stores of C per multiply-add.
        for (; k + 4 <= k1; k += 4) {
          const T a0 = alpha * a_row[k], a1 = alpha * a_row[k + 1], a2 = alpha * a_row[k + 2],
                  a3 = alpha * a_row[k + 3];
          const T* __restrict b0 = b + int64_t(k) * b_ld;
          const T* __restrict b1 = b0 + b_ld;
          const T* __restrict b2 = b1 + b_ld;
          const T* __restrict b3 = b2 + b_ld;
#pragma omp simd
          for (int j = n0; j < n1; ++j) c[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
        }
        for (; k < k1; ++k) {
          const T ak = alpha * a_row[k];
          const T* __restrict bk = b + int64_t(k) * b_ld;
#pragma omp simd
          for (int j = n0; j < n1; ++j) c[j] += ak * bk[j];
        }
      }
    }
  }
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float,
                          float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*, int,
                           double, double*, int);

}  // namespace cnn::ops::cpu
