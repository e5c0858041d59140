// Optimizer updates on the CPU: the per-element formulas of formulas/optimizer.hpp over a flat
// parameter buffer; and their float scalars as bytes for the CUDA updates that read them from
// device memory (ops::OptimizerScalars).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/formulas/optimizer.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

// body(begin, end) over [0, count) in blocks of 16k elements, on the pool when large. The
// bodies capture by value: pointers in locals, which the compiler keeps in registers.
template <class Body>
void elementwise(int64_t count, Body body) {
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  parallel_for(blocks, threads_for(blocks, double(kBlock)), [&](int64_t b) {
    body(b * kBlock, std::min(count, (b + 1) * kBlock));
  });
}

}  // namespace

// The bodies copy the scalars into a local: the compiler keeps them in registers instead of
// reloading them past every store to param.
template <class T>
void sgd_update(int64_t count, T* param, const T* grad, T* velocity, const SgdConfig& cfg) {
  const formulas::SgdScalars<T> scalars = formulas::sgd_scalars<T>(cfg);
  elementwise(count, [=](int64_t begin, int64_t end) {
    const formulas::SgdScalars<T> s = scalars;
    if (velocity) {  // two loops, so the velocity test is not inside one
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) formulas::sgd_update_at(i, param, grad, velocity, s);
    } else {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) formulas::sgd_update_at<T>(i, param, grad, nullptr, s);
    }
  });
}

template <class T>
void adam_update(int64_t count, T* param, const T* grad, T* m, T* v, const AdamConfig& cfg) {
  const formulas::AdamScalars<T> scalars = formulas::adam_scalars<T>(cfg);
  elementwise(count, [=](int64_t begin, int64_t end) {
    const formulas::AdamScalars<T> s = scalars;
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) formulas::adam_update_at(i, param, grad, m, v, s);
  });
}

#define CNN_INSTANTIATE(T)                                                          \
  template void sgd_update<T>(int64_t, T*, const T*, T*, const SgdConfig&);        \
  template void adam_update<T>(int64_t, T*, const T*, T*, T*, const AdamConfig&);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu

namespace cnn::ops {
namespace {
template <class S>
OptimizerScalars as_bytes(const S& s) {
  static_assert(sizeof(S) <= sizeof(OptimizerScalars::bytes) && std::is_trivially_copyable_v<S>);
  OptimizerScalars out{};
  std::memcpy(out.bytes, &s, sizeof s);
  return out;
}
}  // namespace

OptimizerScalars sgd_scalars(const SgdConfig& cfg) { return as_bytes(formulas::sgd_scalars<float>(cfg)); }
OptimizerScalars adam_scalars(const AdamConfig& cfg) { return as_bytes(formulas::adam_scalars<float>(cfg)); }

}  // namespace cnn::ops
