#pragma once
// Deterministic parallel reduction over a batch: the samples are cut into a fixed number of
// chunks (a function of n only), each chunk sums its samples in order into its own buffer,
// and the buffers are added in chunk order, so the result is bit-identical from run to run
// and for any thread count. The chunks run on the CPU thread pool (thread_pool.hpp).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/thread_pool.hpp"

namespace cnn::ops::cpu {

// body(sample, partial) adds sample's contribution into `partial` (size elements, zeroed).
// `work_per_sample` (multiply-adds) decides whether waking helper threads pays.
template <class T, class Body>
void reduce_over_batch(int n, size_t size, T* out, Body body, double work_per_sample = 1e6) {
  const int chunks = std::max(1, std::min(n, 16));
  thread_local std::vector<T> partial;  // reused: no allocation once it has grown
  partial.assign(size_t(chunks) * size, T(0));
  T* parts = partial.data();
  parallel_for(chunks, threads_for(chunks, work_per_sample * n / chunks), [&](int64_t c) {
    const int begin = int(int64_t(n) * c / chunks), end = int(int64_t(n) * (c + 1) / chunks);
    for (int i = begin; i < end; ++i) body(i, parts + size_t(c) * size);
  });
  std::fill(out, out + size, T(0));
  for (int c = 0; c < chunks; ++c)
    for (size_t j = 0; j < size; ++j) out[j] += parts[size_t(c) * size + j];
}

}  // namespace cnn::ops::cpu
