#pragma once
// The one GPU-vs-CPU comparison behind every GPU op test.
//
//   OpCheck op(ctx(), seed);
//   const int x = op.input("x", count);            // seeded uniform values, exactly representable in float
//   const int y = op.output("y", count);           // poisoned with NaN before the GPU op runs
//   op.run([&](auto& d) { ops::cuda::some_op(ctx(), ..., d[x], d[y]); },     // d[...]: float* on the device
//          [&](auto& h) { ops::cpu::some_op<double>(..., h[x], h[y]); });    // h[...]: double* on the host
//
// run() uploads every buffer, fills every output with NaN (so an element the kernel never
// writes shows up as non-finite), runs the CUDA op and waits for it, downloads, runs the
// CPU reference in double on the very same (float) values, and compares each output and
// in-out buffer by the normwise relative error ||gpu - ref|| / ||ref||.
//
// Tolerance: 1e-5 by default. The reference is computed in double, so the error measured
// is the GPU's own float rounding: about 2^-24 per operation, growing like the square root
// of the length of a reduction for random-signed data, i.e. ~1e-7 to ~1e-6 for the sums in
// these tests (the longest are ~16k terms). A wrong index or a missing term gives O(1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "cnn/error.hpp"
#include "cnn/rng.hpp"
#include "cnn/types.hpp"
#include "kernels/device_memory.hpp"
#include "kernels/ops.hpp"

namespace cnn::gputest {

inline constexpr double kDefaultTolerance = 1e-5;

// The tensor-core convolutions (bf16 and tf32) against a reference on the same rounded
// operands, for a reduction of `reduction_length` terms: 32 sqrt(L) 2^-24 normwise, at least
// 1e-5 (test_gpu_conv_mma.cpp derives it).
inline double bf16_tolerance(int64_t reduction_length) {
  return std::max(1e-5, 32.0 * std::sqrt(double(reduction_length)) * 0x1p-24);
}

// ||a - b|| / ||b||: how far a whole result (a model's parameters, its predictions) is from
// the reference b.
inline double relative(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(b[i]) * b[i];
  }
  return std::sqrt(d / std::max(n, 1e-300));
}

// One convolution configuration of a parameterised test, named for gtest.
struct ConvCase {
  const char* name;
  int n, c_in, h, w, c_out, k_h, k_w, s_h, s_w;
  Padding padding;
};

inline ops::Conv2DShape shape_of(const ConvCase& c) {
  return ops::Conv2DShape::make(c.n, c.c_in, c.h, c.w, c.c_out, c.k_h, c.k_w, c.s_h, c.s_w, c.padding);
}

// Every GPU test runs with its own context, or is skipped with the reason there is none.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
    ctx_ = cuda::create_context();
  }
  void TearDown() override {
    if (ctx_) cuda::destroy_context(ctx_);
    ctx_ = nullptr;
  }
  cuda::Context& ctx() { return *ctx_; }

 private:
  cuda::Context* ctx_ = nullptr;
};

// Device memory through the library's own allocator, released on scope exit.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : ptr_(memory::allocate(bytes, Device::CUDA)), bytes_(bytes) {}
  ~DeviceBuffer() { memory::release(ptr_, Device::CUDA); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

  template <class T>
  void upload(const std::vector<T>& values) {
    ASSERT_EQ(values.size() * sizeof(T), bytes_);
    memory::copy(ptr_, Device::CUDA, values.data(), Device::CPU, bytes_);
  }
  template <class T>
  std::vector<T> download() const {
    std::vector<T> out(bytes_ / sizeof(T));
    memory::copy(out.data(), Device::CPU, ptr_, Device::CUDA, bytes_);
    return out;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

enum class Role { In, Out, InOut };
enum class Type { F32, I32, F64 };

// The buffers as one side sees them: T = float on the device, double on the host.
// Float buffers are T*, label buffers int32_t*, accumulator buffers double* on both sides.
template <class T>
class Buffers {
 public:
  T* operator[](int id) const { return static_cast<T*>(at(id, Type::F32)); }
  int32_t* labels(int id) const { return static_cast<int32_t*>(at(id, Type::I32)); }
  double* f64(int id) const { return static_cast<double*>(at(id, Type::F64)); }

  std::vector<void*> ptrs;
  std::vector<Type> types;

 private:
  void* at(int id, Type type) const {
    if (id < 0 || size_t(id) >= ptrs.size() || types[size_t(id)] != type)
      fail("gpu_compare: buffer ", id, " used with the wrong type");
    return ptrs[size_t(id)];
  }
};

struct DiffReport {
  double relative = 0, max_abs = 0;
  size_t worst = 0, non_finite = 0, first_non_finite = 0, unexpected = 0, first_unexpected = 0;
};

// ||gpu - ref|| / ||ref|| over the elements where the reference is finite (plain
// ||gpu - ref|| when the reference is all zeros); how many of those the GPU left NaN/inf
// (unwritten outputs stay NaN); and how many elements the GPU wrote where the reference is
// NaN, i.e. where the op must leave the buffer untouched.
inline DiffReport compare_values(const std::vector<double>& gpu, const std::vector<double>& ref) {
  DiffReport r;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(ref[i])) {
      if (std::isfinite(gpu[i]) && r.unexpected++ == 0) r.first_unexpected = i;
      continue;
    }
    if (!std::isfinite(gpu[i])) {
      if (r.non_finite++ == 0) r.first_non_finite = i;
      continue;
    }
    const double d = gpu[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
    if (std::abs(d) > r.max_abs) {
      r.max_abs = std::abs(d);
      r.worst = i;
    }
  }
  r.relative = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return r;
}

class OpCheck {
 public:
  explicit OpCheck(cuda::Context& ctx, uint64_t seed = 1) : ctx_(ctx), rng_(seed) {}

  // Read-only float input, uniform in [lo, hi), rounded to float so both sides see the same numbers.
  int input(std::string name, int64_t count, double lo = -1, double hi = 1) {
    std::vector<double> v(static_cast<size_t>(count));
    for (auto& x : v) x = double(float(rng_.uniform(lo, hi)));
    return add(std::move(name), Role::In, Type::F32, std::move(v), 0);
  }
  int input(std::string name, const std::vector<float>& values) {
    return add(std::move(name), Role::In, Type::F32, {values.begin(), values.end()}, 0);
  }
  int labels(std::string name, const std::vector<int32_t>& values) {
    return add(std::move(name), Role::In, Type::I32, {values.begin(), values.end()}, 0);
  }
  // Written by the op; NaN before it runs.
  int output(std::string name, int64_t count, double tol = kDefaultTolerance) {
    return add(std::move(name), Role::Out, Type::F32, std::vector<double>(size_t(count), std::nan("")), tol);
  }
  // Read and updated in place (optimizer state, metric accumulators).
  int state(std::string name, const std::vector<float>& initial, double tol = kDefaultTolerance) {
    return add(std::move(name), Role::InOut, Type::F32, {initial.begin(), initial.end()}, tol);
  }
  int state_f64(std::string name, const std::vector<double>& initial, double tol) {
    return add(std::move(name), Role::InOut, Type::F64, initial, tol);
  }

  // Random values for state buffers and hand-made inputs, from the same seeded stream.
  std::vector<float> random(int64_t count, double lo = -1, double hi = 1) {
    std::vector<float> v(static_cast<size_t>(count));
    for (auto& x : v) x = float(rng_.uniform(lo, hi));
    return v;
  }
  Rng& rng() { return rng_; }

  // Ref is the reference's scalar type: double by default; float where the op's float
  // semantics differ from its double ones (say so at the call).
  template <class Ref = double, class GpuOp, class CpuOp>
  void run(GpuOp&& gpu, CpuOp&& cpu) {
    // Device side.
    std::vector<DeviceBuffer> device;
    Buffers<float> d;
    for (const Buffer& b : buffers_) {
      device.emplace_back(b.values.size() * size_of(b.type));
      switch (b.type) {
        case Type::F32: device.back().upload(std::vector<float>(b.values.begin(), b.values.end())); break;
        case Type::I32: device.back().upload(std::vector<int32_t>(b.values.begin(), b.values.end())); break;
        case Type::F64: device.back().upload(b.values); break;
      }
      d.ptrs.push_back(device.back().get());
      d.types.push_back(b.type);
    }
    gpu(d);
    cuda::synchronize(ctx_);

    // Reference side, on the same values.
    std::vector<std::vector<Ref>> host_f;
    std::vector<std::vector<double>> host_d;
    std::vector<std::vector<int32_t>> host_i;
    Buffers<Ref> h;
    for (const Buffer& b : buffers_) {
      switch (b.type) {
        case Type::F32: host_f.emplace_back(b.values.begin(), b.values.end()); h.ptrs.push_back(host_f.back().data()); break;
        case Type::I32: host_i.emplace_back(b.values.begin(), b.values.end()); h.ptrs.push_back(host_i.back().data()); break;
        case Type::F64: host_d.push_back(b.values); h.ptrs.push_back(host_d.back().data()); break;
      }
      h.types.push_back(b.type);
    }
    cpu(h);

    for (size_t i = 0; i < buffers_.size(); ++i) {
      const Buffer& b = buffers_[i];
      if (b.role == Role::In) continue;
      std::vector<double> got;
      if (b.type == Type::F32) {
        const auto f = device[i].download<float>();
        got.assign(f.begin(), f.end());
      } else {
        got = device[i].download<double>();
      }
      std::vector<double> ref(b.values.size());
      for (size_t j = 0; j < ref.size(); ++j)
        ref[j] = b.type == Type::F32 ? double(static_cast<const Ref*>(h.ptrs[i])[j]) : static_cast<const double*>(h.ptrs[i])[j];
      const DiffReport r = compare_values(got, ref);
      if (std::getenv("CNN_GPU_COMPARE_VERBOSE"))  // shows the margin below each tolerance
        std::printf("  [compare] %-20s relative error %.3g (tolerance %.3g), max abs %.3g\n", b.name.c_str(), r.relative,
                    b.tol, r.max_abs);
      EXPECT_EQ(r.non_finite, 0u) << b.name << ": " << r.non_finite << " of " << ref.size()
                                  << " GPU values are NaN/inf (never written?), first at " << r.first_non_finite;
      EXPECT_EQ(r.unexpected, 0u) << b.name << ": " << r.unexpected << " elements written that must stay untouched, first at "
                                  << r.first_unexpected;
      EXPECT_LE(r.relative, b.tol) << b.name << ": relative error " << r.relative << " (tolerance " << b.tol
                                   << "), max abs error " << r.max_abs << " at element " << r.worst << ": GPU "
                                   << got[r.worst] << " vs reference " << ref[r.worst];
    }
  }

 private:
  struct Buffer {
    std::string name;
    Role role;
    Type type;
    std::vector<double> values;  // inputs and initial states; NaN for outputs
    double tol;
  };

  static size_t size_of(Type t) { return t == Type::F32 ? sizeof(float) : t == Type::I32 ? sizeof(int32_t) : sizeof(double); }

  int add(std::string name, Role role, Type type, std::vector<double> values, double tol) {
    CNN_CHECK(!values.empty(), "gpu_compare: buffer ", name, " is empty");
    buffers_.push_back({std::move(name), role, type, std::move(values), tol});
    return int(buffers_.size() - 1);
  }

  cuda::Context& ctx_;
  Rng rng_;
  std::vector<Buffer> buffers_;
};

}  // namespace cnn::gputest
