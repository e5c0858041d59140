#pragma once
// The fast float32 CPU path: SIMD kernels for the ops that dominate training time, chosen
// at run time for the instruction set the processor has.
//
//   ops::cpu::<op><float>  ->  fast_kernels()->op(...) when a SIMD level is available and the
//                              op's configuration is supported (the function returns true),
//                              else the readable reference code in the same <op>.cpp.
//   ops::cpu::<op><double> ->  always the reference code (gradient checks).
//
// The kernels are written once (fast_kernels.inc) and compiled twice, for AVX-512 and for
// AVX2+FMA, each in its own translation unit with a `#pragma GCC target` (the build itself
// needs no -march flag). fast_dispatch.cpp picks the level with __builtin_cpu_supports;
// $CNN_CPU_ISA=avx512|avx2|generic lowers it (never above what the CPU has), and tests call
// set_isa() to run every level available.
//
// Design (see docs/PERFORMANCE.md):
//   - stride-1 convolutions run as direct convolutions on "width-flattened" planes: a pixel
//     (oh, ow) of the output is index p = oh * W + ow of a grid as wide as the (padded)
//     input, so the input values a kernel tap needs for 16 consecutive pixels are 16
//     consecutive floats at p + kh * W + kw; no im2col. Forward and input gradient use a
//     register-blocked broadcast kernel (output channels x pixels), the weight gradient a
//     dot-product kernel over pixels. Other strides use the reference code.
//   - dense layers and gemm use the same two micro-kernels on the matrices as they lie.
//   - work is split into items (samples, row blocks, chunks of samples) that the threads of
//     thread_pool.hpp claim; every output element is computed within one item in a fixed
//     order, and the weight-gradient sums over samples are added per fixed chunk of samples
//     and then in chunk order, so results are bit-identical from run to run and for any
//     thread count.
//   - scratch memory is thread-local and only grows: a training step allocates nothing once
//     the first step has run.
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu::fast {

enum class Isa { Generic = 0, Avx2 = 1, Avx512 = 2 };
const char* isa_name(Isa isa);
Isa detected_isa();  // what the processor supports
Isa active_isa();    // what the ops use now (detected, lowered by $CNN_CPU_ISA or set_isa)
// Selects the level the ops use (clamped to detected_isa()); returns the level now active.
Isa set_isa(Isa isa);

// Every function returns false when it does not handle the configuration (the caller then
// runs the reference code) and true when it has written all of its outputs.
struct Kernels {
  bool (*gemm)(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc);
  bool (*conv2d_forward)(const Conv2DShape& s, const float* x, const float* w, const float* bias,
                         ActivationSpec act, float* y);
  bool (*conv2d_backward_input)(const Conv2DShape& s, const float* dy, const float* w, float* dx);
  bool (*conv2d_backward_params)(const Conv2DShape& s, const float* x, const float* dy, float* dw, float* dbias);
  bool (*dense_forward)(int n, int in, int out, const float* x, const float* w, const float* bias,
                        ActivationSpec act, float* y);
  bool (*dense_backward_input)(int n, int in, int out, const float* dy, const float* w, float* dx);
  bool (*dense_backward_params)(int n, int in, int out, const float* x, const float* dy, float* dw, float* dbias);
  bool (*maxpool2d_forward)(const Pool2DShape& s, const float* x, float* y);
  bool (*maxpool2d_backward)(const Pool2DShape& s, const float* x, const float* dy, float* dx);
  bool (*avgpool2d_forward)(const Pool2DShape& s, const float* x, float* y);
  bool (*avgpool2d_backward)(const Pool2DShape& s, const float* dy, float* dx);
};

// The kernels of the active level, or nullptr for Generic.
const Kernels* kernels();

// The per-level tables (defined in fast_avx512.cpp / fast_avx2.cpp).
const Kernels& avx512_kernels();
const Kernels& avx2_kernels();

// Thread-local scratch: slot 0-7 of the calling thread, at least `count` floats, 64-byte
// aligned, contents unspecified. It only grows; the pointer stays valid until the same
// thread asks the same slot for more.
float* scratch(int slot, size_t count);

}  // namespace cnn::ops::cpu::fast
