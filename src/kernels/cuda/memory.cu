// Device memory: a caching allocator over cudaMalloc, plus copies and zeroing.
//
// cudaMalloc and cudaFree are slow and cudaFree synchronises the whole device, so
// released blocks go onto a free list keyed by size class and are handed out again;
// after the first training step no call reaches the driver. Size classes: multiples of
// 512 B up to 1 MiB, above that quarter steps between powers of two (at most 25% waste).
//
// Reuse is safe for work ordered with the legacy default stream: kernels on a context's
// (blocking) stream and the cudaMemcpy/cudaMemset calls below. A block released while a
// kernel on that stream still reads it is only reused by later work on the same
// ordering. (Two contexts driven from different threads would need per-stream pools.)
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cnn/error.hpp"
#include "kernels/cuda/context.cuh"
#include "kernels/device_memory.hpp"

namespace cnn::memory {
namespace {

constexpr size_t kSmallLimit = size_t(1) << 20;
constexpr size_t kSmallStep = 512;

size_t size_class(size_t bytes) {
  if (bytes <= kSmallLimit) return (bytes + kSmallStep - 1) / kSmallStep * kSmallStep;
  const size_t step = std::bit_floor(bytes) / 4;  // bytes in [p, 2p): classes p, 1.25p, ..., 2p
  return (bytes + step - 1) / step * step;
}

double mib(size_t bytes) { return double(bytes) / double(1 << 20); }

class CachingAllocator {
 public:
  void* allocate(size_t bytes) {
    CNN_CHECK(bytes <= (SIZE_MAX >> 2), "CUDA out of memory: cannot allocate ", bytes, " bytes");
    const size_t cls = size_class(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(cls);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= cls;
      hand_out(p, cls);
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, cls);
    if (err == cudaErrorMemoryAllocation && cached_bytes_ > 0) {
      // Blocks of other sizes may be holding the memory: give them back and retry.
      (void)cudaGetLastError();
      free_cache_locked();
      err = cudaMalloc(&p, cls);
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // a failed cudaMalloc must not resurface at the next launch check
      size_t free_bytes = 0, total_bytes = 0;
      const bool have_info = cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess;
      (void)cudaGetLastError();
      if (err == cudaErrorMemoryAllocation) {
        if (have_info)
          fail("CUDA out of memory: could not allocate ", bytes, " bytes (", mib(bytes), " MiB); the GPU has ",
               free_bytes, " bytes (", mib(free_bytes), " MiB) free of ", total_bytes, " bytes (",
               mib(total_bytes), " MiB)");
        fail("CUDA out of memory: could not allocate ", bytes, " bytes (", mib(bytes), " MiB)");
      }
      fail("CUDA error: cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorName(err), " (",
           cudaGetErrorString(err), ")");
    }
    hand_out(p, cls);
    return p;
  }

  // Bytes handed out now and at most since the last reset (in size classes: what the blocks hold).
  size_t peak_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_bytes_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_bytes_ = in_use_bytes_;
  }

  size_t available_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      (void)cudaGetLastError();
      return cached_bytes_;
    }
    return free_bytes + cached_bytes_;
  }

  void release(void* ptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = in_use_.find(ptr);
    if (it == in_use_.end()) {
      // Called from destructors, so it cannot throw; this is a bug in the caller.
      std::fprintf(stderr, "cnn: cuda_release of %p, which the CUDA allocator did not hand out; ignored\n", ptr);
      return;
    }
    free_[it->second].push_back(ptr);
    cached_bytes_ += it->second;
    in_use_bytes_ -= it->second;
    in_use_.erase(it);
  }

 private:
  void hand_out(void* p, size_t cls) {
    in_use_.emplace(p, cls);
    in_use_bytes_ += cls;
    peak_bytes_ = std::max(peak_bytes_, in_use_bytes_);
  }
  void free_cache_locked() {
    for (auto& [cls, blocks] : free_)
      for (void* p : blocks) (void)cudaFree(p);
    free_.clear();
    cached_bytes_ = 0;
    (void)cudaGetLastError();
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> cached blocks
  std::unordered_map<void*, size_t> in_use_;             // handed-out block -> its size class
  size_t cached_bytes_ = 0;
  size_t in_use_bytes_ = 0, peak_bytes_ = 0;
};

// Never destroyed: tensors with static storage may be released after static destructors
// have run, and the driver reclaims everything at exit anyway.
CachingAllocator& allocator() {
  static CachingAllocator* instance = new CachingAllocator;
  return *instance;
}

}  // namespace

void* cuda_allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  return allocator().allocate(bytes);
}

void cuda_release(void* ptr) {
  if (ptr) allocator().release(ptr);
}

}  // namespace cnn::memory

namespace cnn {
size_t cuda_memory_peak_bytes() { return memory::allocator().peak_bytes(); }
void cuda_memory_reset_peak() { memory::allocator().reset_peak(); }
}  // namespace cnn

namespace cnn::memory {

void cuda_copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  if (bytes == 0) return;
  const cudaMemcpyKind kind = dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                            : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  CNN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
}

void cuda_set_zero(void* ptr, size_t bytes) {
  if (bytes == 0) return;
  CNN_CUDA_CHECK(cudaMemset(ptr, 0, bytes));
}

size_t cuda_available_bytes() { return allocator().available_bytes(); }

void cuda_synchronize() { CNN_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace cnn::memory
