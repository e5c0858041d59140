// CNN_CUDA_CONV_MMA (ops.hpp parse_conv_mma): parsed here, outside the CUDA sources, so that
// a CPU-only build tests the parser; context.cu reads the variable once per context.
#include <string_view>

#include "cnn/error.hpp"
#include "kernels/ops.hpp"

namespace cnn::cuda {

bool parse_conv_mma(const char* value) {
  if (value == nullptr) return true;
  const std::string_view v(value);
  if (v.empty() || v == "1") return true;
  if (v == "0") return false;
  fail("CNN_CUDA_CONV_MMA must be '1' (the tensor-core convolutions under tf32/bf16, the default) or '0' (the fp32 "
       "kernels on rounded operands), not '",
       value, "'");
}

}  // namespace cnn::cuda
