// The single-process side of data-parallel fit (docs/DISTRIBUTED.md): how epochs are split
// between ranks, the world-size record of checkpoints, and that a plain process never needs
// MPI. The multi-rank runs are in tests/mpi (label mpi).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cnn/cnn.hpp"
#include "host/model/distributed.hpp"
#include "test_data_util.hpp"

namespace cnn {
namespace {

using distributed::EpochShards;

// Every (rows, batch, ranks): the ranks' slices of all steps are disjoint and cover
// [0, rows) exactly once, no rank is ever empty, each step's slices are contiguous in rank
// order (so one rank at batch ranks x b sees their union), and the weights average to 1.
TEST(DistributedShards, DisjointCoverEveryRowOnceAndNeverEmpty) {
  for (int ranks : {1, 2, 3, 4, 8})
    for (int batch : {1, 2, 5, 32})
      for (int64_t rows : {int64_t(ranks), int64_t(ranks) + 1, int64_t(7), int64_t(64), int64_t(203), int64_t(1000)}) {
        if (rows < ranks) continue;
        const EpochShards sh(rows, batch, ranks);
        std::vector<int> seen(size_t(rows), 0);
        int64_t next = 0;
        for (int s = 0; s < sh.steps(); ++s) {
          double weights = 0;
          for (int r = 0; r < ranks; ++r) {
            const auto rr = sh.rank_rows(s, r);
            ASSERT_GT(rr.count, 0) << rows << " rows, batch " << batch << ", " << ranks << " ranks, step " << s;
            ASSERT_LE(rr.count, sh.max_rows());
            ASSERT_EQ(rr.first, next) << "slices follow each other in rank order";
            next += rr.count;
            for (int64_t i = rr.first; i < rr.first + rr.count; ++i) ++seen[size_t(i)];
            weights += sh.gradient_weight(s, r);
          }
          EXPECT_NEAR(weights / ranks, 1.0, 1e-6);
        }
        EXPECT_EQ(next, rows);
        for (int64_t i = 0; i < rows; ++i) ASSERT_EQ(seen[size_t(i)], 1) << "row " << i;
      }
}

// One rank: exactly fit's batches before data-parallel training existed.
TEST(DistributedShards, OneRankIsPlainBatches) {
  const EpochShards sh(70, 32, 1);
  ASSERT_EQ(sh.steps(), 3);
  EXPECT_EQ(sh.rank_rows(2, 0).first, 64);
  EXPECT_EQ(sh.rank_rows(2, 0).count, 6);
  EXPECT_EQ(sh.max_rows(), 32);
  EXPECT_EQ(EpochShards(10, 32, 1).max_rows(), 10);
}

// 2 ranks at batch 8 against 1 rank at batch 16: the same rows per step, rank 0 the first half.
TEST(DistributedShards, TwoRanksSplitTheDoubleBatch) {
  const EpochShards two(40, 8, 2), one(40, 16, 1);
  ASSERT_EQ(two.steps(), one.steps());
  for (int s = 0; s < one.steps(); ++s) {
    EXPECT_EQ(two.rank_rows(s, 0).first, one.rank_rows(s, 0).first);
    EXPECT_EQ(two.rank_rows(s, 0).count + two.rank_rows(s, 1).count, one.rank_rows(s, 0).count);
  }
  // The last step (8 rows): 4 and 4, weight 1 each. 41 rows: the ninth row would leave the
  // second rank without any, so it joins the step before (9 rows: 4 + 5, weights 8/9, 10/9).
  EXPECT_EQ(two.gradient_weight(2, 1), 1.0f);
  const EpochShards odd(33, 8, 2);
  ASSERT_EQ(odd.steps(), 2);
  EXPECT_EQ(odd.rank_rows(1, 0).count, 8);
  EXPECT_EQ(odd.rank_rows(1, 1).count, 9);
  EXPECT_FLOAT_EQ(odd.gradient_weight(1, 1), 18.0f / 17.0f);
}

TEST(DistributedShards, FewerRowsThanRanksIsAnError) {
  EXPECT_THROW(EpochShards(3, 8, 4), Error);
}

// Not started by mpirun: rank 0 of 1, and fit with distributed = true is a plain fit.
TEST(Distributed, APlainProcessIsOneRankWithoutMpi) {
  if (distributed::launched_by_mpi()) GTEST_SKIP() << "this test process was started by an MPI launcher";
  EXPECT_EQ(distributed::rank(), 0);
  EXPECT_EQ(distributed::size(), 1);
  auto train = [](bool distributed) {
    Sequential m({Flatten(), Dense(4, "softmax")});
    m.compile("sgd", "scce", 0.1f, {1, 6, 6});
    const auto d = test::make_quadrant_data(40, 1, 6, 6, 3);
    FitOptions f;
    f.epochs = 2;
    f.batch_size = 8;
    f.verbose = 0;
    f.distributed = distributed;
    m.fit(d.x, d.y, f);
    return m.parameters().to_vector();
  };
  EXPECT_EQ(train(true), train(false));
}

// A checkpoint records the world size only for distributed runs (single-process files are
// unchanged) and a resume on another number of ranks says so.
TEST(Distributed, CheckpointWorldSizeAndResumeOnOtherRankCount) {
  const auto dir = std::filesystem::temp_directory_path() / ("cnn_distributed_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  Sequential m({Flatten(), Dense(4, "softmax")});
  m.compile("sgd", "scce", 0.1f, {1, 6, 6});
  const std::string one = (dir / "one.safetensors").string(), two = (dir / "two.safetensors").string();
  m.save_checkpoint(one, {1, {}});
  m.save_checkpoint(two, {1, {}, 2});
  TrainingProgress p;
  Sequential::load_checkpoint(one, &p);
  EXPECT_EQ(p.world_size, 1);
  Sequential::load_checkpoint(two, &p);
  EXPECT_EQ(p.world_size, 2);
  const auto d = test::make_quadrant_data(16, 1, 6, 6, 3);
  FitOptions f;
  f.epochs = 2;
  f.verbose = 0;
  f.resume_from = two;
  try {
    m.fit(d.x, d.y, f);
    ADD_FAILURE() << "resuming a 2-rank checkpoint on one process must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("was written by a run on 2 rank(s)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("mpirun -n 2"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cnn
