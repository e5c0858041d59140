// The fast kernels (fast_kernels.inc) compiled for AVX-512 (F, BW, VL, DQ) with FMA. Only
// reached through fast::kernels() after the run-time check in fast_dispatch.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/fast.hpp"
#include "kernels/formulas/activation.hpp"  // before the target pragma: see fast_kernels.inc

namespace cnn::ops::cpu::fast {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi,bmi2,f16c")
namespace {

struct V {
  using reg = __m512;
  using mask = __mmask16;
  static constexpr int W = 16;
  // Broadcast kernel: MR rows x (24 / MR) vectors of accumulators (of 32 registers).
  static constexpr int kBcastAcc = 24;
  static constexpr int kMr[3] = {8, 6, 4};
  // Dot kernel: 4 x 6 accumulators.
  static constexpr int kDotM = 4, kDotN = 6;

  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  static reg maskz_loadu(mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void storeu(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static void mask_storeu(float* p, mask m, reg v) { _mm512_mask_storeu_ps(p, m, v); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static mask lanes(int n) { return n >= 16 ? mask(0xFFFF) : mask((1u << (n > 0 ? n : 0)) - 1u); }
  static mask lanes_between(int lo, int hi) { return mask(lanes(hi) & ~lanes(lo)); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  // max(a, b) as `a > b ? a : b` (b when unordered), like the reference's compare.
  static reg max(reg a, reg b) { return _mm512_maskz_max_ps(0xFFFF, a, b); }
  // Mask of lanes where a > b (ordered).
  static mask gt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static reg select(mask m, reg if_true, reg if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }
  static mask mask_and(mask a, mask b) { return mask(a & b); }
  static mask mask_not(mask a) { return mask(~a); }
  // Even and odd elements of the 2W floats lo:hi.
  static void deinterleave(reg lo, reg hi, reg& even, reg& odd) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    even = _mm512_permutex2var_ps(lo, ie, hi);
    odd = _mm512_permutex2var_ps(lo, io, hi);
  }
  // The inverse: lo:hi = even[0], odd[0], even[1], odd[1], ...
  static void interleave(reg even, reg odd, reg& lo, reg& hi) {
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    lo = _mm512_permutex2var_ps(even, il, odd);
    hi = _mm512_permutex2var_ps(even, ih, odd);
  }
  static float hsum(reg v) {
    // The maskz forms: the plain ones (and _mm512_reduce_add_ps) start from an "undefined"
    // register that trips GCC 12's -Wuninitialized inside its own header.
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    __m128 s = _mm512_maskz_extractf32x4_ps(0xF, v, 0);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

#include "kernels/cpu/fast_kernels.inc"

}  // namespace
#pragma GCC pop_options

const Kernels& avx512_kernels() { return kKernels; }

}  // namespace cnn::ops::cpu::fast
