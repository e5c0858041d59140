// Data-parallel fit on 2 MPI ranks of this machine (CTest label mpi): cnn_mpi_helper (and
// `cnn train`) started under mpirun, their weights and exit compared here. Every run has
// OMP_NUM_THREADS=1 (2 ranks on 2 cores) and a hard time limit, so a hang fails the test.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cnn/cnn.hpp"
#include "cnn/pictures.hpp"

namespace {

namespace fs = std::filesystem;
using namespace cnn;

const std::string kHelper = CNN_MPI_HELPER;
const std::string kCnn = CNN_CLI;
// Shared memory between the ranks, no network probing; root needs --allow-run-as-root, and
// 2 ranks on fewer cores --oversubscribe.
const std::string kMpirun = std::string(CNN_MPIEXEC) +
                            " --allow-run-as-root --oversubscribe --mca btl self,vader -x OMP_NUM_THREADS=1";
constexpr int kLimitSeconds = 120;  // any run: a hang in a collective fails here, not in CI's timeout

struct MpiRun {
  int code = -1;
  double seconds = 0;
  long long end_unix_ms = 0;  // when mpirun returned (wall clock, for the teardown time)
  std::string err;
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("cnn_mpi_test_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// `ranks` 0: the helper alone (no launcher, a single process); otherwise mpirun -n ranks.
MpiRun run(int ranks, const std::string& program_and_args, const fs::path& dir) {
  const fs::path err = dir / "stderr";
  const std::string launcher = ranks == 0 ? "env OMP_NUM_THREADS=1" : kMpirun + " -n " + std::to_string(ranks);
  const std::string cmd = "cd '" + dir.string() + "' && timeout -s KILL " + std::to_string(kLimitSeconds) + " " +
                          launcher + " " + program_and_args + " >'" + (dir / "stdout").string() + "' 2>'" +
                          err.string() + "'";
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  MpiRun r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.end_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_text(err) + read_text(dir / "stdout");
  return r;
}

MpiRun helper(int ranks, const fs::path& dir, const std::string& args = "") {
  return run(ranks, "'" + kHelper + "' '" + dir.string() + "' " + args, dir);
}

std::vector<float> weights(const fs::path& dir, int rank) {
  std::ifstream in(dir / ("weights." + std::to_string(rank)), std::ios::binary);
  std::vector<float> w;
  float v;
  while (in.read(reinterpret_cast<char*>(&v), sizeof v)) w.push_back(v);
  return w;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

std::string show(const MpiRun& r) { return "exit " + std::to_string(r.code) + " after " + std::to_string(r.seconds) + " s:\n" + r.err; }

// 2 ranks at batch b against 1 process at batch 2b: the global batch of step s is the same
// rows (rank r takes the r-th half), and the mean of the two half-batch mean gradients is the
// mean over the 2b rows, so the weights agree up to float rounding: the sums run in another
// order (two sums of b rows, then one addition and a halving, against one sum of 2b rows),
// a relative error of an ulp or so per gradient element and step, which momentum SGD carries
// over 2 x 13 steps. Measured: 8.2e-8 (200 rows) and 1.2e-7 (203 rows) on weights of size
// ~0.01-1, i.e. about one ulp; the bound 2e-6 leaves 16x room while a wrong shard (other
// rows), a missing average (a sum: twice the step) or no all-reduce moves weights by 1e-3 or
// more (the ranks' weights would also differ).
// Runs 1 process at batch 16 and 2 ranks at batch 8 (with `two_rank_args` more), both with
// `args`; *diff = the largest |difference| of their final weights, after checking that both
// runs succeed and the two ranks end bit-identical.
void double_batch_difference(const std::string& args, const std::string& two_rank_args, float* diff) {
  const fs::path one = fresh_dir("one"), two = fresh_dir("two");
  const MpiRun r1 = helper(0, one, args + " batch=16");
  ASSERT_EQ(r1.code, 0) << show(r1);
  const MpiRun r2 = helper(2, two, args + " batch=8 " + two_rank_args);
  ASSERT_EQ(r2.code, 0) << show(r2);
  const std::vector<float> w1 = weights(one, 0), w20 = weights(two, 0), w21 = weights(two, 1);
  ASSERT_FALSE(w1.empty());
  ASSERT_EQ(w1.size(), w20.size());
  EXPECT_EQ(w20, w21) << "the ranks' weights must stay bit-identical (same reduced gradient, same update)";
  *diff = max_abs_diff(w1, w20);
  std::printf("%s %s: max |w(1 rank, batch 16) - w(2 ranks, batch 8)| = %g\n", args.c_str(), two_rank_args.c_str(),
              double(*diff));
}

void expect_matches_double_batch(int rows) {
  float d = 1;
  double_batch_difference("rows=" + std::to_string(rows) + " epochs=2", "", &d);
  EXPECT_LE(d, 2e-6f);
}

TEST(MpiFit, TwoRanksAtBatchBMatchOneProcessAtBatch2B) { expect_matches_double_batch(200); }

// 203 rows: the last global batch has 11 rows, split 5 / 6; each rank's gradient is weighted
// by its row count so the result is still the mean over the 11 rows.
TEST(MpiFit, UnevenLastBatchIsWeightedByRows) { expect_matches_double_batch(203); }

// drop_last drops the rows past the last whole GLOBAL batch (203 = 12 x 16 + 11: the 11), and
// 1.5 epochs train ceil(1.5 x 12) = 18 steps, on 2 ranks as on one process at twice the batch.
TEST(MpiFit, FractionalEpochsOfWholeGlobalBatchesMatchOneProcessAtBatch2B) {
  float d = 1;
  double_batch_difference("rows=203 epochs=1.5 drop_last=1", "", &d);
  EXPECT_LE(d, 2e-6f);
  float without = 1;  // without drop_last: 13 steps an epoch, the last one of 11 rows split 5 / 6
  double_batch_difference("rows=203 epochs=1.5", "", &without);
  EXPECT_LE(without, 2e-6f);
  // The 11 rows do matter, so dropping them is seen: the two single-process runs differ.
  const fs::path a = fresh_dir("drop_a"), b = fresh_dir("drop_b");
  ASSERT_EQ(helper(0, a, "rows=203 epochs=1.5 drop_last=1 batch=16").code, 0);
  ASSERT_EQ(helper(0, b, "rows=203 epochs=1.5 batch=16").code, 0);
  EXPECT_GT(max_abs_diff(weights(a, 0), weights(b, 0)), 1e-4f);
}

TEST(MpiFit, ValidationAndLossAreReducedOverRanks) {
  const fs::path one = fresh_dir("val_one"), two = fresh_dir("val_two");
  ASSERT_EQ(helper(0, one, "validation=0.25 batch=16").code, 0);
  const MpiRun r = helper(2, two, "validation=0.25 batch=8");
  ASSERT_EQ(r.code, 0) << show(r);
  std::istringstream a(read_text(one / "loss.txt")), b(read_text(two / "loss.txt"));
  double l1, v1, l2, v2;
  int epochs = 0;
  while (a >> l1 >> v1 && b >> l2 >> v2) {
    ++epochs;
    // Means over all the rows (not rank 0's half): as close as the weights (1e-5 relative).
    EXPECT_NEAR(l1, l2, 1e-4 * std::fabs(l1)) << "epoch " << epochs;
    EXPECT_NEAR(v1, v2, 1e-4 * std::fabs(v1)) << "epoch " << epochs;
  }
  EXPECT_EQ(epochs, 2);
}

// BatchNormalization: batch statistics per rank, so the running statistics drift apart during
// an epoch; rank 0's are broadcast at every epoch end, so every rank ends with the same
// parameters, running statistics included, and the validation agrees.
TEST(MpiFit, BatchNormRunningStatisticsAreRankZerosAtEpochEnd) {
  const fs::path dir = fresh_dir("batch_norm");
  const MpiRun r = helper(2, dir, "batch_norm=1 validation=0.2");
  ASSERT_EQ(r.code, 0) << show(r);
  const std::vector<float> w0 = weights(dir, 0), w1 = weights(dir, 1);
  ASSERT_FALSE(w0.empty());
  EXPECT_EQ(w0, w1);
}

// Synchronised BatchNormalization: 2 ranks at batch 8 normalise with the statistics of the
// global batch of 16, so they train as one process at batch 16 does, up to float rounding
// (the statistics' double sums in another order, then the gradients' as above). 203 rows: the
// last global batch of 11 rows splits 5 / 6, which the backward's row weighting must undo.
// Measured (2 epochs; docs/runs/2026-12-02/distributed/sync_batchnorm.log): 1.2e-7 (200 rows)
// and 1.8e-7 (203); per-rank statistics instead (the default) 0.035 and 0.032, and weighting
// the ranks' sums equally in backward (no m_r) gives 6.6e-5 on 203 rows. The bound 2e-6 of the plain
// test separates them.
void expect_sync_batchnorm_matches_double_batch(int rows) {
  const std::string args = "batch_norm=1 rows=" + std::to_string(rows);
  float synced = 1, per_rank = 0;
  double_batch_difference(args, "sync_batchnorm=1", &synced);
  double_batch_difference(args, "", &per_rank);
  EXPECT_LE(synced, 2e-6f);
  EXPECT_GE(per_rank, 1e-3f) << "per-rank statistics must differ, or the comparison shows nothing";
}

TEST(MpiFit, SynchronisedBatchNormMatchesOneProcessAtTheGlobalBatch) {
  expect_sync_batchnorm_matches_double_batch(200);
}
TEST(MpiFit, SynchronisedBatchNormWeightsAnUnevenLastBatchByRows) { expect_sync_batchnorm_matches_double_batch(203); }

// Buckets change when each gradient is reduced, not what it is reduced to: the same sum per
// value over the same 2 ranks. One bucket per layer (64 bytes; one bucket of 128 the small
// BatchNorm layer's 16 values with the next) against one all-reduce after backward:
// bit-identical weights, BatchNorm model and uneven last batch included.
TEST(MpiFit, BucketedAllReduceGivesTheSameWeightsAsOneAfterBackward) {
  for (const std::string model : {"batch_norm=0 rows=200", "batch_norm=1 rows=203"}) {
    const fs::path whole = fresh_dir("bucket_whole"), layered = fresh_dir("bucket_layered");
    const MpiRun a = helper(2, whole, model + " bucket_bytes=0");
    ASSERT_EQ(a.code, 0) << show(a);
    const MpiRun b = helper(2, layered, model + " bucket_bytes=64");
    ASSERT_EQ(b.code, 0) << show(b);
    const std::vector<float> w = weights(whole, 0), wb0 = weights(layered, 0), wb1 = weights(layered, 1);
    ASSERT_FALSE(w.empty());
    EXPECT_EQ(w, wb0) << model;
    EXPECT_EQ(wb0, wb1) << model;
  }
}

// Rank 0's checkpoint after 2 of 4 epochs, resumed on 2 ranks: bit-identical to 4 straight.
TEST(MpiFit, CheckpointResumesOnTwoRanksLikeAnUninterruptedRun) {
  const fs::path straight = fresh_dir("straight"), part = fresh_dir("part"), resumed = fresh_dir("resumed");
  const MpiRun a = helper(2, straight, "epochs=4");
  ASSERT_EQ(a.code, 0) << show(a);
  const std::string ckpt = (part / "ckpt.safetensors").string();
  const MpiRun b = helper(2, part, "epochs=2 checkpoint=" + ckpt);
  ASSERT_EQ(b.code, 0) << show(b);
  TrainingProgress p;
  Sequential::load_checkpoint(ckpt, &p);
  EXPECT_EQ(p.epoch, 2);
  EXPECT_EQ(p.world_size, 2);
  const MpiRun c = helper(2, resumed, "epochs=4 resume=" + ckpt);
  ASSERT_EQ(c.code, 0) << show(c);
  EXPECT_EQ(weights(straight, 0), weights(resumed, 0));
  EXPECT_EQ(weights(resumed, 0), weights(resumed, 1));

  // The same checkpoint on one process: refused, naming both rank counts.
  const MpiRun d = helper(0, fresh_dir("resume_one"), "epochs=4 resume=" + ckpt);
  EXPECT_NE(d.code, 0);
  EXPECT_NE(d.err.find("written by a run on 2 rank(s)"), std::string::npos) << show(d);
  EXPECT_NE(d.err.find("this run has 1"), std::string::npos) << show(d);
}

TEST(MpiFit, RanksThatDisagreeFailBeforeAnyStep) {
  const fs::path dir = fresh_dir("disagree");
  const MpiRun r = helper(2, dir, "batch_rank1=16");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("rank 1 of 2 disagrees with rank 0 on batch_size (16 vs 8)"), std::string::npos) << show(r);
  EXPECT_FALSE(fs::exists(dir / "weights.0"));
  EXPECT_LT(r.seconds, kLimitSeconds - 1);
}

// The shared part of the fault tests: a 3-epoch run with a checkpoint that fails on rank 1 in
// epoch 2 must end (all ranks) well within the limit, name rank 1, and leave epoch 1's
// checkpoint, which resumes on 2 ranks.
void expect_fault_ends_job(const std::string& fault, const std::string& expected_message) {
  const fs::path dir = fresh_dir("fault_" + fault);
  const std::string ckpt = (dir / "ckpt.safetensors").string();
  // 200 rows at global batch 16: 13 steps per epoch, so step 20 is in epoch 2.
  const MpiRun r = helper(2, dir, "epochs=3 checkpoint=" + ckpt + " fault=" + fault + " fault_step=20");
  std::printf("fault '%s': the job ended after %.2f s with exit %d\n", fault.c_str(), r.seconds, r.code);
  const size_t at = r.err.find("fault at unix-ms ");
  if (at != std::string::npos) {  // the callback faults: from the fault to mpirun's exit
    const double teardown = double(r.end_unix_ms - std::stoll(r.err.substr(at + 17))) / 1e3;
    std::printf("fault '%s': from the fault to mpirun's exit %.2f s\n", fault.c_str(), teardown);
    EXPECT_LT(teardown, 30.0) << show(r);
  }
  EXPECT_NE(r.code, 0) << show(r);
  EXPECT_LT(r.seconds, 60.0) << show(r);  // measured: a few seconds (docs/DISTRIBUTED.md)
  if (!expected_message.empty()) {
    EXPECT_NE(r.err.find(expected_message), std::string::npos) << show(r);
  }
  EXPECT_FALSE(fs::exists(dir / "weights.0")) << "rank 0 must not finish";
  if (fault == "nan") return;  // fails in epoch 1, before any checkpoint
  TrainingProgress p;
  ASSERT_NO_THROW(Sequential::load_checkpoint(ckpt, &p)) << "the last checkpoint must stay intact";
  EXPECT_EQ(p.epoch, 1);
  const fs::path again = fresh_dir("fault_resume_" + fault);
  const MpiRun c = helper(2, again, "epochs=3 resume=" + ckpt);
  EXPECT_EQ(c.code, 0) << show(c);
  EXPECT_EQ(weights(again, 0).size(), weights(again, 1).size());
}

TEST(MpiFaults, AThrowOnOneRankAbortsTheJobNamingTheRank) {
  expect_fault_ends_job("throw", "cnn: error on rank 1 of 2: test fault: thrown after optimizer step 20");
}

TEST(MpiFaults, BadDataOnOneRankAbortsTheJobNamingTheRank) {
  expect_fault_ends_job("nan", "cnn: error on rank 1 of 2: fit: training diverged");
}

// SIGKILL leaves no message of ours: mpirun notices the dead rank and ends the others.
TEST(MpiFaults, ASigkilledRankEndsTheJob) { expect_fault_ends_job("kill", ""); }

// The command line: `mpirun -n 2 cnn train` (mpirun's environment makes it distributed) on a
// folder of class folders written here; only rank 0 saves the model and the CSV log.
TEST(MpiCli, MpirunTrainsDataParallelAndOnlyRankZeroWrites) {
  const fs::path dir = fresh_dir("cli");
  for (int c = 0; c < 2; ++c) {
    fs::create_directories(dir / "data" / "train" / ("class" + std::to_string(c)));
    for (int i = 0; i < 12; ++i) {
      Image img(8, 8, Color{uint8_t(40 + 150 * c), uint8_t(7 * i), uint8_t(200 - 100 * c)});
      save_png(img, (dir / "data" / "train" / ("class" + std::to_string(c)) / (std::to_string(i) + ".png")).string());
    }
  }
  std::ofstream(dir / "model.json") << R"({"input_shape": [3, 8, 8], "layers": [{"type": "Flatten"},
      {"type": "Dense", "units": 2, "activation": "softmax"}], "compile": {"optimizer": "sgd", "loss": "scce",
      "learning_rate": 0.1}})";
  const MpiRun r = run(2, "'" + kCnn + "' train --model model.json --data data --epochs 2 --batch-size 4 --validation-split 0 "
                       "--save out.safetensors --log log.csv --verbose 2", dir);
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_NE(r.err.find("data-parallel on 2 ranks (global batch 8)"), std::string::npos) << show(r);
  size_t lines = 0;
  for (size_t at = r.err.find("Epoch 1/2"); at != std::string::npos; at = r.err.find("Epoch 1/2", at + 1)) ++lines;
  EXPECT_EQ(lines, 1u) << "only rank 0 prints progress\n" << show(r);
  EXPECT_NO_THROW(Sequential::load(fs::path(dir / "out.safetensors").string()));
  const std::string log = read_text(dir / "log.csv");
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 3) << log;  // header + 2 epochs, written once

  // Ranks started with different flags (mpirun's MPMD form): refused before any step.
  const std::string train = "'" + kCnn + "' train --model model.json --data data --epochs 1 --validation-split 0 "
                            "--save other.safetensors --batch-size ";
  const MpiRun bad = run(1, train + "4 : -n 1 " + train + "8", dir);
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("error on rank"), std::string::npos) << show(bad);
  EXPECT_NE(bad.err.find("rank 1 of 2 disagrees with rank 0 on batch_size (8 vs 4)"), std::string::npos) << show(bad);
  EXPECT_FALSE(fs::exists(dir / "other.safetensors"));
}

}  // namespace
