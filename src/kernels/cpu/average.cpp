// Weight averaging on the CPU: a += t (b - a).
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {

template <class T>
void lerp(int64_t count, T* a, const T* b, T t) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) a[i] += t * (b[i] - a[i]);
}

template void lerp<float>(int64_t, float*, const float*, float);
template void lerp<double>(int64_t, double*, const double*, double);

}  // namespace cnn::ops::cpu
