#include "model/data_parallel.hpp"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/error.hpp"

namespace cnn::data_parallel {

const distributed::Communicator* communicator(const FitOptions& o) {
  // size() initialises MPI only under an MPI launcher: a plain process stays without it.
  if (!o.distributed || distributed::size() == 1) return nullptr;
  return &distributed::world();
}

void check_same_run(const distributed::Communicator& c, Sequential& model, int64_t train_rows, int64_t val_rows,
                    const FitOptions& o, const TrainingProgress& start) {
  const Sequential::State& s = model.state();
  // The initialisation seed may differ: every rank starts from rank 0's weights.
  nlohmann::json description = model.to_json();
  if (description.contains("compile")) description["compile"].erase("seed");
  distributed::check_agreement(
      c,
      {{"the model (layers and compile options)", distributed::fingerprint(description.dump())},
       {"the parameter count", uint64_t(s.param_total)},
       {"the training rows", uint64_t(train_rows)},
       {"the validation rows", uint64_t(val_rows)},
       {"batch_size", uint64_t(o.batch_size)},
       {"epochs (in millionths)", uint64_t(std::llround(o.epochs * 1e6))},
       {"the shuffling seed", o.seed},
       {"shuffle", uint64_t(o.shuffle)},
       {"drop_last", uint64_t(o.drop_last)},
       {"sync_batchnorm", uint64_t(o.sync_batchnorm)},
       {"allreduce_bucket_bytes", uint64_t(o.allreduce_bucket_bytes)},
       {"the first epoch", uint64_t(start.epoch)},
       {"the optimizer step", uint64_t(s.step)}},
      "distributed fit");
}

void broadcast_training_state(const distributed::Communicator& c, Sequential::State& s) {
  for (Tensor* t : {&s.params, &s.opt_m, &s.opt_v})
    if (!t->empty()) c.broadcast(t->data(), t->numel(), s.device);
}

void broadcast_statistics(const distributed::Communicator& c, Sequential::State& s) {
  int64_t at = 0;
  auto send = [&](int64_t end) {
    if (end > at) c.broadcast(s.params.data() + at, end - at, s.device);
  };
  for (const auto& seg : s.trainable_segments) {
    send(seg.begin);
    at = seg.end;
  }
  send(s.param_total);
}

Targets slice_targets(const Targets& t, int64_t first, int64_t count) {
  Targets out = t;
  out.rows = count;
  if (t.kind == ops::TargetKind::Labels)
    out.labels.assign(t.labels.begin() + first, t.labels.begin() + first + count);
  else
    out.dense = t.dense.slice(first, first + count);
  return out;
}

distributed::EpochShards::Range share(const distributed::Communicator& c, int64_t rows) {
  const int64_t begin = rows * c.rank / c.size, end = rows * (c.rank + 1) / c.size;
  return {begin, end - begin};
}

void reduce_means(const distributed::Communicator& c, double& loss, double& accuracy, int64_t local_rows) {
  double sums[3] = {local_rows ? loss * double(local_rows) : 0.0, local_rows ? accuracy * double(local_rows) : 0.0,
                    double(local_rows)};
  c.allreduce_sum(sums, 3);
  loss = sums[0] / sums[2];
  accuracy = sums[1] / sums[2];
}

}  // namespace cnn::data_parallel
