#pragma once
// The CUDA execution context and the error checks. With common.cuh (the kernels' device
// helpers, which includes this) it is the only header that names CUDA types; ops.hpp and the
// public headers stay free of them. It holds no device code, so plain C++ (the GPU tests)
// may include it too.
//
// Ordering: the context's stream is created with default flags, i.e. it is a BLOCKING
// stream. Work on it is ordered with the legacy default stream, which is where Tensor
// copies (cudaMemcpy) and zeroing (cudaMemset) run, so a host copy never overtakes a
// kernel queued before it and a kernel never starts before an earlier upload finished.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "kernels/ops.hpp"

namespace cnn::cuda {

// Which convolution kernels a context runs. Default: the implicit-GEMM kernels for every
// shape. Fast: the specialised kernels of conv2d_fast.cuh for the shapes their rules accept
// (the implicit GEMMs for the rest); off by default until a GPU run has validated and
// timed them. Tuned: whichever of those is fastest on this GPU, timed on first use
// (conv_tuner.cuh). Chosen once per context from CNN_CUDA_CONV_KERNELS=default|fast|tune.
enum class ConvKernels { Default, Fast, Tuned };

struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  int device = 0;
  int sm_count = 1;  // multiprocessors, for sizing split reductions
  std::string gpu_name;  // cudaDeviceProp::name: the tuning table's GPU model
  ConvKernels conv_kernels = ConvKernels::Default;
  bool conv_mma = true;  // CNN_CUDA_CONV_MMA (ops.hpp conv_mma_enabled)

  Context() = default;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context();  // releases everything it owns; never throws

  // At least `count` floats of device scratch, valid until the next call (kernels queued
  // on `stream` before that call may still be using the previous buffer, which is why a
  // larger request waits for the stream before it gives the old buffer back).
  float* scratch(size_t count);

  // Pinned staging ring for upload_staging/upload (see ops.hpp).
  struct StagingSlot {
    void* host = nullptr;
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;  // recorded after the slot's last copy
    bool pending = false;
  };
  static constexpr int kStagingSlots = 8;
  StagingSlot staging[kStagingSlots];
  int staging_next = 0, staging_last = -1;

  // Instantiated graphs by key (capture_end / replay).
  std::unordered_map<int64_t, cudaGraphExec_t> graphs;

 private:
  float* scratch_ = nullptr;
  size_t scratch_count_ = 0;
};

namespace detail {
// Both clear CUDA's "last error" before throwing, so a failure that was handled here
// is not reported again by an unrelated later launch check.
[[noreturn]] void cuda_failed(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void cublas_failed(cublasStatus_t status, const char* call, const char* file, int line);
// One more kernel launched (cnn::cuda_kernel_launches counts them for `cnn bench`).
void count_launch();
}  // namespace detail

}  // namespace cnn::cuda

// CNN_CUDA_CHECK(cudaMemcpy(...)) throws cnn::Error naming the call, where it was made and
// CUDA's description of the failure.
#define CNN_CUDA_CHECK(call)                                                                  \
  do {                                                                                        \
    const cudaError_t cnn_cuda_err_ = (call);                                                 \
    if (cnn_cuda_err_ != cudaSuccess)                                                         \
      ::cnn::cuda::detail::cuda_failed(cnn_cuda_err_, #call, __FILE__, __LINE__);             \
  } while (0)

#define CNN_CUBLAS_CHECK(call)                                                                \
  do {                                                                                        \
    const cublasStatus_t cnn_cublas_status_ = (call);                                         \
    if (cnn_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                          \
      ::cnn::cuda::detail::cublas_failed(cnn_cublas_status_, #call, __FILE__, __LINE__);      \
  } while (0)

// After every kernel launch, with the kernel's name as a string literal: reports a bad
// launch configuration (or an earlier asynchronous fault) at the launch that hit it, and
// counts the launch.
#define CNN_CUDA_CHECK_LAUNCH(kernel_name)                                                    \
  do {                                                                                        \
    ::cnn::cuda::detail::count_launch();                                                      \
    const cudaError_t cnn_cuda_err_ = cudaGetLastError();                                     \
    if (cnn_cuda_err_ != cudaSuccess)                                                         \
      ::cnn::cuda::detail::cuda_failed(cnn_cuda_err_, "launch of " kernel_name, __FILE__,     \
                                       __LINE__);                                             \
  } while (0)
