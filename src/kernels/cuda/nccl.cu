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
  // The bucket stream (blocking, as the context's: ordered with the legacy default stream the
  // allocator relies on) and the events that order it against the context's stream.
  cudaStream_t buckets = nullptr;
  cudaEvent_t ready = nullptr, done = nullptr;
  bool started = false;  // a bucket was queued since the last join
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
  if (comm->buckets) (void)cudaStreamDestroy(comm->buckets);
  if (comm->ready) (void)cudaEventDestroy(comm->ready);
  if (comm->done) (void)cudaEventDestroy(comm->done);
  delete comm;
}

namespace {
void allreduce_mean_on(NcclComm& comm, const Context& ctx, cudaStream_t stream, float* data, int64_t count,
                       float local_weight) {
  if (local_weight != 1.0f) {
    const int blocks = int(std::min<int64_t>((count + 255) / 256, int64_t(ctx.sm_count) * 8));
    scale_kernel<<<blocks, 256, 0, stream>>>(data, count, local_weight);
    CNN_CUDA_CHECK_LAUNCH("scale_kernel");
  }
  // ncclAvg: the sum over the ranks divided by their number, in one pass.
  check_nccl(ncclAllReduce(data, data, size_t(count), ncclFloat32, ncclAvg, comm.comm, stream), "ncclAllReduce");
}
}  // namespace

void nccl_allreduce_mean(NcclComm& comm, Context& ctx, float* data, int64_t count, float local_weight) {
  if (count == 0) return;
  allreduce_mean_on(comm, ctx, ctx.stream, data, count, local_weight);
}

namespace {
// The bucket stream, waiting for what ctx's stream has queued so far.
cudaStream_t bucket_stream_after(NcclComm& comm, Context& ctx) {
  if (!comm.buckets) {
    CNN_CUDA_CHECK(cudaStreamCreate(&comm.buckets));
    CNN_CUDA_CHECK(cudaEventCreateWithFlags(&comm.ready, cudaEventDisableTiming));
    CNN_CUDA_CHECK(cudaEventCreateWithFlags(&comm.done, cudaEventDisableTiming));
  }
  CNN_CUDA_CHECK(cudaEventRecord(comm.ready, ctx.stream));
  CNN_CUDA_CHECK(cudaStreamWaitEvent(comm.buckets, comm.ready, 0));
  return comm.buckets;
}
}  // namespace

void nccl_start_bucket(NcclComm& comm, Context& ctx, float* data, int64_t count, float local_weight) {
  if (count == 0) return;
  // The bucket's gradients are written by the kernels queued on ctx's stream so far.
  allreduce_mean_on(comm, ctx, bucket_stream_after(comm, ctx), data, count, local_weight);
  comm.started = true;
}

void nccl_allreduce_sum(NcclComm& comm, Context& ctx, double* values, int64_t count) {
  if (count == 0) return;
  const cudaStream_t s = bucket_stream_after(comm, ctx);
  check_nccl(ncclAllReduce(values, values, size_t(count), ncclFloat64, ncclSum, comm.comm, s), "ncclAllReduce");
  CNN_CUDA_CHECK(cudaEventRecord(comm.done, s));
  CNN_CUDA_CHECK(cudaStreamWaitEvent(ctx.stream, comm.done, 0));
}

void nccl_join_buckets(NcclComm& comm, Context& ctx) {
  if (!comm.started) return;
  CNN_CUDA_CHECK(cudaEventRecord(comm.done, comm.buckets));
  CNN_CUDA_CHECK(cudaStreamWaitEvent(ctx.stream, comm.done, 0));
  comm.started = false;
}

}  // namespace cnn::cuda
#endif
