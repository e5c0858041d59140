// The fast kernels (fast_kernels.inc) compiled for AVX2 with FMA (no AVX-512). Only reached
// through fast::kernels() after the run-time check in fast_dispatch.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/fast.hpp"
#include "kernels/formulas/activation.hpp"  // before the target pragma: see fast_kernels.inc

namespace cnn::ops::cpu::fast {

#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2,f16c")
namespace {

struct V {
  using reg = __m256;
  using mask = __m256i;
  static constexpr int W = 8;
  // Broadcast kernel: MR rows x (12 / MR) vectors of accumulators (of 16 registers).
  static constexpr int kBcastAcc = 12;
  static constexpr int kMr[3] = {6, 4, 3};
  // Dot kernel: 3 x 4 accumulators.
  static constexpr int kDotM = 3, kDotN = 4;

  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  // vmaskmovps does not fault on masked-off lanes.
  static reg maskz_loadu(mask m, const float* p) { return _mm256_maskload_ps(p, m); }
  static void storeu(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static void mask_storeu(float* p, mask m, reg v) { _mm256_maskstore_ps(p, m, v); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static mask lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static mask lanes_between(int lo, int hi) { return _mm256_andnot_si256(lanes(lo), lanes(hi)); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  // max(a, b) as `a > b ? a : b` (b when unordered), like the reference's compare.
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static mask gt(reg a, reg b) { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
  static reg select(mask m, reg if_true, reg if_false) {
    return _mm256_blendv_ps(if_false, if_true, _mm256_castsi256_ps(m));
  }
  static mask mask_and(mask a, mask b) { return _mm256_and_si256(a, b); }
  static mask mask_not(mask a) { return _mm256_xor_si256(a, _mm256_set1_epi32(-1)); }
  static void deinterleave(reg lo, reg hi, reg& even, reg& odd) {
    const __m256i fix = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    even = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), fix);
    odd = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)), fix);
  }
  static void interleave(reg even, reg odd, reg& lo, reg& hi) {
    const reg a = _mm256_unpacklo_ps(even, odd), b = _mm256_unpackhi_ps(even, odd);
    lo = _mm256_permute2f128_ps(a, b, 0x20);
    hi = _mm256_permute2f128_ps(a, b, 0x31);
  }
  static float hsum(reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

#include "kernels/cpu/fast_kernels.inc"

}  // namespace
#pragma GCC pop_options

const Kernels& avx2_kernels() { return kKernels; }

}  // namespace cnn::ops::cpu::fast
