#pragma once
// The convolution tuning table (CNN_CUDA_CONV_KERNELS=tune): for each GPU model, convolution
// pass and shape, the candidate kernels' measured times and the one kept, as cuDNN's benchmark
// mode keeps its choices. The CUDA backend fills it (src/kernels/cuda/conv_tuner.cu); here is
// what does not need a GPU: the keys, the kernel names parsed once, and the file format, so a
// tuning can be saved, read back and reused for a reproducible run.
//
// File format (text, one entry a line, '#' starts a comment):
//   <gpu model> | <pass> | <shape> | <kernel kept> | <candidate>=<ms or "wrong"> ...
//   NVIDIA H200 | forward | n128 c3 32x32 k6 5x5 s1x1 p0x0 o28x28 | direct | gemm=0.0213 direct=0.0112
// A shape is written by conv_shape_text and read back by parse_conv_shape_text; a candidate
// "wrong" disagreed with the general kernel and was never kept.
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/ops.hpp"

namespace cnn::ops {

enum class ConvPass { Forward, BackwardInput, BackwardParams };
std::string_view to_string(ConvPass pass);  // "forward" | "backward_input" | "backward_params"

// The kernels a pass may run: the implicit GEMM (every shape), the direct kernels (forward and
// input gradient, c_in <= 8) and the split-K weight gradient (conv2d_fast.cuh's rules).
enum class ConvKernel { Gemm, Direct, SplitK };
std::string_view to_string(ConvKernel kernel);  // "gemm" | "direct" | "split_k"
bool pass_has_kernel(ConvPass pass, ConvKernel kernel);

std::string conv_shape_text(const Conv2DShape& s);
bool same_conv_shape(const Conv2DShape& a, const Conv2DShape& b);

struct ConvCandidateTime {
  ConvKernel kernel = ConvKernel::Gemm;
  double ms = NAN;   // the fastest of the timed runs
  bool correct = true;  // agreed with the implicit GEMM's output
};

struct ConvTuningEntry {
  std::string gpu;  // cudaDeviceProp::name
  ConvPass pass = ConvPass::Forward;
  Conv2DShape shape;
  ConvKernel kept = ConvKernel::Gemm;
  std::vector<ConvCandidateTime> candidates;
};

class ConvTuningTable {
 public:
  const ConvTuningEntry* find(std::string_view gpu, ConvPass pass, const Conv2DShape& shape) const;
  // Adds the entry, or replaces the one with the same GPU, pass and shape.
  void record(ConvTuningEntry entry);
  const std::vector<ConvTuningEntry>& entries() const { return entries_; }
  void clear() { entries_.clear(); }

  std::string to_text() const;
  // Throws cnn::Error naming `source` and the line for anything it cannot read exactly.
  static ConvTuningTable parse(std::string_view text, const std::string& source);

 private:
  std::vector<ConvTuningEntry> entries_;
};

// The table for people: one row per entry, the candidates' times, the kept kernel marked.
std::string conv_tuning_report(const ConvTuningTable& table);

}  // namespace cnn::ops
