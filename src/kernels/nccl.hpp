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
// The same on the communicator's own stream, after what ctx's stream has queued so far (an
// event, no host synchronisation), so that it overlaps the kernels queued on ctx's stream
// after it: a bucket of gradients reduced while backward computes the next.
// nccl_join_buckets makes ctx's stream wait for every bucket started (before the optimizer).
void nccl_start_bucket(NcclComm& comm, Context& ctx, float* data, int64_t count, float local_weight);
void nccl_join_buckets(NcclComm& comm, Context& ctx);
// values <- their sum over the ranks (synchronised BatchNormalization's statistics), on the
// bucket stream after ctx's work so far, ctx's stream waiting for it: the communicator's
// collectives stay on one stream, so every rank runs them in the order they were issued
// whichever buckets are still in flight.
void nccl_allreduce_sum(NcclComm& comm, Context& ctx, double* values, int64_t count);
// Makes GPU (index mod the GPU count) current: a GPU rank's device by its local rank.
void select_device(int index);

}  // namespace cnn::cuda
