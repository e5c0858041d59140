#pragma once
// Deterministic parallel reduction over a batch: each OpenMP thread sums its static share
// of the samples into its own buffer, and the buffers are added in thread order, so the
// result is bit-identical from run to run (for a given thread count).
#include <omp.h>

#include <algorithm>
#include <vector>

namespace cnn::ops::cpu {

// body(sample, partial) adds sample's contribution into `partial` (size elements, zeroed).
template <class T, class Body>
void reduce_over_batch(int n, size_t size, T* out, Body body) {
  const int threads = std::max(1, std::min(n, omp_get_max_threads()));
  std::vector<std::vector<T>> partial(size_t(threads), std::vector<T>(size, T(0)));
#pragma omp parallel for schedule(static, 1) num_threads(threads)
  for (int t = 0; t < threads; ++t) {
    const int begin = int(int64_t(n) * t / threads), end = int(int64_t(n) * (t + 1) / threads);
    for (int i = begin; i < end; ++i) body(i, partial[size_t(t)].data());
  }
  std::fill(out, out + size, T(0));
  for (const auto& p : partial)
    for (size_t j = 0; j < size; ++j) out[j] += p[j];
}

}  // namespace cnn::ops::cpu
