// The precision policy's rounding on the CPU (formulas/precision.hpp has the bit-level rule).
#include <algorithm>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/formulas/precision.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {

void round_to_precision(Precision p, int64_t count, const float* x, float* y) {
  if (count <= 0) return;
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  parallel_for(blocks, threads_for(blocks, double(kBlock)), [&](int64_t b) {
    const int64_t begin = b * kBlock, end = std::min(count, (b + 1) * kBlock);
    switch (p) {
      case Precision::FP32:
        std::copy(x + begin, x + end, y + begin);
        return;
      case Precision::TF32:
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) y[i] = formulas::round_to_tf32(x[i]);
        return;
      case Precision::BF16:
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) y[i] = formulas::round_to_bf16(x[i]);
        return;
    }
  });
}

}  // namespace cnn::ops::cpu
