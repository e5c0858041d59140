#pragma once
// Data-parallel training's plumbing (docs/DISTRIBUTED.md): the communicator fit exchanges
// weights, gradients and metrics through (MPI's world when built with CNN_WITH_MPI; one rank
// with nothing to exchange otherwise), how an epoch is split between the ranks, and the
// start-up check that every rank runs the same thing.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cnn/distributed.hpp"
#include "cnn/types.hpp"
#include "kernels/ops.hpp"

namespace cnn::cuda {
struct Context;
struct NcclComm;
}  // namespace cnn::cuda

namespace cnn::distributed {

// As an ops::RankSum, allreduce_sum: synchronised BatchNormalization's statistics.
class Communicator final : public ops::RankSum {
 public:
  int rank = 0, size = 1;

  void operator()(double* values, int count) const override { allreduce_sum(values, count); }
  // A CUDA rank's statistics: NCCL when built with it (in order with the gradient buckets:
  // nccl_allreduce_sum), otherwise through host memory and MPI.
  void on_device(cuda::Context& ctx, double* values, int count) const override;

  // rank 0's `count` values into every rank's `data` (on device d).
  void broadcast(float* data, int64_t count, Device d) const;
  // data <- (sum over ranks of local_weight x data) / size, on every rank. With every weight
  // 1 this is the mean of the ranks' gradients; fit passes rows_r x size / rows_step so that
  // ranks with unequal row counts still give the mean over all the step's rows. CUDA data
  // with `ctx` and NCCL built: NCCL on ctx's stream (no host synchronisation; the NCCL
  // communicator is made at the first such call, which every rank makes); otherwise through
  // host memory and MPI.
  void allreduce_mean(float* data, int64_t count, Device d, float local_weight, cuda::Context* ctx = nullptr) const;
  // allreduce_mean of one bucket of the gradients, started now and complete after
  // finish_buckets() (every rank starts the same buckets in the same order). CPU data:
  // MPI_Iallreduce, so the reduction runs while backward computes the next bucket. CUDA data
  // with NCCL: on the communicator's own stream after an event on ctx's, so it overlaps the
  // kernels of the next bucket; finish_buckets makes ctx's stream wait (no host sync). CUDA
  // without NCCL: allreduce_mean at once, through host memory.
  void start_bucket(float* data, int64_t count, Device d, float local_weight, cuda::Context* ctx = nullptr) const;
  void finish_buckets() const;
  // Sums of host doubles (metrics) over the ranks, in place.
  void allreduce_sum(double* data, int count) const;
  // Every rank's `count` values, rank after rank.
  std::vector<uint64_t> allgather(const uint64_t* data, int count) const;
  void barrier() const;

 private:
  mutable cuda::NcclComm* nccl_ = nullptr;
  cuda::NcclComm& nccl() const;  // made at the first use, which every rank makes
  struct InFlight;  // the CPU buckets started and their MPI requests (distributed.cpp)
  mutable std::shared_ptr<InFlight> in_flight_;
};

// The world communicator (initialising MPI when it is used: see cnn/distributed.hpp).
const Communicator& world();

// How fit splits every epoch's shuffled order between `ranks` ranks of `batch` rows each:
// step s covers the global batch order[s G, (s + 1) G), G = ranks x batch, and rank r takes
// the r-th of `ranks` contiguous, near-equal slices of it, so one rank at batch G trains on
// exactly the union of the ranks' rows. A last global batch with fewer rows than ranks joins
// the step before it (no rank is ever left without rows). With one rank these are fit's
// usual batches: step s is rows [s batch, min((s + 1) batch, rows)).
class EpochShards {
 public:
  EpochShards(int64_t rows, int batch, int ranks);
  int steps() const { return steps_; }
  // The step's rows of the epoch order: [first, first + count).
  struct Range {
    int64_t first = 0, count = 0;
  };
  Range step_rows(int step) const;
  Range rank_rows(int step, int rank) const;
  // The most rows one rank trains on in one step (the arena's batch).
  int max_rows() const { return max_rows_; }
  // rank_rows.count x ranks / step_rows.count: 1 when the step splits evenly.
  float gradient_weight(int step, int rank) const;

 private:
  int64_t rows_, global_;
  int ranks_, steps_, max_rows_;
};

// Fails, on every rank alike, when a rank's `fields` (name, value) differ from rank 0's,
// naming the first such rank and field with both values.
void check_agreement(const Communicator& c, const std::vector<std::pair<std::string, uint64_t>>& fields,
                     const char* what);

// FNV-1a of a string (the model's layer configuration, for check_agreement).
uint64_t fingerprint(const std::string& text);

}  // namespace cnn::distributed
