// Global average and max pooling on the CPU: x [n, c, hw] -> y [n, c], one plane per item.
#include <algorithm>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

// Index of the first maximum of v[0, count) (strict > keeps the first).
template <class T>
int first_max(const T* v, int count) {
  int best = 0;
  for (int j = 1; j < count; ++j)
    if (v[j] > v[best]) best = j;
  return best;
}

template <class Body>
void for_planes(int n, int c, int hw, Body body) {
  const int64_t planes = int64_t(n) * c;
  parallel_for(planes, threads_for(planes, 2.0 * hw), body);
}

}  // namespace

template <class T>
void global_avgpool_forward(int n, int c, int hw, const T* x, T* y) {
  if (hw <= 0) return;
  for_planes(n, c, hw, [&](int64_t p) {
    const T* v = x + p * hw;
    T sum = 0;
    for (int j = 0; j < hw; ++j) sum += v[j];
    y[p] = sum / T(hw);
  });
}

template <class T>
void global_avgpool_backward(int n, int c, int hw, const T* dy, T* dx) {
  if (hw <= 0) return;
  for_planes(n, c, hw, [&](int64_t p) { std::fill(dx + p * hw, dx + (p + 1) * hw, dy[p] / T(hw)); });
}

template <class T>
void global_maxpool_forward(int n, int c, int hw, const T* x, T* y) {
  if (hw <= 0) return;
  for_planes(n, c, hw, [&](int64_t p) {
    const T* v = x + p * hw;
    y[p] = v[first_max(v, hw)];
  });
}

template <class T>
void global_maxpool_backward(int n, int c, int hw, const T* x, const T* dy, T* dx) {
  if (hw <= 0) return;
  for_planes(n, c, hw, [&](int64_t p) {
    T* d = dx + p * hw;
    std::fill(d, d + hw, T(0));
    d[first_max(x + p * hw, hw)] = dy[p];
  });
}

#define CNN_INSTANTIATE(T)                                                                  \
  template void global_avgpool_forward<T>(int, int, int, const T*, T*);                   \
  template void global_avgpool_backward<T>(int, int, int, const T*, T*);                  \
  template void global_maxpool_forward<T>(int, int, int, const T*, T*);                   \
  template void global_maxpool_backward<T>(int, int, int, const T*, const T*, T*);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
