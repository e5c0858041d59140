// The copy op on the GPU: an asynchronous device-to-device copy on the context's stream
// (not a kernel: the copy engine does it, and a plain cudaMemcpy would break graph capture).
#include "kernels/cuda/common.cuh"

namespace cnn::ops::cuda {

void copy(Context& ctx, int64_t count, const float* src, float* dst) {
  if (count <= 0 || src == dst) return;
  CNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(count) * sizeof(float), cudaMemcpyDeviceToDevice, ctx.stream));
}

}  // namespace cnn::ops::cuda
