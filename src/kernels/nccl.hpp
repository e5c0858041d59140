#pragma once
// NCCL between GPU ranks, one GPU per rank (docs/DISTRIBUTED.md): data-parallel fit
// all-reduces a CUDA model's gradients with it on the model's stream, without a host
// synchronisation. Built when the CUDA backend and NCCL are both found (CNN_WITH_NCCL); the
// communicator is bootstrapped by the caller, which broadcasts rank 0's unique id over MPI.
#include <cstddef>
#include <cstdint>

#include "kernels/ops.hpp"

namespace cnn::cuda {

struct NcclComm;
constexpr size_t kNcclIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES (checked where nccl.h is seen)

// Rank 0: a fresh unique id for nccl_create.
void nccl_unique_id(unsigned char* id);
// This rank's communicator of `size` ranks on the current device (collective: every rank).
NcclComm* nccl_create(const unsigned char* id, int rank, int size);
void nccl_destroy(NcclComm* comm);
// data <- (sum over ranks of local_weight x data) / size, queued on ctx's stream.
void nccl_allreduce_mean(NcclComm& comm, Context& ctx, float* data, int64_t count, float local_weight);
// Makes GPU (index mod the GPU count) current: a GPU rank's device by its local rank.
void select_device(int index);

}  // namespace cnn::cuda
