// Training entry points: fit (epochs of shuffled, augmented batches with progress, callbacks,
// validation and checkpoints), train_on_batch and train_steps.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

#include "cnn/callbacks.hpp"
#include "cnn/error.hpp"
#include "cnn/initializers.hpp"
#include "cnn/rng.hpp"
#include "kernels/device_memory.hpp"
#include "model/batches.hpp"
#include "model/data_parallel.hpp"
#include "model/evaluate.hpp"
#include "model/runner.hpp"
#include "model/progress.hpp"

namespace cnn {
namespace {

using State = Sequential::State;

void check_schedule(const LRSchedule& l) {
  parse_schedule(l.kind, "fit");
  CNN_CHECK(l.step_epochs > 0, "fit: lr_schedule.step_epochs must be positive, got ", l.step_epochs);
  CNN_CHECK(l.warmup >= 0 && l.warmup < 1, "fit: lr_schedule.warmup must be in [0, 1), got ", l.warmup);
  for (float f : {l.gamma, l.min_factor, l.start_factor, l.end_factor})
    CNN_CHECK(std::isfinite(f) && f >= 0, "fit: lr_schedule factors must be finite and >= 0");
}

void check_fit_options(const State& s, const Tensor& x, const FitOptions& o) {
  check_inputs(s, x, "fit");
  // A million epochs keeps ceil(epochs x steps) and the epoch count in range for any data.
  CNN_CHECK(std::isfinite(o.epochs) && o.epochs >= 0 && o.epochs <= 1e6, "fit: epochs must be a number in [0, 1e6], got ",
            o.epochs);
  CNN_CHECK(o.batch_size > 0, "fit: batch_size must be positive, got ", o.batch_size);
  CNN_CHECK(o.validation_split >= 0 && o.validation_split < 1, "fit: validation_split must be in [0, 1), got ",
            o.validation_split);
  CNN_CHECK(!(o.validation_split > 0 && o.validation_data), "fit: give validation_split or validation_data, not both");
  check_schedule(o.lr_schedule);
  CNN_CHECK(o.allreduce_bucket_bytes >= 0, "fit: allreduce_bucket_bytes must be >= 0 (0: one all-reduce), got ",
            o.allreduce_bucket_bytes);
  CNN_CHECK(o.initial_epoch >= 0 && o.initial_epoch <= std::ceil(o.epochs), "fit: initial_epoch ", o.initial_epoch,
            " must be in [0, ", std::ceil(o.epochs), "] (epochs ", o.epochs, ")");
}

// fit's data on the host: the training rows and their targets, and the validation set.
struct FitData {
  Tensor x;
  Targets targets;
  std::optional<Tensor> x_val;
  std::optional<Targets> t_val;
};

// Keras's split: the last fraction of the rows, before shuffling; or validation_data.
FitData split_validation(const State& s, const Tensor& x_in, const Tensor& y_in, const FitOptions& o) {
  const Tensor x_all = x_in.to(Device::CPU);
  CNN_CHECK(y_in.dim(0) == x_all.dim(0), "fit: y has ", y_in.dim(0), " rows but x has ", x_all.dim(0));
  const int64_t N_all = x_all.dim(0);
  const int64_t n_val = int64_t(double(N_all) * o.validation_split);
  CNN_CHECK(o.validation_split == 0 || (n_val > 0 && n_val < N_all), "fit: validation_split ", o.validation_split,
            " of ", N_all, " samples leaves an empty training or validation set");
  FitData d;
  d.x = n_val ? x_all.slice(0, N_all - n_val) : x_all;
  const Tensor y = n_val ? y_in.to(Device::CPU).slice(0, N_all - n_val) : y_in;
  d.targets = prepare_targets(s, y, d.x.dim(0), "fit");
  if (n_val) {
    d.x_val = x_all.slice(N_all - n_val, N_all);
    d.t_val = prepare_targets(s, y_in.to(Device::CPU).slice(N_all - n_val, N_all), n_val, "fit (validation_split)");
  } else if (o.validation_data) {
    check_inputs(s, o.validation_data->x, "fit (validation_data)");
    d.x_val = o.validation_data->x.to(Device::CPU);
    d.t_val = prepare_targets(s, o.validation_data->y, d.x_val->dim(0), "fit (validation_data)");
  }
  return d;
}

// Validates fit's augmentation options against the model's input shape.
ops::AugmentSpec augment_spec(const State& s, const Augmentation& a) {
  ops::AugmentSpec spec;
  if (!a.enabled()) return spec;
  CNN_CHECK(s.input_shape.size() == 3, "fit: augmentation needs image inputs [channels, height, width], the model takes ",
            shape_str(s.input_shape));
  const int64_t h = s.input_shape[1], w = s.input_shape[2];
  CNN_CHECK(a.translate >= 0 && a.translate < h && a.translate < w, "fit: augment.translate must be in [0, ",
            std::min(h, w), "), got ", a.translate);
  CNN_CHECK(a.cutout >= 0 && a.cutout <= h && a.cutout <= w, "fit: augment.cutout must be in [0, ", std::min(h, w),
            "], got ", a.cutout);
  spec.translate = a.translate;
  spec.cutout = a.cutout;
  // alternate: mirrored while loading
  spec.flip = parse_flip(a.flip, "fit") == FlipMode::Random ? FlipMode::Random : FlipMode::None;
  return spec;
}

// Random numbers of a step: a function of (seed, epoch, step), so a resumed run repeats exactly.
uint64_t step_seed(uint64_t seed, int epoch, int step) {
  Rng rng(seed * 0x9E3779B97F4A7C15ull ^ (uint64_t(epoch) << 32 | uint32_t(step)));
  return rng.next_u64();
}

void append(History& h, const EpochLogs& logs) {
  h.loss.push_back(logs.loss);
  h.accuracy.push_back(logs.accuracy);
  h.val_loss.push_back(logs.val_loss);
  h.val_accuracy.push_back(logs.val_accuracy);
  h.seconds.push_back(logs.seconds);
  h.learning_rate.push_back(logs.learning_rate);
}

// The steps of `epochs` epochs of `steps` steps: ceil(epochs x steps), as airbench counts its
// 9.9 epochs; a product within 1e-9 of a whole number is that number (in doubles 0.1 x 30 is
// 3.0000000000000004, which is 3 steps, not 4).
int64_t fit_steps(double epochs, int steps) {
  const double product = epochs * double(steps);
  const double nearest = std::round(product);
  return int64_t(std::fabs(product - nearest) <= 1e-9 * std::max(1.0, nearest) ? nearest : std::ceil(product));
}

// The rows of each epoch's order that fit trains: all, or with drop_last the whole global batches.
int64_t trained_rows(int64_t rows, int batch, int ranks, bool drop_last) {
  const int64_t global = int64_t(batch) * ranks;
  return drop_last && rows >= global ? rows / global * global : rows;
}

// The epochs of one fit: batches of the shuffled rows through the model's step runner. With
// a communicator (data-parallel), this rank's shard of every batch (model/distributed.hpp).
class FitLoop {
 public:
  FitLoop(Sequential& model, const FitData& data, const FitOptions& o, const distributed::Communicator* comm)
      : model_(model),
        s_(model.state()),
        runner_(model),
        data_(data),
        o_(o),
        comm_(comm),
        rank_(comm ? comm->rank : 0),
        rows_(data.x.dim(0)),
        shards_(trained_rows(rows_, o.batch_size, comm ? comm->size : 1, o.drop_last), o.batch_size,
                comm ? comm->size : 1),
        steps_(shards_.steps()),
        total_steps_(fit_steps(o.epochs, steps_)),
        augment_(augment_spec(s_, o.augment)),
        schedule_(parse_schedule(o.lr_schedule.kind, "fit")),
        alternate_flip_(parse_flip(o.augment.flip) == FlipMode::Alternate),
        order_(static_cast<size_t>(rows_)) {
    runner_.plan(shards_.max_rows());
    for (const auto& cb : o.callbacks) batch_logs_ = batch_logs_ || (cb && cb->wants_batch_logs());
  }

  // The epochs fit runs: all of them whole but a fractional last one (epochs 9.9: 10).
  int epochs() const { return steps_ ? int((total_steps_ + steps_ - 1) / steps_) : 0; }
  // The steps of `epoch`: the whole epoch's, or the first ones of its shuffled order in a
  // fractional last epoch.
  int steps_in(int epoch) const { return int(std::clamp<int64_t>(total_steps_ - int64_t(epoch) * steps_, 0, steps_)); }

  EpochLogs run_epoch(int epoch) {
    runner_.begin_epoch(epoch);
    const int steps = steps_in(epoch);
    ProgressBar bar(steps, rank_ == 0 ? o_.verbose : 0);
    shuffle(epoch);
    s_.arena.metrics.zero();
    const double start = now_seconds();
    int64_t seen = 0;
    StepPlace place{epoch, 0, 0};
    for (int step = 0; step < steps; ++step) {
      place.step = step;
      train_batch(place);
      for (const auto& cb : o_.callbacks) cb->on_step_end(model_, s_.step);
      seen += batch_rows(step);
      const double elapsed = now_seconds() - start;
      const bool draw = bar.due(step + 1, elapsed);
      if (draw || batch_logs_) log_batch(place, seen, elapsed, draw ? &bar : nullptr);
    }
    place.step = steps - 1;
    EpochLogs logs = epoch_metrics(place);
    if (comm_) data_parallel::broadcast_statistics(*comm_, s_);  // rank 0's, for validation and saving
    if (data_.x_val) validate(logs);
    logs.seconds = now_seconds() - start;
    bar.finish(logs.seconds, {{"loss", logs.loss},
                              {"accuracy", logs.accuracy},
                              {"val_loss", logs.val_loss},
                              {"val_accuracy", logs.val_accuracy}});
    return logs;
  }

 private:
  int batch_rows(int step) const { return int(shards_.rank_rows(step, rank_).count); }

  // Validation loss and accuracy; data-parallel, each rank evaluates its share of the rows.
  void validate(EpochLogs& logs) {
    if (!comm_) {
      const Evaluation ev = evaluate_batches(runner_, s_, *data_.x_val, *data_.t_val, {});
      logs.val_loss = ev.loss;
      logs.val_accuracy = ev.accuracy;
      return;
    }
    const auto mine = data_parallel::share(*comm_, data_.x_val->dim(0));
    if (mine.count > 0) {
      const Tensor x = data_.x_val->slice(mine.first, mine.first + mine.count);
      const Evaluation ev = evaluate_batches(runner_, s_, x, data_parallel::slice_targets(*data_.t_val, mine.first, mine.count), {});
      logs.val_loss = ev.loss;
      logs.val_accuracy = ev.accuracy;
    }
    data_parallel::reduce_means(*comm_, logs.val_loss, logs.val_accuracy, mine.count);
  }

  // Each epoch's order depends only on (seed, epoch), so a resumed run shuffles the same.
  void shuffle(int epoch) {
    std::iota(order_.begin(), order_.end(), 0);
    if (!o_.shuffle) return;
    Rng rng(o_.seed * 0x9E3779B97F4A7C15ull + uint64_t(epoch));
    for (int64_t i = rows_ - 1; i > 0; --i) std::swap(order_[size_t(i)], order_[size_t(rng.below(uint64_t(i + 1)))]);
  }

  // Loads, augments and trains on the rows of step `at.step`.
  void train_batch(const StepPlace& at) {
    const auto rows = shards_.rank_rows(at.step, rank_);
    const int n = int(rows.count);
    const int64_t mirror_epoch = alternate_flip_ ? at.epoch : -1;
    const bool augment = augment_.translate > 0 || augment_.flip == ops::FlipMode::Random || augment_.cutout > 0;
    load_batch(s_, data_.x, data_.targets, order_.data() + rows.first, n, mirror_epoch, augment);
    s_.step_seed = step_seed(o_.seed, at.epoch, at.step);
    // Data-parallel: each rank draws its own dropout masks and augmentations.
    if (comm_) s_.step_seed = step_seed(s_.step_seed, rank_, 0);
    s_.gradient_weight = shards_.gradient_weight(at.step, rank_);
    if (augment) augment_batch(n);
    const int64_t done = int64_t(at.epoch) * steps_ + at.step;
    s_.lr_factor = float(o_.lr_schedule.factor(schedule_, double(done) / double(total_steps_), at.epoch));
    s_.step_progress = double(done + 1) / double(total_steps_);
    runner_.train_step(data_.targets.kind, n, &at);
  }

  // Random translation / flip / cutout of the batch loaded into arena.augmented, into the
  // input, on the model's device.
  void augment_batch(int n) {
    const Exec e = runner_.exec(true);
    Arena<float>& a = runner_.arena();
    const int c = int(s_.input_shape[0]), h = int(s_.input_shape[1]), w = int(s_.input_shape[2]);
    run::augment_images<float>(e, n, c, h, w, a.augmented.data(), a.input.data(), augment_, s_.step_seed);
  }

  // The running metrics (a device read, so only when a progress update or callback wants
  // them); a NaN there stops fit.
  void log_batch(StepPlace& place, int64_t seen, double elapsed, ProgressBar* bar) {
    const Totals tot = runner_.read_metrics();
    if (!std::isfinite(tot.loss_sum)) runner_.non_finite_error(batch_rows(place.step), place, true);
    place.checked = place.step + 1;
    const BatchLogs logs{place.step, tot.loss_sum / double(seen),
                         tot.correct / accuracy_units(s_, data_.targets.kind, seen), s_.step,
                         double(s_.opt.learning_rate) * s_.lr_factor};
    if (bar) bar->update(place.step + 1, elapsed, {{"loss", logs.loss}, {"accuracy", logs.accuracy}});
    for (const auto& cb : o_.callbacks) cb->on_batch_end(model_, logs);
  }

  // The epoch's training loss and accuracy over the rows of its steps (all ranks'); `last`
  // is the epoch's last step.
  EpochLogs epoch_metrics(const StepPlace& last) {
    int64_t rows = 0;
    for (int step = 0; step <= last.step; ++step) rows += shards_.step_rows(step).count;
    Totals tot = runner_.read_metrics();
    if (!std::isfinite(tot.loss_sum)) runner_.non_finite_error(batch_rows(last.step), last, true);
    if (comm_) {  // over every rank's rows
      double sums[2] = {tot.loss_sum, tot.correct};
      comm_->allreduce_sum(sums, 2);
      tot = {sums[0], sums[1]};
    }
    EpochLogs logs;
    logs.epoch = last.epoch;
    logs.loss = tot.loss_sum / double(rows);
    logs.accuracy = tot.correct / accuracy_units(s_, data_.targets.kind, rows);
    logs.learning_rate = double(s_.opt.learning_rate) * s_.lr_factor;
    return logs;
  }

  Sequential& model_;
  State& s_;
  Runner<float> runner_;
  const FitData& data_;
  const FitOptions& o_;
  const distributed::Communicator* comm_;
  const int rank_;
  const int64_t rows_;
  const distributed::EpochShards shards_;
  const int steps_;          // of a whole epoch
  const int64_t total_steps_;  // of the whole fit, over which the schedule runs
  const ops::AugmentSpec augment_;
  const ScheduleKind schedule_;
  const bool alternate_flip_;
  std::vector<int64_t> order_;
  bool batch_logs_ = false;
};

}  // namespace

double LRSchedule::factor(double t, int epoch) const { return factor(parse_schedule(kind), t, epoch); }

double LRSchedule::factor(ScheduleKind parsed_kind, double t, int epoch) const {
  t = std::clamp(t, 0.0, 1.0);
  if (parsed_kind == ScheduleKind::Step) return std::pow(double(gamma), double(epoch / std::max(step_epochs, 1)));
  if (parsed_kind == ScheduleKind::Cosine)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t));
  if (parsed_kind == ScheduleKind::OneCycle) {
    if (t < warmup) return start_factor + (1.0 - start_factor) * t / warmup;
    return 1.0 + (end_factor - 1.0) * (t - warmup) / (1.0 - warmup);
  }
  return 1.0;
}

History Sequential::fit(const Tensor& x, const Tensor& y, double epochs) {
  FitOptions o;
  o.epochs = epochs;
  return fit(x, y, o);
}

History Sequential::fit(const Tensor& x, const Tensor& y, const FitOptions& o) {
  if (o.weight_averaging) {  // as a callback that runs before the others
    FitOptions with = o;
    with.callbacks.insert(with.callbacks.begin(), weight_averaging(*std::exchange(with.weight_averaging, std::nullopt)));
    return fit(x, y, with);
  }
  State& s = *state_;
  check_fit_options(s, x, o);
  if (o.resume_from.empty())
    for (const InitializationReport& r : apply_data_dependent_initializers(*this, x, o))
      if (o.verbose > 0 && (!o.distributed || distributed::rank() == 0)) std::printf("%s\n", r.describe().c_str());
  const FitData data = split_validation(s, x, y, o);
  const distributed::Communicator* comm = data_parallel::communicator(o);
  const int ranks = comm ? comm->size : 1;
  const bool rank0 = !comm || comm->rank == 0;
  FitLoop loop(*this, data, o, comm);

  History history;
  TrainingProgress start{o.initial_epoch, {}, ranks};
  if (!o.resume_from.empty()) {
    restore_checkpoint(o.resume_from, &start);
    history = start.history;
    CNN_CHECK(start.world_size == ranks, "resume: the checkpoint '", o.resume_from, "' was written by a run on ",
              start.world_size, " rank(s) (global batch ", start.world_size, " x batch_size); this run has ", ranks,
              ": resume with ", start.world_size == 1 ? std::string("one process") : "mpirun -n " + std::to_string(start.world_size));
  }
  if (comm) {  // every rank the same run, from rank 0's weights
    data_parallel::check_same_run(*comm, *this, data.x.dim(0), data.x_val ? data.x_val->dim(0) : 0, o, start);
    data_parallel::broadcast_training_state(*comm, s);
  }
  s.comm = comm;
  s.sync_batchnorm = comm && o.sync_batchnorm;
  s.allreduce_bucket_bytes = o.allreduce_bucket_bytes;
  const int first_epoch = start.epoch;
  stop_training = false;
  // A rank that fails cannot leave the others waiting in a collective: it ends the job.
  try {
    for (const auto& cb : o.callbacks) cb->on_train_begin(*this);
    for (int epoch = first_epoch; epoch < loop.epochs() && !stop_training; ++epoch) {
      for (const auto& cb : o.callbacks) cb->on_epoch_begin(*this, epoch);
      if (o.verbose > 0 && rank0) std::printf("Epoch %d/%d\n", epoch + 1, loop.epochs());
      const EpochLogs logs = loop.run_epoch(epoch);
      append(history, logs);
      if (!o.checkpoint_path.empty() && rank0) save_checkpoint(o.checkpoint_path, {epoch + 1, history, ranks});
      for (const auto& cb : o.callbacks) cb->on_epoch_end(*this, logs);
      if (comm) {  // one rank's callback stopping stops them all
        double stop = stop_training ? 1 : 0;
        comm->allreduce_sum(&stop, 1);
        stop_training = stop > 0;
      }
    }
  } catch (const std::exception& e) {
    s.comm = nullptr;
    s.sync_batchnorm = false;
    if (comm) distributed::abort(1, e.what());
    throw;
  }
  s.comm = nullptr;
  s.sync_batchnorm = false;
  s.lr_factor = 1.0f;
  for (const auto& cb : o.callbacks) cb->on_train_end(*this);
  return history;
}

namespace {

// Checks x and y, plans the runner for all of x's rows and loads them as one batch.
struct WholeBatch {
  ops::TargetKind kind;
  int n;
};
WholeBatch load_whole_batch(Runner<float>& runner, State& s, const Tensor& x_in, const Tensor& y, const char* what) {
  check_inputs(s, x_in, what);
  const Tensor x = x_in.to(Device::CPU);
  const Targets t = prepare_targets(s, y, x.dim(0), what);
  const int n = int(x.dim(0));
  runner.plan(n);
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), 0);
  load_batch(s, x, t, rows.data(), n);
  return {t.kind, n};
}

}  // namespace

double Sequential::train_on_batch(const Tensor& x, const Tensor& y) {
  State& s = *state_;
  Runner<float> runner(*this);
  const WholeBatch batch = load_whole_batch(runner, s, x, y, "train_on_batch");
  s.arena.metrics.zero();
  runner.train_step(batch.kind, batch.n);
  return runner.read_metrics().loss_sum / double(batch.n);
}

void Sequential::train_steps(const Tensor& x, const Tensor& y, int steps) {
  State& s = *state_;
  CNN_CHECK(steps >= 0, "train_steps: steps must be >= 0, got ", steps);
  Runner<float> runner(*this);
  const WholeBatch batch = load_whole_batch(runner, s, x, y, "train_steps");
  for (int i = 0; i < steps; ++i) runner.train_step(batch.kind, batch.n);
  memory::synchronize(s.device);
}

}  // namespace cnn
