// CPU-only build: every request for the CUDA backend answers with one clear error.
#include "cnn/error.hpp"
#include "cnn/types.hpp"
#include "kernels/device_memory.hpp"

namespace cnn {

bool built_with_cuda() { return false; }
bool cuda_available() { return false; }
std::string cuda_conv_tuning_report() { return ""; }
int64_t cuda_kernel_launches() { return 0; }
size_t cuda_memory_peak_bytes() { return 0; }
void cuda_memory_reset_peak() {}
std::string cuda_unavailable_reason() {
  return "this build of CNNFromScratch has no CUDA backend (built without CUDA; configure with -DCNN_CUDA=ON)";
}

namespace memory {
[[noreturn]] static void no_cuda() { fail("CUDA device requested, but ", cuda_unavailable_reason()); }
void* cuda_allocate(size_t) { no_cuda(); }
void cuda_release(void*) {}
void cuda_copy(void*, bool, const void*, bool, size_t) { no_cuda(); }
void cuda_set_zero(void*, size_t) { no_cuda(); }
void cuda_synchronize() {}
size_t cuda_available_bytes() { return 0; }
}  // namespace memory

}  // namespace cnn
