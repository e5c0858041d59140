#pragma once
// Raw memory on either device, for Tensor and the model's arenas. Declared here only;
// implemented once per backend: host memory and the choice of backend in
// src/kernels/device_memory.cpp, the CUDA side (a caching allocator) in
// src/kernels/cuda/memory.cu, or in a CPU-only build src/kernels/no_cuda.cpp, which answers
// CUDA requests with "built without CUDA".
#include <cstddef>

#include "cnn/types.hpp"

namespace cnn::memory {

void* allocate(size_t bytes, Device device);  // zero bytes gives nullptr
void release(void* ptr, Device device);
void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void set_zero(void* ptr, size_t bytes, Device device);
// Waits for queued device work (a no-op on the CPU).
void synchronize(Device device);

// CUDA side, implemented in src/kernels/cuda/memory.cu or no_cuda.cpp.
void* cuda_allocate(size_t bytes);
void cuda_release(void* ptr);
void cuda_copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);
void cuda_set_zero(void* ptr, size_t bytes);
void cuda_synchronize();
// Device memory a new allocation could get: the driver's free bytes plus what the caching
// allocator holds unused (0 without a GPU). For error messages, not for planning.
size_t cuda_available_bytes();

}  // namespace cnn::memory
