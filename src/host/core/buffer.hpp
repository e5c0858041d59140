#pragma once
// A typed, owning buffer on one device, for the model's planned arenas. Move-only.
#include <cstddef>
#include <utility>

#include "kernels/device_memory.hpp"

namespace cnn {

template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t count, Device device) { reset(count, device); }
  ~Buffer() { memory::release(ptr_, device_); }
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    swap(o);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Reallocates (contents are lost, new memory is zeroed) unless it already fits.
  void reserve(size_t count, Device device) {
    if (count <= count_ && device == device_ && ptr_) return;
    reset(count, device);
  }
  void reset(size_t count, Device device) {
    memory::release(ptr_, device_);
    ptr_ = nullptr;
    device_ = device;
    count_ = count;
    ptr_ = static_cast<T*>(memory::allocate(count * sizeof(T), device));
    memory::set_zero(ptr_, count * sizeof(T), device);
  }
  void zero() { memory::set_zero(ptr_, count_ * sizeof(T), device_); }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return count_; }
  Device device() const { return device_; }

 private:
  void swap(Buffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(count_, o.count_);
    std::swap(device_, o.device_);
  }
  T* ptr_ = nullptr;
  size_t count_ = 0;
  Device device_ = Device::CPU;
};

}  // namespace cnn
