// Inverted dropout and the elementwise scale on the CPU. The mask is a pure function of
// (seed, element index) (src/kernels/random.hpp), so blocks may run on any thread and
// backward recomputes exactly the forward's mask.
#include <algorithm>

#include "cnn/error.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ops.hpp"
#include "kernels/random.hpp"

namespace cnn::ops::cpu {
namespace {

// body(begin, end) over [0, count) in blocks of 16k elements, on the pool when large.
template <class Body>
void blocks_of(int64_t count, double cost, Body body) {
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  parallel_for(blocks, threads_for(blocks, double(kBlock) * cost), [&](int64_t b) {
    body(b * kBlock, std::min(count, (b + 1) * kBlock));
  });
}

void check_rate(float rate, const char* op) {
  CNN_CHECK(rate >= 0.0f && rate < 1.0f, op, ": rate must be in [0, 1), got ", rate);
}

// out[i] = keep(i) ? in[i] / (1 - rate) : 0; in and out may be the same array.
template <class T>
void masked_scale(int64_t count, float rate, uint64_t seed, const T* in, T* out) {
  const uint32_t threshold = random::dropout_threshold(rate);
  const T factor = T(1) / (T(1) - T(rate));
  blocks_of(count, 8.0, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = random::dropout_keep(seed, uint64_t(i), threshold) ? in[i] * factor : T(0);
  });
}

}  // namespace

template <class T>
void dropout_forward(int64_t count, float rate, uint64_t seed, const T* x, T* y) {
  check_rate(rate, "dropout_forward");
  masked_scale(count, rate, seed, x, y);
}

template <class T>
void dropout_backward(int64_t count, float rate, uint64_t seed, const T* dy, T* dx) {
  check_rate(rate, "dropout_backward");
  masked_scale(count, rate, seed, dy, dx);
}

template <class T>
void scale(int64_t count, T alpha, const T* x, T* y) {
  blocks_of(count, 1.0, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = alpha * x[i];
  });
}

#define CNN_INSTANTIATE(T)                                                        \
  template void dropout_forward<T>(int64_t, float, uint64_t, const T*, T*);      \
  template void dropout_backward<T>(int64_t, float, uint64_t, const T*, T*);     \
  template void scale<T>(int64_t, T, const T*, T*);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
