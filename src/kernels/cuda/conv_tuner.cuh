#pragma once
// Letting the GPU choose (CNN_CUDA_CONV_KERNELS=tune), as cuDNN's benchmark mode does: the
// first time a convolution pass meets a shape, every kernel that takes the shape is timed on
// the device and checked against the implicit GEMM, and the fastest correct one is kept for
// that GPU model, pass and shape in the process's tuning table (kernels/conv_tuning.hpp).
// CNN_CUDA_CONV_TUNING_FILE=path reads the table from that file when a tuned context first
// needs it, and writes it back (atomically) after each new entry, so a later run reuses the
// same choices and is reproducible. Host declarations only.
#include <cstdint>
#include <functional>
#include <span>

#include "kernels/conv_tuning.hpp"
#include "kernels/cuda/context.cuh"

namespace cnn::ops::cuda {

using ::cnn::cuda::Context;

struct ConvCandidate {
  ConvKernel kernel = ConvKernel::Gemm;
  std::function<void()> run;  // queues the kernel on the context's stream, writing the outputs
};

// One tensor a pass writes (y; dx; dw and dbias), compared between candidates.
struct ConvOutput {
  float* data = nullptr;  // device; null for an output the pass does not write (no bias)
  int64_t count = 0;
};

// Runs the kept kernel for (this GPU, pass, s); on first sight tunes first. candidates[0]
// must be the implicit GEMM, the reference the others are checked against (max |difference|
// within 1e-3 of the largest |output|: the same sums in another order differ by a few ulps,
// a wrong kernel by whole values). The kept kernel runs last, so the outputs are its own.
// While the stream is being captured into a graph an untuned shape runs the GEMM untimed
// (events cannot be waited for inside a capture) and is tuned on a later eager call.
void run_tuned_conv(Context& ctx, ConvPass pass, const Conv2DShape& s, std::span<const ConvCandidate> candidates,
                    std::span<const ConvOutput> outputs);

// The process's table, shared by every context (tests clear it; `cnn bench --tune` prints it).
ConvTuningTable& conv_tuning_table();

}  // namespace cnn::ops::cuda
