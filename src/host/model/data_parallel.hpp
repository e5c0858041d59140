#pragma once
// fit's data-parallel steps (docs/DISTRIBUTED.md), kept out of the single-process loop:
// which communicator a fit uses, the start-up agreement check, rank 0's state broadcast,
// and the validation shards.
#include <cstdint>

#include "cnn/model.hpp"
#include "model/batches.hpp"
#include "model/distributed.hpp"
#include "model/state.hpp"

namespace cnn::data_parallel {

// The world communicator when `o.distributed` and an MPI launcher started more than one
// rank; null (fit as a single process, MPI never initialised for it) otherwise.
const distributed::Communicator* communicator(const FitOptions& o);

// Fails on every rank alike, before any step, when the ranks disagree on the model (layers,
// compile options), the data set sizes, or the fit options that shape the steps.
void check_same_run(const distributed::Communicator& c, Sequential& model, int64_t train_rows, int64_t val_rows,
                    const FitOptions& o, const TrainingProgress& start);

// Rank 0's parameters and optimizer state into every rank.
void broadcast_training_state(const distributed::Communicator& c, Sequential::State& s);
// Rank 0's non-trainable parameters (BatchNormalization's running statistics, frozen layers)
// into every rank: each rank's statistics follow its own shard during an epoch.
void broadcast_statistics(const distributed::Communicator& c, Sequential::State& s);

// Rows [first, first + count) of validated targets.
Targets slice_targets(const Targets& t, int64_t first, int64_t count);

// This rank's contiguous share of `rows` rows.
distributed::EpochShards::Range share(const distributed::Communicator& c, int64_t rows);

// The mean loss and accuracy over all ranks of per-rank means over `local_rows` rows each.
void reduce_means(const distributed::Communicator& c, double& loss, double& accuracy, int64_t local_rows);

}  // namespace cnn::data_parallel
