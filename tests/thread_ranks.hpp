#pragma once
// Synchronised BatchNormalization's tests without MPI: "ranks" as threads of one process, each
// with its own rows of one batch, exchanging sums through a barrier (summed in rank order, as
// MPI's on 2 ranks). Device sums use RankSum's default path through host memory.
#include <barrier>
#include <vector>

#include "kernels/ops.hpp"

namespace cnn::testing_ranks {

class ThreadRanks {
 public:
  explicit ThreadRanks(int ranks) : slots_(size_t(ranks)), sync_(ranks) {}
  struct Rank final : ops::RankSum {
    Rank(ThreadRanks* a, int r) : all(a), rank(r) {}
    ThreadRanks* all;
    int rank;
    void operator()(double* values, int count) const override {
      all->slots_[size_t(rank)].assign(values, values + count);
      all->sync_.arrive_and_wait();
      for (int i = 0; i < count; ++i) {
        values[i] = 0;
        for (const auto& slot : all->slots_) values[i] += slot[size_t(i)];
      }
      all->sync_.arrive_and_wait();  // nobody overwrites a slot before everyone has read it
    }
  };
  Rank rank(int r) { return Rank(this, r); }

 private:
  std::vector<std::vector<double>> slots_;
  std::barrier<> sync_;
};

}  // namespace cnn::testing_ranks
