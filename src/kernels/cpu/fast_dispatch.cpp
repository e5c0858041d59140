// Run-time choice of the fast CPU kernels' instruction set, and their scratch memory.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cnn/error.hpp"
#include "kernels/cpu/fast.hpp"

namespace cnn::ops::cpu::fast {
namespace {

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // GCC's checks include the OS's support for the wider registers (XGETBV).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Generic;
}

Isa from_environment(Isa detected) {
  const char* v = std::getenv("CNN_CPU_ISA");
  if (!v || !*v) return detected;
  Isa want = detected;
  if (!std::strcmp(v, "generic") || !std::strcmp(v, "reference")) want = Isa::Generic;
  else if (!std::strcmp(v, "avx2")) want = Isa::Avx2;
  else if (!std::strcmp(v, "avx512")) want = Isa::Avx512;
  else fail("CNN_CPU_ISA='", v, "' is not one of avx512, avx2, generic");
  return std::min(want, detected);
}

std::atomic<int>& active() {
  static std::atomic<int> level{int(from_environment(detected_isa()))};
  return level;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Generic: break;
  }
  return "generic";
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() { return Isa(active().load(std::memory_order_relaxed)); }

Isa set_isa(Isa isa) {
  const Isa chosen = std::min(isa, detected_isa());
  active().store(int(chosen), std::memory_order_relaxed);
  return chosen;
}

const Kernels* kernels() {
  switch (active_isa()) {
    case Isa::Avx512: return &avx512_kernels();
    case Isa::Avx2: return &avx2_kernels();
    case Isa::Generic: break;
  }
  return nullptr;
}

float* scratch(int slot, size_t count) {
  struct Slots {
    float* ptr[8] = {};
    size_t size[8] = {};
    ~Slots() {
      for (float* p : ptr) std::free(p);
    }
  };
  thread_local Slots slots;
  CNN_CHECK(slot >= 0 && slot < 8, "fast::scratch: slot ", slot, " out of range");
  if (slots.size[slot] < count) {
    // Grow by half again, so a slowly rising size does not reallocate every call.
    const size_t want = std::max(count, slots.size[slot] + slots.size[slot] / 2);
    const size_t bytes = (want * sizeof(float) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    std::free(slots.ptr[slot]);
    slots.ptr[slot] = static_cast<float*>(p);
    slots.size[slot] = want;
  }
  return slots.ptr[slot];
}

}  // namespace cnn::ops::cpu::fast

namespace cnn {
const char* cpu_instruction_set() { return ops::cpu::fast::isa_name(ops::cpu::fast::active_isa()); }
}  // namespace cnn
