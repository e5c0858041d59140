// NCCL all-reduce of a GPU rank's gradients (kernels/nccl.hpp); the NCCL part only when
// NCCL was found (CNN_WITH_NCCL).
#include <algorithm>

#include "cnn/error.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/nccl.hpp"

namespace cnn::cuda {

void select_device(int index) {
  int devices = 0;
  CNN_CUDA_CHECK(cudaGetDeviceCount(&devices));
  CNN_CHECK(devices > 0, "select_device: no GPU");
  CNN_CUDA_CHECK(cudaSetDevice(index % devices));
}

}  // namespace cnn::cuda

#if CNN_WITH_NCCL
#include <nccl.h>

namespace cnn::cuda {

static_assert(kNcclIdBytes == NCCL_UNIQUE_ID_BYTES, "kernels/nccl.hpp's id size must be NCCL's");

struct NcclComm {
  ncclComm_t comm = nullptr;
};

namespace {

void check_nccl(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) fail("NCCL: ", call, " failed: ", ncclGetErrorString(r));
}

__global__ void scale_kernel(float* data, int64_t count, float factor) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    data[i] *= factor;
}

}  // namespace

void nccl_unique_id(unsigned char* id) {
  ncclUniqueId u;
  check_nccl(ncclGetUniqueId(&u), "ncclGetUniqueId");
  for (size_t i = 0; i < kNcclIdBytes; ++i) id[i] = static_cast<unsigned char>(u.internal[i]);
}

NcclComm* nccl_create(const unsigned char* id, int rank, int size) {
  ncclUniqueId u;
  for (size_t i = 0; i < kNcclIdBytes; ++i) u.internal[i] = static_cast<char>(id[i]);
  auto* c = new NcclComm;
  const ncclResult_t r = ncclCommInitRank(&c->comm, size, u, rank);
  if (r != ncclSuccess) {
    delete c;
    check_nccl(r, "ncclCommInitRank");
  }
  return c;
}

void nccl_destroy(NcclComm* comm) {
  if (!comm) return;
  ncclCommDestroy(comm->comm);
  delete comm;
}

void nccl_allreduce_mean(NcclComm& comm, Context& ctx, float* data, int64_t count, float local_weight) {
  if (count == 0) return;
  if (local_weight != 1.0f) {
    const int blocks = int(std::min<int64_t>((count + 255) / 256, int64_t(ctx.sm_count) * 8));
    scale_kernel<<<blocks, 256, 0, ctx.stream>>>(data, count, local_weight);
    CNN_CUDA_CHECK_LAUNCH("scale_kernel");
  }
  // ncclAvg: the sum over the ranks divided by their number, in one pass.
  check_nccl(ncclAllReduce(data, data, size_t(count), ncclFloat32, ncclAvg, comm.comm, ctx.stream), "ncclAllReduce");
}

}  // namespace cnn::cuda
#endif
