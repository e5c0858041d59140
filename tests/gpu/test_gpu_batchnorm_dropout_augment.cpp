// The airbench94 ops on the GPU against the CPU reference: batch normalisation, dropout,
// global pooling, scale and the augmentations (bit for bit), and a whole model through
// compare_devices.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "cnn/check.hpp"
#include "cnn/layers.hpp"
#include "cnn/model.hpp"
#include "gpu_compare.hpp"
#include "thread_ranks.hpp"

namespace cnn {
namespace {
using gputest::DeviceBuffer;
using gputest::GpuTest;
using gputest::OpCheck;
namespace gpu = ops::cuda;
namespace cpu = ops::cpu;

// ---- Batch normalisation ----------------------------------------------------------------------
struct NormCase {
  const char* name;
  int n, c, hw;
  double lo = -1, hi = 1;  // input range
};

const NormCase kNormCases[] = {
    {"nchw_odd", 7, 5, 9 * 11},
    {"batch1_plane", 1, 8, 33},
    {"batch1_features", 1, 5, 1},  // one value per channel: variance 0
    {"batch7_features", 7, 37, 1},
    {"batch256_8x8", 256, 16, 64},
    {"batch256_features", 256, 130, 1},
    {"large_32x32", 16, 64, 1024},
    // Mean 10.5, spread 0.29: a plain sum of squares in float would lose ~1e-4 of the variance.
    {"offset_mean", 9, 3, 49, 10, 11},
};

class BatchNormGpu : public GpuTest, public ::testing::WithParamInterface<NormCase> {
 protected:
  int64_t count() const { return int64_t(GetParam().n) * GetParam().c * GetParam().hw; }
  // The batch mean and invstd of x, computed on the host (float), as forward would save them.
  static void statistics(const NormCase& k, const std::vector<float>& x, float eps, std::vector<float>& mean,
                         std::vector<float>& invstd) {
    mean.resize(size_t(k.c));
    invstd.resize(size_t(k.c));
    std::vector<float> y(x.size());
    cpu::batchnorm_forward_training<float>(k.n, k.c, k.hw, {.x = x.data(), .eps = eps, .momentum = 0.1f,
                                                            .save_mean = mean.data(), .save_invstd = invstd.data(),
                                                            .y = y.data()});
  }
};

TEST_P(BatchNormGpu, ForwardTrainingWithRunningUpdate) {
  const NormCase k = GetParam();
  for (bool affine : {true, false}) {
    SCOPED_TRACE(affine ? "gamma and beta" : "no affine");
    OpCheck op(ctx(), 71);
    const int x = op.input("x", count(), k.lo, k.hi), gamma = op.input("gamma", k.c, 0.5, 1.5),
              beta = op.input("beta", k.c);
    const int rm = op.state("running_mean", op.random(k.c)), rv = op.state("running_var", op.random(k.c, 0.5, 2));
    const int y = op.output("y", count()), mean = op.output("save_mean", k.c), invstd = op.output("save_invstd", k.c);
    op.run(
        [&](auto& d) {
          gpu::batchnorm_forward_training(
              ctx(), k.n, k.c, k.hw,
              {.x = d[x], .gamma = affine ? d[gamma] : nullptr, .beta = affine ? d[beta] : nullptr, .eps = 1e-5f,
               .momentum = 0.4f, .running_mean = d[rm], .running_var = d[rv], .save_mean = d[mean],
               .save_invstd = d[invstd], .y = d[y]});
        },
        [&](auto& h) {
          cpu::batchnorm_forward_training<double>(
              k.n, k.c, k.hw,
              {.x = h[x], .gamma = affine ? h[gamma] : nullptr, .beta = affine ? h[beta] : nullptr,
               .eps = double(1e-5f), .momentum = double(0.4f), .running_mean = h[rm], .running_var = h[rv],
               .save_mean = h[mean], .save_invstd = h[invstd], .y = h[y]});
        });
  }
}

TEST_P(BatchNormGpu, ForwardInference) {
  const NormCase k = GetParam();
  OpCheck op(ctx(), 72);
  const int x = op.input("x", count(), k.lo, k.hi), gamma = op.input("gamma", k.c, 0.5, 1.5),
            beta = op.input("beta", k.c), rm = op.input("running_mean", k.c, k.lo, k.hi),
            rv = op.input("running_var", k.c, 0.1, 2);
  const int y = op.output("y", count());
  op.run(
      [&](auto& d) {
        gpu::batchnorm_forward_inference(ctx(), k.n, k.c, k.hw,
                                         {.x = d[x], .gamma = d[gamma], .beta = d[beta], .running_mean = d[rm],
                                          .running_var = d[rv], .eps = 1e-3f, .y = d[y]});
      },
      [&](auto& h) {
        cpu::batchnorm_forward_inference<double>(k.n, k.c, k.hw,
                                                 {.x = h[x], .gamma = h[gamma], .beta = h[beta], .running_mean = h[rm],
                                                  .running_var = h[rv], .eps = double(1e-3f), .y = h[y]});
      });
}

TEST_P(BatchNormGpu, BackwardTraining) {
  const NormCase k = GetParam();
  for (int variant = 0; variant < 2; ++variant) {
    SCOPED_TRACE(variant == 0 ? "all gradients" : "dx only, no gamma");
    OpCheck op(ctx(), 73);
    std::vector<float> xv = op.random(count(), k.lo, k.hi), mean_v, invstd_v;
    statistics(k, xv, 1e-5f, mean_v, invstd_v);
    const int x = op.input("x", xv), dy = op.input("dy", count()), gamma = op.input("gamma", k.c, 0.5, 1.5),
              mean = op.input("save_mean", mean_v), invstd = op.input("save_invstd", invstd_v);
    // The parameter gradients are sums of up to 16k random-signed terms: 1e-4 (still far below
    // the O(1) of a wrong term).
    const int dx = op.output("dx", count());
    const int dgamma = variant == 0 ? op.output("dgamma", k.c, 1e-4) : -1;
    const int dbeta = variant == 0 ? op.output("dbeta", k.c, 1e-4) : -1;
    op.run(
        [&](auto& d) {
          gpu::batchnorm_backward_training(
              ctx(), k.n, k.c, k.hw,
              {.x = d[x], .dy = d[dy], .gamma = variant == 0 ? d[gamma] : nullptr, .save_mean = d[mean],
               .save_invstd = d[invstd], .dx = d[dx], .dgamma = variant == 0 ? d[dgamma] : nullptr,
               .dbeta = variant == 0 ? d[dbeta] : nullptr});
        },
        [&](auto& h) {
          cpu::batchnorm_backward_training<double>(
              k.n, k.c, k.hw,
              {.x = h[x], .dy = h[dy], .gamma = variant == 0 ? h[gamma] : nullptr, .save_mean = h[mean],
               .save_invstd = h[invstd], .dx = h[dx], .dgamma = variant == 0 ? h[dgamma] : nullptr,
               .dbeta = variant == 0 ? h[dbeta] : nullptr});
        });
  }
}

TEST_P(BatchNormGpu, BackwardInference) {
  const NormCase k = GetParam();
  OpCheck op(ctx(), 74);
  const int x = op.input("x", count(), k.lo, k.hi), dy = op.input("dy", count()),
            gamma = op.input("gamma", k.c, 0.5, 1.5), rm = op.input("running_mean", k.c, k.lo, k.hi),
            rv = op.input("running_var", k.c, 0.1, 2);
  const int dx = op.output("dx", count()), dgamma = op.output("dgamma", k.c, 1e-4), dbeta = op.output("dbeta", k.c, 1e-4);
  op.run(
      [&](auto& d) {
        gpu::batchnorm_backward_inference(ctx(), k.n, k.c, k.hw,
                                          {.x = d[x], .dy = d[dy], .gamma = d[gamma], .running_mean = d[rm],
                                           .running_var = d[rv], .eps = 1e-5f, .dx = d[dx], .dgamma = d[dgamma],
                                           .dbeta = d[dbeta]});
      },
      [&](auto& h) {
        cpu::batchnorm_backward_inference<double>(k.n, k.c, k.hw,
                                                  {.x = h[x], .dy = h[dy], .gamma = h[gamma], .running_mean = h[rm],
                                                   .running_var = h[rv], .eps = double(1e-5f), .dx = h[dx],
                                                   .dgamma = h[dgamma], .dbeta = h[dbeta]});
      });
}

INSTANTIATE_TEST_SUITE_P(Shapes, BatchNormGpu, ::testing::ValuesIn(kNormCases),
                         [](const auto& info) { return std::string(info.param.name); });

// Synchronised statistics (ops.hpp; FitOptions::sync_batchnorm) on the GPU: two ranks as two
// threads, each with its own context and its own rows of one batch, their device sums
// exchanged through host memory (RankSum's default device path; the communicator's NCCL path
// is GpuTest.NcclSumOfDoublesOverOneRank*), against the CPU reference on the whole batch in
// double. Each rank's dy is the gradient of its own mean loss (G / n_r), the whole batch's
// G / n. A rank without rows joins every reduction. Tolerance: the default 1e-5 normwise (float
// sums of up to ~2,000 terms, ~1e-6); per-rank statistics are off by ~0.1 on these inputs.
struct SyncNormCase {
  const char* name;
  int n, c, hw, first_rows;  // rank 0 takes first_rows of the n, rank 1 the rest
  double lo, hi;
};

class SyncBatchNormGpu : public GpuTest, public ::testing::WithParamInterface<SyncNormCase> {};

TEST_P(SyncBatchNormGpu, StatisticsAndGradientsOverTwoRanksAreTheWholeBatchs) {
  const SyncNormCase k = GetParam();
  const int per = k.c * k.hw, split[3] = {0, k.first_rows, k.n};
  Rng rng(91);
  std::vector<float> x(size_t(k.n) * per), G(x.size()), gamma(size_t(k.c)), beta(size_t(k.c));
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = float(rng.uniform(k.lo, k.hi) + 0.25 * double(i / size_t(per) % 3));  // the rows' means differ
    G[i] = float(rng.uniform(-1, 1));
  }
  for (int j = 0; j < k.c; ++j) {
    gamma[size_t(j)] = float(rng.uniform(0.5, 1.5));
    beta[size_t(j)] = float(rng.uniform(-1, 1));
  }
  struct Result {
    std::vector<float> y, dx, mean, invstd, rm, rv, dgamma, dbeta;
  };
  struct Reference {
    std::vector<double> y, dx, mean, invstd, rm, rv, dgamma, dbeta;
  };
  const float eps = 1e-5f, momentum = 0.3f;
  // The whole batch on the CPU, in double.
  Reference whole{std::vector<double>(x.size()), std::vector<double>(x.size()), std::vector<double>(size_t(k.c)),
               std::vector<double>(size_t(k.c)), std::vector<double>(size_t(k.c), 0.2),
               std::vector<double>(size_t(k.c), 1.5), std::vector<double>(size_t(k.c)),
               std::vector<double>(size_t(k.c))};
  {
    const std::vector<double> xd(x.begin(), x.end()), gd(gamma.begin(), gamma.end()), bd(beta.begin(), beta.end());
    std::vector<double> dy(G.begin(), G.end());
    for (double& v : dy) v /= k.n;
    cpu::batchnorm_forward_training<double>(
        k.n, k.c, k.hw,
        {.x = xd.data(), .gamma = gd.data(), .beta = bd.data(), .eps = double(eps), .momentum = double(momentum),
         .running_mean = whole.rm.data(), .running_var = whole.rv.data(), .save_mean = whole.mean.data(),
         .save_invstd = whole.invstd.data(), .y = whole.y.data()});
    cpu::batchnorm_backward_training<double>(
        k.n, k.c, k.hw,
        {.x = xd.data(), .dy = dy.data(), .gamma = gd.data(), .save_mean = whole.mean.data(),
         .save_invstd = whole.invstd.data(), .dx = whole.dx.data(), .dgamma = whole.dgamma.data(),
         .dbeta = whole.dbeta.data()});
  }
  // One rank on the GPU: its rows' forward and backward.
  auto on_gpu = [&](int r, const ops::RankSum* ranks, Result& out) {
    cuda::Context* c = cuda::create_context();
    const int rows = split[r + 1] - split[r];
    const size_t count = size_t(rows) * per, ch = size_t(k.c) * sizeof(float);
    std::vector<float> xr(x.begin() + split[r] * per, x.begin() + split[r + 1] * per);
    std::vector<float> dyr(G.begin() + split[r] * per, G.begin() + split[r + 1] * per);
    for (float& v : dyr) v /= float(rows);
    DeviceBuffer dx_in(count * sizeof(float)), ddy(count * sizeof(float)), dy_out(count * sizeof(float)),
        ddx(count * sizeof(float)), dgam(ch), dbet(ch), drm(ch), drv(ch), dmean(ch), dinv(ch), ddg(ch), ddb(ch);
    dx_in.upload(xr);
    ddy.upload(dyr);
    dgam.upload(gamma);
    dbet.upload(beta);
    drm.upload(std::vector<float>(size_t(k.c), 0.2f));
    drv.upload(std::vector<float>(size_t(k.c), 1.5f));
    const std::vector<float> nan(size_t(k.c), std::nanf(""));
    for (DeviceBuffer* b : {&dmean, &dinv, &ddg, &ddb}) b->upload(nan);
    dy_out.upload(std::vector<float>(count, std::nanf("")));
    ddx.upload(std::vector<float>(count, std::nanf("")));
    auto f = [](const DeviceBuffer& b) { return static_cast<float*>(b.get()); };
    gpu::batchnorm_forward_training(*c, rows, k.c, k.hw,
                                    {.x = f(dx_in), .gamma = f(dgam), .beta = f(dbet), .eps = eps,
                                     .momentum = momentum, .running_mean = f(drm), .running_var = f(drv),
                                     .save_mean = f(dmean), .save_invstd = f(dinv), .y = f(dy_out),
                                     .across_ranks = ranks});
    gpu::batchnorm_backward_training(*c, rows, k.c, k.hw,
                                     {.x = f(dx_in), .dy = f(ddy), .gamma = f(dgam), .save_mean = f(dmean),
                                      .save_invstd = f(dinv), .dx = f(ddx), .dgamma = f(ddg), .dbeta = f(ddb),
                                      .across_ranks = ranks});
    cuda::synchronize(*c);
    auto down = [](const DeviceBuffer& b) { return b.download<float>(); };
    out = Result{down(dy_out), down(ddx), down(dmean), down(dinv), down(drm), down(drv), down(ddg), down(ddb)};
    cuda::destroy_context(c);
  };
  auto on_two_ranks = [&](bool synchronised) {
    testing_ranks::ThreadRanks world(2);
    Result part[2];
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r)
      threads.emplace_back([&, r] {
        const auto me = world.rank(r);
        on_gpu(r, synchronised ? &me : nullptr, part[r]);
      });
    for (auto& t : threads) t.join();
    return std::vector<Result>{part[0], part[1]};
  };
  const std::vector<Result> synced = on_two_ranks(true);
  // The reference's values [first, first + count), in float (a relative 6e-8 off, far below the tolerance).
  auto slice = [](const std::vector<double>& v, size_t first, size_t count) {
    return std::vector<float>(v.begin() + long(first), v.begin() + long(first + count));
  };
  auto all = [&](const std::vector<double>& v) { return slice(v, 0, v.size()); };
  // NaN (an element never written) fails every comparison below.
  auto rel = [](const std::vector<float>& a, const std::vector<float>& b) { return gputest::relative(a, b); };
  const double tol = gputest::kDefaultTolerance;
  std::vector<float> dgamma(size_t(k.c), 0.f), dbeta(size_t(k.c), 0.f);
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const Result& p = synced[size_t(r)];
    const int rows = split[r + 1] - split[r];
    // Every rank, with rows or not, has the whole batch's statistics.
    EXPECT_LT(rel(p.mean, all(whole.mean)), tol);
    EXPECT_LT(rel(p.invstd, all(whole.invstd)), tol);
    EXPECT_LT(rel(p.rm, all(whole.rm)), tol);
    EXPECT_LT(rel(p.rv, all(whole.rv)), tol);  // unbiased with the whole batch's count
    if (rows > 0) {
      EXPECT_LT(rel(p.y, slice(whole.y, size_t(split[r]) * per, size_t(rows) * per)), tol);
      std::vector<float> scaled = p.dx;  // the rank's own mean loss: n / n_r times the whole batch's
      for (float& v : scaled) v *= float(rows) / float(k.n);
      EXPECT_LT(rel(scaled, slice(whole.dx, size_t(split[r]) * per, size_t(rows) * per)), tol);
    }
    for (int j = 0; j < k.c; ++j) {  // the gradient all-reduce's n_r / n weighting gives the whole batch's
      ASSERT_TRUE(std::isfinite(p.dgamma[size_t(j)]) && std::isfinite(p.dbeta[size_t(j)])) << "channel " << j;
      dgamma[size_t(j)] += p.dgamma[size_t(j)] * float(rows) / float(k.n);
      dbeta[size_t(j)] += p.dbeta[size_t(j)] * float(rows) / float(k.n);
    }
  }
  EXPECT_LT(rel(dgamma, all(whole.dgamma)), 1e-4);  // sums of random-signed terms, as BackwardTraining's
  EXPECT_LT(rel(dbeta, all(whole.dbeta)), 1e-4);
  if (k.first_rows > 0 && k.first_rows < k.n) {  // the case must tell synchronised from per-rank statistics
    const std::vector<Result> local = on_two_ranks(false);
    EXPECT_GT(rel(local[0].mean, all(whole.mean)), 100 * tol);
  }
}

const SyncNormCase kSyncNormCases[] = {
    {"rows_2_of_7", 7, 5, 9 * 11, 2, -1, 1},
    {"offset_mean_3_of_9", 9, 3, 49, 3, 10, 11},  // the shift by the global mean matters here
    {"rank1_without_rows", 7, 4, 25, 7, -1, 1},
    {"batch_64_of_256", 256, 16, 64, 64, -1, 1},
};
INSTANTIATE_TEST_SUITE_P(Splits, SyncBatchNormGpu, ::testing::ValuesIn(kSyncNormCases),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- Dropout and scale -------------------------------------------------------------------------

// Downloads a device buffer of floats.
std::vector<float> download(const DeviceBuffer& b) { return b.download<float>(); }

TEST_F(GpuTest, DropoutMasksEqualTheCpusBitForBit) {
  for (int64_t count : {int64_t(1), int64_t(1000), int64_t(100003)})
    for (float rate : {0.0f, 0.1f, 0.5f, 0.9f})
      for (uint64_t seed : {uint64_t(0), uint64_t(12345), ~uint64_t(0)}) {
        SCOPED_TRACE("count " + std::to_string(count) + " rate " + std::to_string(rate) + " seed " + std::to_string(seed));
        std::vector<float> x(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) x[size_t(i)] = 0.5f + float(i % 13);
        std::vector<float> want(x.size()), want_back(x.size());
        cpu::dropout_forward<float>(count, rate, seed, x.data(), want.data());
        cpu::dropout_backward<float>(count, rate, seed, x.data(), want_back.data());
        DeviceBuffer dx(x.size() * sizeof(float)), dy(x.size() * sizeof(float)), dg(x.size() * sizeof(float));
        dx.upload(x);
        dy.upload(std::vector<float>(x.size(), std::nanf("")));
        dg.upload(std::vector<float>(x.size(), std::nanf("")));
        gpu::dropout_forward(ctx(), count, rate, seed, static_cast<float*>(dx.get()), static_cast<float*>(dy.get()));
        gpu::dropout_backward(ctx(), count, rate, seed, static_cast<float*>(dx.get()), static_cast<float*>(dg.get()));
        cuda::synchronize(ctx());
        EXPECT_EQ(download(dy), want);
        EXPECT_EQ(download(dg), want_back);
      }
}

TEST_F(GpuTest, DropoutAgainstTheDoubleReferenceAndInPlace) {
  const int64_t count = 4099;
  OpCheck op(ctx(), 75);
  const int x = op.input("x", count), dy = op.input("dy", count);
  const int y = op.output("y", count), dx = op.output("dx", count);
  const int inplace = op.state("x = y in place", op.random(count));
  op.run(
      [&](auto& d) {
        gpu::dropout_forward(ctx(), count, 0.3f, 99, d[x], d[y]);
        gpu::dropout_backward(ctx(), count, 0.3f, 99, d[dy], d[dx]);
        gpu::dropout_forward(ctx(), count, 0.3f, 98, d[inplace], d[inplace]);
      },
      [&](auto& h) {
        cpu::dropout_forward<double>(count, 0.3f, 99, h[x], h[y]);
        cpu::dropout_backward<double>(count, 0.3f, 99, h[dy], h[dx]);
        cpu::dropout_forward<double>(count, 0.3f, 98, h[inplace], h[inplace]);
      });
  EXPECT_THROW(gpu::dropout_forward(ctx(), 1, 1.0f, 0, nullptr, nullptr), Error);
}

TEST_F(GpuTest, ScaleOddCountsAndInPlace) {
  for (int64_t count : {int64_t(1), int64_t(777), int64_t(100003)}) {
    OpCheck op(ctx(), 76);
    const int x = op.input("x", count);
    const int y = op.output("y", count);
    const int g = op.state("in place", op.random(count));
    op.run(
        [&](auto& d) {
          gpu::scale(ctx(), count, 1.0f / 9, d[x], d[y]);
          gpu::scale(ctx(), count, -3.0f, d[g], d[g]);
        },
        [&](auto& h) {
          cpu::scale<double>(count, double(1.0f / 9), h[x], h[y]);
          cpu::scale<double>(count, -3.0, h[g], h[g]);
        });
  }
}

// ---- Global pooling ----------------------------------------------------------------------------
struct GlobalCase {
  const char* name;
  int n, c, hw;
};

class GlobalPoolGpu : public GpuTest, public ::testing::WithParamInterface<GlobalCase> {};

TEST_P(GlobalPoolGpu, AverageAndMaxForwardAndBackward) {
  const GlobalCase k = GetParam();
  const int64_t count = int64_t(k.n) * k.c * k.hw, planes = int64_t(k.n) * k.c;
  for (bool ties : {false, true}) {
    SCOPED_TRACE(ties ? "many ties" : "random values");
    OpCheck op(ctx(), 77);
    std::vector<float> xv = op.random(count);
    if (ties)
      for (auto& v : xv) v = 0.5f * float(op.rng().below(3));
    const int x = op.input("x", xv), dy = op.input("dy", planes);
    const int avg = op.output("avg y", planes), avg_dx = op.output("avg dx", count), max = op.output("max y", planes),
              max_dx = op.output("max dx", count);
    op.run(
        [&](auto& d) {
          gpu::global_avgpool_forward(ctx(), k.n, k.c, k.hw, d[x], d[avg]);
          gpu::global_avgpool_backward(ctx(), k.n, k.c, k.hw, d[dy], d[avg_dx]);
          gpu::global_maxpool_forward(ctx(), k.n, k.c, k.hw, d[x], d[max]);
          gpu::global_maxpool_backward(ctx(), k.n, k.c, k.hw, d[x], d[dy], d[max_dx]);
        },
        [&](auto& h) {
          cpu::global_avgpool_forward<double>(k.n, k.c, k.hw, h[x], h[avg]);
          cpu::global_avgpool_backward<double>(k.n, k.c, k.hw, h[dy], h[avg_dx]);
          cpu::global_maxpool_forward<double>(k.n, k.c, k.hw, h[x], h[max]);
          cpu::global_maxpool_backward<double>(k.n, k.c, k.hw, h[x], h[dy], h[max_dx]);
        });
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GlobalPoolGpu,
                         ::testing::Values(GlobalCase{"batch1_1x1", 1, 3, 1}, GlobalCase{"batch7_7x9", 7, 5, 63},
                                           GlobalCase{"batch256_4x4", 256, 17, 16},
                                           GlobalCase{"batch2_32x32", 2, 64, 1024},
                                           GlobalCase{"batch3_33", 3, 2, 33}),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- Augmentation: the GPU's batch is the CPU's, bit for bit ------------------------------------
struct AugmentCase {
  const char* name;
  int n, c, h, w;
  ops::AugmentSpec spec;
};

class AugmentGpu : public GpuTest, public ::testing::WithParamInterface<AugmentCase> {
 protected:
  // Runs `gpu_op` on a device copy of x (output poisoned with NaN) and compares with `want`.
  template <class GpuOp>
  void expect_same(const std::vector<float>& x, const std::vector<float>& want, GpuOp gpu_op) {
    DeviceBuffer dx(x.size() * sizeof(float)), dy(x.size() * sizeof(float));
    dx.upload(x);
    dy.upload(std::vector<float>(x.size(), std::nanf("")));
    gpu_op(static_cast<const float*>(dx.get()), static_cast<float*>(dy.get()));
    cuda::synchronize(ctx());
    const std::vector<float> got = dy.download<float>();
    size_t mismatches = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (!(got[i] == want[i]) && mismatches++ == 0) first = i;
    EXPECT_EQ(mismatches, 0u) << "first at " << first << ": GPU " << got[first] << " vs CPU " << want[first];
  }
};

TEST_P(AugmentGpu, SameBatchAsTheCpuForEverySeed) {
  const AugmentCase k = GetParam();
  Rng rng(78);
  std::vector<float> x(size_t(k.n) * k.c * k.h * k.w);
  for (auto& v : x) v = float(rng.uniform(-1, 1));
  for (uint64_t seed : {uint64_t(0), uint64_t(1), uint64_t(987654321), ~uint64_t(0)}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::vector<float> want(x.size());
    cpu::augment_images<float>(k.n, k.c, k.h, k.w, x.data(), want.data(), k.spec, seed);
    expect_same(x, want, [&](const float* d_x, float* d_y) {
      gpu::augment_images(ctx(), k.n, k.c, k.h, k.w, d_x, d_y, k.spec, seed);
    });
  }
}

TEST_P(AugmentGpu, FlipAndTranslateForTestTimeAugmentation) {
  const AugmentCase k = GetParam();
  Rng rng(79);
  std::vector<float> x(size_t(k.n) * k.c * k.h * k.w), want(x.size());
  for (auto& v : x) v = float(rng.uniform(-1, 1));
  cpu::flip_images<float>(k.n, k.c, k.h, k.w, x.data(), want.data());
  expect_same(x, want, [&](const float* d_x, float* d_y) { gpu::flip_images(ctx(), k.n, k.c, k.h, k.w, d_x, d_y); });
  for (auto [dx, dy] : {std::pair{-1, -1}, std::pair{1, 1}, std::pair{k.w - 1, 0}, std::pair{0, 1 - k.h}}) {
    if (std::abs(dx) >= k.w || std::abs(dy) >= k.h) continue;  // (the one-row image)
    SCOPED_TRACE("shift " + std::to_string(dx) + "," + std::to_string(dy));
    cpu::translate_images<float>(k.n, k.c, k.h, k.w, x.data(), want.data(), dx, dy);
    expect_same(x, want, [&](const float* d_x, float* d_y) {
      gpu::translate_images(ctx(), k.n, k.c, k.h, k.w, d_x, d_y, dx, dy);
    });
  }
}

ops::AugmentSpec spec(int translate, ops::FlipMode flip, int cutout, int64_t epoch = 0, int64_t first = 0) {
  ops::AugmentSpec s;
  s.translate = translate;
  s.flip = flip;
  s.cutout = cutout;
  s.epoch = epoch;
  s.first_index = first;
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Specs, AugmentGpu,
    ::testing::Values(AugmentCase{"airbench_batch256", 256, 3, 32, 32, spec(2, ops::FlipMode::Alternate, 0, 3)},
                      AugmentCase{"random_flip_cutout_batch7", 7, 3, 9, 7, spec(3, ops::FlipMode::Random, 4)},
                      AugmentCase{"batch1_everything", 1, 2, 5, 6, spec(4, ops::FlipMode::Random, 5, 0, 41)},
                      AugmentCase{"cutout_whole_image", 5, 1, 4, 4, spec(0, ops::FlipMode::None, 4)},
                      AugmentCase{"identity", 3, 3, 8, 8, spec(0, ops::FlipMode::None, 0)},
                      AugmentCase{"one_row", 4, 2, 1, 11, spec(0, ops::FlipMode::Random, 1, 1, 7)}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- A whole model: GPU against CPU through compare_devices -------------------------------------
// No conv bias in front of a BatchNormalization (its gradient is exactly 0, and a relative
// error of rounding noise means nothing), and no global AVERAGE right after a batch-of-one
// normalisation (that output is beta exactly, whatever comes before).
TEST_F(GpuTest, ModelWithTheNewLayersMatchesTheCpu) {
  Sequential m({Conv2D(Conv2DOptions{.filters = 8, .kernel_size = 3, .padding = "same", .use_bias = false}),
                BatchNormalization(BatchNormOptions{.momentum = 0.4f, .epsilon = 1e-12f, .scale = false}),
                ActivationLayer("gelu"), MaxPooling2D(2), Dropout(0.25f), GlobalMaxPooling2D(),
                Dense(DenseOptions{.units = 10, .use_bias = false, .scale = 1.0f / 9})});
  CompileOptions o;
  o.loss = "scce";
  o.from_logits = true;
  o.optimizer = "sgd";
  o.momentum = 0.9f;
  o.nesterov = true;
  o.learning_rate = 0.1f;
  o.label_smoothing = 0.2f;
  o.input_shape = {3, 10, 10};
  m.compile(o);
  CompareOptions c;
  c.batch_size = 7;
  const CheckReport r = compare_devices(m, c);
  EXPECT_TRUE(r.passed()) << r.table();
  // Per layer its output, input grad and one row per parameter (conv and dense weights, BN's 4),
  // then the loss and the updated parameters.
  EXPECT_EQ(r.checked_rows(), 2u * 7 + 1 + 4 + 1 + 2) << r.table();

  Sequential avg({Conv2D(Conv2DOptions{.filters = 4, .padding = "same", .use_bias = false}), BatchNormalization(),
                  ActivationLayer("gelu"), GlobalAveragePooling2D(),
                  Dense(DenseOptions{.units = 3, .activation = "softmax", .scale = 0.5f})});
  avg.compile("sgd", "cce", 0.05f, {2, 7, 9});
  c.batch_size = 1;
  const CheckReport r1 = compare_devices(avg, c);
  EXPECT_TRUE(r1.passed()) << r1.table();
  EXPECT_EQ(r1.checked_rows(), 2u * 5 + 1 + 4 + 2 + 2) << r1.table();  // conv weight, BN's 4, dense weight and bias

  // Normalisation over features ([N, F]). (SGD: Adam's first step, lr g / (|g| + eps), turns
  // float noise on near-zero gradients into differences of order lr.)
  Sequential features({Dense(16, "relu"), BatchNormalization(BatchNormOptions{.center = false}), Dropout(0.1f),
                       Dense(4, "softmax")});
  features.compile("sgd", "scce", 0.05f, {12});
  c.batch_size = 16;
  const CheckReport r2 = compare_devices(features, c);
  EXPECT_TRUE(r2.passed()) << r2.table();
  EXPECT_EQ(r2.checked_rows(), 2u * 4 + 2 + 4 + 2 + 2) << r2.table();  // 2 dense weights and biases, BN's 4
}

}  // namespace
}  // namespace cnn
