#pragma once
// Rounding an fp32 value to the reduced precisions the tensor cores read, written once for the
// CPU reference (which rounds where the GPU stores or reads the narrow type, so GPU-vs-CPU tests
// compare like with like) and the CUDA kernels. Bit-level, so both sides give the same bits:
//   bf16: 1 sign, 8 exponent, 7 mantissa bits (the top 16 bits of an fp32), round to nearest
//         even, as __float2bfloat16_rn does; NaN stays a (quiet) NaN, +-Inf stays Inf, a value
//         past bf16's largest finite rounds to Inf as IEEE rounding says.
//   tf32: fp32's exponent, 10 mantissa bits (what mma's .tf32 operands keep), round to nearest
//         even (cvt.rna rounds ties away; the kernels that feed tf32 use the even rounding of
//         this function so that CPU and GPU agree to the bit).
// Relative error of one rounding: at most 2^-8 (bf16) and 2^-11 (tf32).
#include <cstdint>
#include <cstring>

#include "kernels/host_device.hpp"

namespace cnn::formulas {

CNN_HOST_DEVICE std::uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

CNN_HOST_DEVICE float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// Keeps the top (32 - dropped_bits) bits of x's fp32 encoding, rounding to nearest even.
CNN_HOST_DEVICE float round_mantissa_to_nearest_even(float x, int dropped_bits) {
  const std::uint32_t u = float_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) {  // Inf or NaN: keep Inf, make NaN quiet
    return (u & 0x007fffffu) ? bits_float(u | 0x00400000u) : x;
  }
  const std::uint32_t half = 1u << (dropped_bits - 1);
  const std::uint32_t lsb = (u >> dropped_bits) & 1u;
  const std::uint32_t mask = ~((1u << dropped_bits) - 1u);
  return bits_float((u + half - 1u + lsb) & mask);
}

// The bf16 value nearest x, as a float (exactly representable in bf16).
CNN_HOST_DEVICE float round_to_bf16(float x) { return round_mantissa_to_nearest_even(x, 16); }

// The bf16 encoding (the top 16 bits) of round_to_bf16(x).
CNN_HOST_DEVICE std::uint16_t bf16_bits(float x) {
  return static_cast<std::uint16_t>(float_bits(round_to_bf16(x)) >> 16);
}

CNN_HOST_DEVICE float bf16_bits_to_float(std::uint16_t b) {
  return bits_float(static_cast<std::uint32_t>(b) << 16);
}

// The tf32 value nearest x, as a float.
CNN_HOST_DEVICE float round_to_tf32(float x) { return round_mantissa_to_nearest_even(x, 13); }

}  // namespace cnn::formulas
