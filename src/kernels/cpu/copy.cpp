// The copy op on the CPU.
#include <cstring>

#include "kernels/ops.hpp"

namespace cnn::ops::cpu {

template <class T>
void copy(int64_t count, const T* src, T* dst) {
  if (count <= 0 || src == dst) return;
  std::memcpy(dst, src, size_t(count) * sizeof(T));
}

template void copy<float>(int64_t, const float*, float*);
template void copy<double>(int64_t, const double*, double*);

}  // namespace cnn::ops::cpu
