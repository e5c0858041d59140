#include "kernels/device_memory.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include "cnn/error.hpp"

namespace cnn::memory {

void* allocate(size_t bytes, Device device) {
  if (bytes == 0) return nullptr;
  if (device == Device::CUDA) return cuda_allocate(bytes);
  // 64-byte alignment for AVX-512 loads in the CPU kernels.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) fail("out of host memory: could not allocate ", bytes, " bytes");
  return p;
}

void release(void* ptr, Device device) {
  if (!ptr) return;
  if (device == Device::CUDA) cuda_release(ptr);
  else std::free(ptr);
}

void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::CPU && src_device == Device::CPU) std::memcpy(dst, src, bytes);
  else cuda_copy(dst, dst_device == Device::CUDA, src, src_device == Device::CUDA, bytes);
}

void set_zero(void* ptr, size_t bytes, Device device) {
  if (bytes == 0) return;
  if (device == Device::CPU) std::memset(ptr, 0, bytes);
  else cuda_set_zero(ptr, bytes);
}

void synchronize(Device device) {
  if (device == Device::CUDA) cuda_synchronize();
}

}  // namespace cnn::memory
