// RankSum's device path by default: through host memory (ops.hpp). cudaMemcpy runs on the
// legacy default stream, which every context's (blocking) stream synchronises with, so the
// copy out waits for the kernels that wrote the values and the kernels queued after the call
// see the copy back.
#include <vector>

#include "kernels/device_memory.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops {

void RankSum::on_device(::cnn::cuda::Context& /*ctx*/, double* values, int count) const {
  std::vector<double> host(static_cast<size_t>(count));
  const size_t bytes = host.size() * sizeof(double);
  memory::copy(host.data(), Device::CPU, values, Device::CUDA, bytes);
  (*this)(host.data(), count);
  memory::copy(values, Device::CUDA, host.data(), Device::CPU, bytes);
}

}  // namespace cnn::ops
