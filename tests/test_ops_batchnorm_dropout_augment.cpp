// Known values and properties of the airbench94 ops on the CPU: batch normalisation,
// dropout, global pooling, scale, the counter-based random numbers and the augmentations.
// (Gradient checks: test_gradcheck_ops.cpp; CPU against GPU: gpu/test_gpu_batchnorm_dropout_augment.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

#include "cnn/error.hpp"
#include "cnn/rng.hpp"
#include "kernels/augment_map.hpp"
#include "kernels/ops.hpp"
#include "kernels/random.hpp"
#include "thread_ranks.hpp"

namespace cnn {
namespace {
namespace cpu = ops::cpu;

// ---- Batch normalisation --------------------------------------------------------------------

TEST(BatchNormOp, TrainingKnownValuesAndRunningUpdate) {
  // One channel of [n = 4, features = 1]: mean 2.5, biased variance 1.25, unbiased 5/3.
  const std::vector<double> x{1, 2, 3, 4};
  const double gamma = 2, beta = 0.5, eps = 1e-5, momentum = 0.1;
  std::vector<double> y(4), mean(1), invstd(1), rm{1.0}, rv{2.0};
  cpu::batchnorm_forward_training<double>(4, 1, 1, {.x = x.data(), .gamma = &gamma, .beta = &beta, .eps = eps,
                                                     .momentum = momentum, .running_mean = rm.data(),
                                                     .running_var = rv.data(), .save_mean = mean.data(),
                                                     .save_invstd = invstd.data(), .y = y.data()});
  EXPECT_DOUBLE_EQ(mean[0], 2.5);
  EXPECT_DOUBLE_EQ(invstd[0], 1 / std::sqrt(1.25 + eps));
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[size_t(i)], gamma * (x[size_t(i)] - 2.5) / std::sqrt(1.25 + eps) + beta, 1e-12);
  EXPECT_NEAR(rm[0], 0.9 * 1.0 + 0.1 * 2.5, 1e-15);
  EXPECT_NEAR(rv[0], 0.9 * 2.0 + 0.1 * (5.0 / 3.0), 1e-15);  // unbiased variance in the running update
}

TEST(BatchNormOp, NchwStatisticsAreOverBatchAndPlanePerChannel) {
  // n = 2, c = 2, hw = 2: channel 0 holds {0, 2} and {4, 6}; channel 1 holds {1, 1} and {1, 1}.
  const std::vector<float> x{0, 2, 1, 1, 4, 6, 1, 1};
  std::vector<float> y(8), mean(2), invstd(2);
  cpu::batchnorm_forward_training<float>(2, 2, 2, {.x = x.data(), .eps = 1e-5f, .momentum = 0.1f, .save_mean = mean.data(),
                                                    .save_invstd = invstd.data(), .y = y.data()});
  EXPECT_FLOAT_EQ(mean[0], 3.0f);  // variance (9 + 1 + 1 + 9) / 4 = 5
  EXPECT_FLOAT_EQ(mean[1], 1.0f);  // variance 0: y = 0, invstd = 1 / sqrt(eps)
  EXPECT_NEAR(invstd[0], 1 / std::sqrt(5.0 + 1e-5), 1e-6);
  EXPECT_NEAR(invstd[1], 1 / std::sqrt(1e-5), 1e-1);
  EXPECT_NEAR(y[4], 1 / std::sqrt(5.0), 1e-5);
  for (int i : {2, 3, 6, 7}) EXPECT_EQ(y[size_t(i)], 0.0f);
}

TEST(BatchNormOp, SingleValuePerChannelKeepsTheBiasedVarianceInTheRunningUpdate) {
  const double x = 3, eps = 1e-5;
  double y = 0, mean = 0, invstd = 0, rm = 0, rv = 1;
  cpu::batchnorm_forward_training<double>(1, 1, 1, {.x = &x, .eps = eps, .momentum = 0.5, .running_mean = &rm,
                                                     .running_var = &rv, .save_mean = &mean, .save_invstd = &invstd,
                                                     .y = &y});
  EXPECT_EQ(y, 0.0);
  EXPECT_DOUBLE_EQ(rm, 1.5);
  EXPECT_DOUBLE_EQ(rv, 0.5);  // m = 1: no m / (m - 1) correction (its variance is 0)
}

TEST(BatchNormOp, InferenceUsesTheRunningStatistics) {
  const std::vector<double> x{1, -1, 3, 5}, rm{1, 2}, rv{4, 0.25}, gamma{3, 1}, beta{0, -1};
  std::vector<double> y(4);
  // [n = 2, features = 2]
  cpu::batchnorm_forward_inference<double>(2, 2, 1, {.x = x.data(), .gamma = gamma.data(), .beta = beta.data(),
                                                      .running_mean = rm.data(), .running_var = rv.data(), .eps = 0.0,
                                                      .y = y.data()});
  EXPECT_DOUBLE_EQ(y[0], 3 * (1 - 1) / 2.0);
  EXPECT_DOUBLE_EQ(y[1], 1 * (-1 - 2) / 0.5 - 1);
  EXPECT_DOUBLE_EQ(y[2], 3 * (3 - 1) / 2.0);
  EXPECT_DOUBLE_EQ(y[3], 1 * (5 - 2) / 0.5 - 1);
}

TEST(BatchNormOp, LargeMeanLosesNoPrecision) {
  // float inputs around 1e4 with spread 1: the two-pass variance stays exact to float rounding.
  std::vector<float> x(1000), y(1000);
  for (int i = 0; i < 1000; ++i) x[size_t(i)] = 10000.0f + float(i % 10) - 4.5f;
  float mean = 0, invstd = 0;
  cpu::batchnorm_forward_training<float>(1000, 1, 1, {.x = x.data(), .eps = 0.0f, .momentum = 0.1f, .save_mean = &mean,
                                                       .save_invstd = &invstd, .y = y.data()});
  EXPECT_FLOAT_EQ(mean, 10000.0f);
  EXPECT_NEAR(invstd, 1 / std::sqrt(8.25), 1e-6);  // variance of 0..9 is 8.25
}

TEST(BatchNormOp, BackwardGradientOfAConstantUpstreamIsZero) {
  // The normalised output sums to 0 per channel whatever x is, so a constant dy gives dx = 0.
  const std::vector<double> x{0.3, -2, 5, 1, 1.5, 0.1};
  std::vector<double> y(6), mean(1), invstd(1), dx(6), dg(1), db(1);
  const std::vector<double> dy(6, 0.7);
  cpu::batchnorm_forward_training<double>(6, 1, 1, {.x = x.data(), .eps = 1e-5, .momentum = 0.1,
                                                     .save_mean = mean.data(), .save_invstd = invstd.data(),
                                                     .y = y.data()});
  cpu::batchnorm_backward_training<double>(6, 1, 1, {.x = x.data(), .dy = dy.data(), .save_mean = mean.data(),
                                                      .save_invstd = invstd.data(), .dx = dx.data(), .dgamma = dg.data(),
                                                      .dbeta = db.data()});
  for (double v : dx) EXPECT_NEAR(v, 0.0, 1e-12);
  EXPECT_NEAR(db[0], 4.2, 1e-12);
  EXPECT_NEAR(dg[0], 0.0, 1e-12);
}

TEST(BatchNormOp, SynchronisedStatisticsOverRanksAreTheWholeBatchs) {
  using testing_ranks::ThreadRanks;
  // One batch of 5 samples, [c = 3, hw = 4], split 2 + 3 between two ranks. Each rank's
  // upstream gradient is that of its own mean loss (G / n_r for per-row terms G), the whole
  // batch's is G / 5; fit weights rank r's parameter gradients by n_r / 5.
  const int n = 5, c = 3, hw = 4, per = c * hw, split[3] = {0, 2, 5};
  Rng rng(3);
  std::vector<double> x(size_t(n * per)), G(x.size()), gamma{1.5, -0.5, 2}, beta{0.1, 0, -1};
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = rng.uniform(-2, 3) + double(i % 3);  // channel means differ
    G[i] = rng.uniform(-1, 1);
  }
  struct Result {
    std::vector<double> y, dx, mean, invstd, rm, rv, dgamma, dbeta;
  };
  auto run = [&](int first, int rows, double dy_scale, const ops::RankSum* ranks) {
    Result r{std::vector<double>(size_t(rows * per)), std::vector<double>(size_t(rows * per)),
             std::vector<double>(c), std::vector<double>(c), std::vector<double>(c, 0.2),
             std::vector<double>(c, 1.5), std::vector<double>(c), std::vector<double>(c)};
    const double* xr = x.data() + first * per;
    std::vector<double> dy(G.begin() + first * per, G.begin() + (first + rows) * per);
    for (double& v : dy) v *= dy_scale;
    cpu::batchnorm_forward_training<double>(rows, c, hw, {.x = xr, .gamma = gamma.data(), .beta = beta.data(),
                                                          .eps = 1e-5, .momentum = 0.3, .running_mean = r.rm.data(),
                                                          .running_var = r.rv.data(), .save_mean = r.mean.data(),
                                                          .save_invstd = r.invstd.data(), .y = r.y.data(),
                                                          .across_ranks = ranks});
    cpu::batchnorm_backward_training<double>(rows, c, hw, {.x = xr, .dy = dy.data(), .gamma = gamma.data(),
                                                           .save_mean = r.mean.data(), .save_invstd = r.invstd.data(),
                                                           .dx = r.dx.data(), .dgamma = r.dgamma.data(),
                                                           .dbeta = r.dbeta.data(), .across_ranks = ranks});
    return r;
  };
  const Result whole = run(0, n, 1.0 / n, nullptr);
  auto on_two_ranks = [&](bool synchronised) {
    ThreadRanks world(2);
    Result part[2];
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r)
      threads.emplace_back([&, r] {
        const auto me = world.rank(r);
        const int rows = split[r + 1] - split[r];
        part[r] = run(split[r], rows, 1.0 / rows, synchronised ? &me : nullptr);
      });
    for (auto& t : threads) t.join();
    return std::vector<Result>{part[0], part[1]};
  };
  // 1e-12: the same double sums in another order (an ulp of the values, ~1e-16, times the
  // few dozen terms); per-rank statistics are off by ~0.1 on these inputs.
  const std::vector<Result> synced = on_two_ranks(true), local = on_two_ranks(false);
  double worst_local = 0;
  for (int r = 0; r < 2; ++r) {
    const Result& p = synced[size_t(r)];
    const int rows = split[r + 1] - split[r];
    for (int k = 0; k < c; ++k) {
      EXPECT_NEAR(p.mean[k], whole.mean[k], 1e-12) << "rank " << r << " channel " << k;
      EXPECT_NEAR(p.invstd[k], whole.invstd[k], 1e-12);
      EXPECT_NEAR(p.rm[k], whole.rm[k], 1e-12);
      EXPECT_NEAR(p.rv[k], whole.rv[k], 1e-12);  // unbiased with the whole batch's count
      worst_local = std::max(worst_local, std::fabs(local[size_t(r)].mean[k] - whole.mean[k]));
    }
    for (int i = 0; i < rows * per; ++i) {
      EXPECT_NEAR(p.y[size_t(i)], whole.y[size_t(split[r] * per + i)], 1e-12) << "rank " << r << " value " << i;
      // The rank's dx is its own mean loss's: n / n_r times the whole batch's.
      EXPECT_NEAR(p.dx[size_t(i)] * rows / n, whole.dx[size_t(split[r] * per + i)], 1e-12) << "rank " << r << " value " << i;
    }
  }
  for (int k = 0; k < c; ++k) {  // the gradient all-reduce's weighting (n_r / n) gives the whole batch's
    EXPECT_NEAR(synced[0].dgamma[k] * 2 / n + synced[1].dgamma[k] * 3 / n, whole.dgamma[k], 1e-12);
    EXPECT_NEAR(synced[0].dbeta[k] * 2 / n + synced[1].dbeta[k] * 3 / n, whole.dbeta[k], 1e-12);
  }
  EXPECT_GT(worst_local, 0.05) << "the inputs must make per-rank statistics differ, or the test shows nothing";
}

// ---- Random numbers and dropout --------------------------------------------------------------

TEST(RandomBits, DeterministicDistinctAndSeedDependent) {
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < 1000; ++i) seen.insert(random::random_bits(7, i));
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(random::random_bits(7, 5), random::random_bits(7, 5));
  int same = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += random::random_bits(7, i) == random::random_bits(8, i);
  EXPECT_EQ(same, 0);
  // below() covers its whole range about evenly.
  std::vector<int> hist(5);
  for (uint64_t i = 0; i < 50000; ++i) ++hist[random::below(random::random_bits(3, i), 5)];
  for (int h : hist) EXPECT_NEAR(h, 10000, 400);
}

TEST(DropoutOp, KeepsAboutOneMinusRateAndScalesTheRest) {
  const int64_t count = 100000;
  std::vector<float> x(static_cast<size_t>(count), 2.0f), y(static_cast<size_t>(count));
  for (float rate : {0.1f, 0.5f, 0.8f}) {
    cpu::dropout_forward<float>(count, rate, 99, x.data(), y.data());
    int64_t kept = 0;
    for (float v : y) {
      if (v != 0.0f) {
        ++kept;
        EXPECT_EQ(v, 2.0f * (1.0f / (1.0f - rate)));
      }
    }
    EXPECT_NEAR(double(kept) / double(count), 1.0 - rate, 0.01) << "rate " << rate;
  }
}

TEST(DropoutOp, SameSeedSameMaskOtherSeedOtherMaskBackwardUsesTheMask) {
  const int64_t count = 4096;
  std::vector<float> x(static_cast<size_t>(count)), a(static_cast<size_t>(count)), b(static_cast<size_t>(count)), c(static_cast<size_t>(count)), g(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) x[size_t(i)] = 1.0f + float(i % 7);
  cpu::dropout_forward<float>(count, 0.5f, 11, x.data(), a.data());
  cpu::dropout_forward<float>(count, 0.5f, 11, x.data(), b.data());
  cpu::dropout_forward<float>(count, 0.5f, 12, x.data(), c.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  cpu::dropout_backward<float>(count, 0.5f, 11, x.data(), g.data());
  EXPECT_EQ(a, g);  // dy = x gives the forward's output exactly
  std::vector<double> xd(x.begin(), x.end()), yd(static_cast<size_t>(count));
  cpu::dropout_forward<double>(count, 0.5f, 11, xd.data(), yd.data());
  for (int64_t i = 0; i < count; ++i) EXPECT_EQ(yd[size_t(i)] == 0, a[size_t(i)] == 0) << i;  // same mask in double
}

TEST(DropoutOp, RateZeroIsTheIdentityAndBadRatesAreRefused) {
  std::vector<float> x{1, -2, 3}, y(3);
  cpu::dropout_forward<float>(3, 0.0f, 5, x.data(), y.data());
  EXPECT_EQ(x, y);
  EXPECT_THROW(cpu::dropout_forward<float>(3, 1.0f, 5, x.data(), y.data()), Error);
  EXPECT_THROW(cpu::dropout_forward<float>(3, -0.1f, 5, x.data(), y.data()), Error);
}

// ---- Global pooling and scale ----------------------------------------------------------------

TEST(GlobalPoolOp, KnownValuesAndFirstMaximumTakesTheGradient) {
  // n = 1, c = 2, hw = 4.
  const std::vector<double> x{1, 5, 5, 2, -1, -3, -2, -4};
  std::vector<double> y(2), dx(8);
  const std::vector<double> dy{10, 20};
  cpu::global_avgpool_forward<double>(1, 2, 4, x.data(), y.data());
  EXPECT_DOUBLE_EQ(y[0], 13.0 / 4);
  EXPECT_DOUBLE_EQ(y[1], -10.0 / 4);
  cpu::global_avgpool_backward<double>(1, 2, 4, dy.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<double>{2.5, 2.5, 2.5, 2.5, 5, 5, 5, 5}));
  cpu::global_maxpool_forward<double>(1, 2, 4, x.data(), y.data());
  EXPECT_EQ(y, (std::vector<double>{5, -1}));
  cpu::global_maxpool_backward<double>(1, 2, 4, x.data(), dy.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<double>{0, 10, 0, 0, 20, 0, 0, 0}));
}

TEST(ScaleOp, MultipliesInPlace) {
  std::vector<float> v{9, -18, 0.5f};
  cpu::scale<float>(3, 1.0f / 9, v.data(), v.data());
  EXPECT_FLOAT_EQ(v[0], 1.0f);
  EXPECT_FLOAT_EQ(v[1], -2.0f);
  EXPECT_FLOAT_EQ(v[2], 0.5f / 9);
}

// ---- Augmentation ------------------------------------------------------------------------------

// A batch whose every value is distinct: value = index + 1.
std::vector<float> iota_images(int n, int c, int h, int w) {
  std::vector<float> v(size_t(n) * c * h * w);
  std::iota(v.begin(), v.end(), 1.0f);
  return v;
}

float at(const std::vector<float>& v, int c, int h, int w, int i, int ch, int r, int q) {
  return v[((size_t(i) * c + ch) * h + r) * w + q];
}

TEST(AugmentOp, FlipIsTheMirrorImage) {
  const int n = 2, c = 3, h = 4, w = 5;
  const auto x = iota_images(n, c, h, w);
  std::vector<float> y(x.size()), back(x.size());
  cpu::flip_images<float>(n, c, h, w, x.data(), y.data());
  for (int i = 0; i < n; ++i)
    for (int ch = 0; ch < c; ++ch)
      for (int r = 0; r < h; ++r)
        for (int q = 0; q < w; ++q) EXPECT_EQ(at(y, c, h, w, i, ch, r, q), at(x, c, h, w, i, ch, r, w - 1 - q));
  cpu::flip_images<float>(n, c, h, w, y.data(), back.data());
  EXPECT_EQ(back, x);
}

TEST(AugmentOp, TranslateReflectsWithoutRepeatingTheEdge) {
  // One row 0..4: shift +1 reads columns 1,2,3,4 then reflect(5) = 3; shift -2 reads 2,1,0,1,2.
  const std::vector<float> row{0, 1, 2, 3, 4};
  std::vector<float> y(5);
  cpu::translate_images<float>(1, 1, 1, 5, row.data(), y.data(), 1, 0);
  EXPECT_EQ(y, (std::vector<float>{1, 2, 3, 4, 3}));
  cpu::translate_images<float>(1, 1, 1, 5, row.data(), y.data(), -2, 0);
  EXPECT_EQ(y, (std::vector<float>{2, 1, 0, 1, 2}));
  // Vertically, on a 4x1 column.
  cpu::translate_images<float>(1, 1, 4, 1, row.data(), y.data(), 0, -1);
  EXPECT_EQ(std::vector<float>(y.begin(), y.begin() + 4), (std::vector<float>{1, 0, 1, 2}));
  EXPECT_THROW(cpu::translate_images<float>(1, 1, 1, 5, row.data(), y.data(), 5, 0), Error);
}

// PyTorch's F.pad(x, (p,)*4, 'reflect')[..., a:a+h, b:b+w] is translate_images(dx = b - p, dy = a - p);
// airbench's TTA views padded[0:32, 0:32] and padded[2:34, 2:34] are shifts -1 and +1.
TEST(AugmentOp, TranslateEqualsACropOfTheReflectPaddedImage) {
  const int c = 2, h = 6, w = 7, pad = 2;
  const auto x = iota_images(1, c, h, w);
  auto reflect = [](int i, int size) { return i < 0 ? -i : i >= size ? 2 * (size - 1) - i : i; };
  for (int a = 0; a <= 2 * pad; ++a)
    for (int b = 0; b <= 2 * pad; ++b) {
      std::vector<float> y(x.size());
      cpu::translate_images<float>(1, c, h, w, x.data(), y.data(), b - pad, a - pad);
      for (int ch = 0; ch < c; ++ch)
        for (int r = 0; r < h; ++r)
          for (int q = 0; q < w; ++q)
            ASSERT_EQ(at(y, c, h, w, 0, ch, r, q), at(x, c, h, w, 0, ch, reflect(r + a - pad, h), reflect(q + b - pad, w)))
                << a << "," << b;
    }
}

// Which (dy, dx, flip) turns image i of x into image i of y, or false when none does.
bool find_transform(const std::vector<float>& x, const std::vector<float>& y, int c, int h, int w, int i, int t,
                    int& sy, int& sx, bool& flip) {
  const size_t plane = size_t(c) * h * w;
  const std::vector<float> xi(x.begin() + long(i * plane), x.begin() + long((i + 1) * plane));
  const std::vector<float> yi(y.begin() + long(i * plane), y.begin() + long((i + 1) * plane));
  for (int f = 0; f < 2; ++f)
    for (int dy = -t; dy <= t; ++dy)
      for (int dx = -t; dx <= t; ++dx) {
        std::vector<float> shifted(plane), out(plane);
        cpu::translate_images<float>(1, c, h, w, xi.data(), shifted.data(), dx, dy);
        if (f) cpu::flip_images<float>(1, c, h, w, shifted.data(), out.data());
        else out = shifted;
        if (out == yi) {
          sy = dy;
          sx = dx;
          flip = f;
          return true;
        }
      }
  return false;
}

TEST(AugmentOp, EachImageIsATranslationThenMaybeAFlipAndAllShiftsOccur) {
  const int n = 64, c = 2, h = 5, w = 6, t = 2;
  const auto x = iota_images(n, c, h, w);
  std::vector<float> y(x.size());
  ops::AugmentSpec spec;
  spec.translate = t;
  spec.flip = ops::FlipMode::Random;
  cpu::augment_images<float>(n, c, h, w, x.data(), y.data(), spec, 2024);
  std::set<int> shifts_y, shifts_x;
  int flips = 0;
  for (int i = 0; i < n; ++i) {
    int sy = 0, sx = 0;
    bool flip = false;
    ASSERT_TRUE(find_transform(x, y, c, h, w, i, t, sy, sx, flip)) << "image " << i;
    shifts_y.insert(sy);
    shifts_x.insert(sx);
    flips += flip;
  }
  EXPECT_EQ(shifts_y.size(), size_t(2 * t + 1));
  EXPECT_EQ(shifts_x.size(), size_t(2 * t + 1));
  EXPECT_GT(flips, 16);
  EXPECT_LT(flips, 48);
}

TEST(AugmentOp, DeterministicForASeedDifferentAcrossSeedsAndChunkable) {
  const int n = 9, c = 3, h = 8, w = 7;
  const auto x = iota_images(n, c, h, w);
  ops::AugmentSpec spec;
  spec.translate = 3;
  spec.flip = ops::FlipMode::Random;
  spec.cutout = 3;
  std::vector<float> a(x.size()), b(x.size()), other(x.size()), chunks(x.size());
  cpu::augment_images<float>(n, c, h, w, x.data(), a.data(), spec, 5);
  cpu::augment_images<float>(n, c, h, w, x.data(), b.data(), spec, 5);
  cpu::augment_images<float>(n, c, h, w, x.data(), other.data(), spec, 6);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
  // Images [0, 4) and [4, 9) in two calls with first_index give the one-call result.
  const size_t image = size_t(c) * h * w;
  cpu::augment_images<float>(4, c, h, w, x.data(), chunks.data(), spec, 5);
  ops::AugmentSpec rest = spec;
  rest.first_index = 4;
  cpu::augment_images<float>(5, c, h, w, x.data() + 4 * image, chunks.data() + 4 * image, rest, 5);
  EXPECT_EQ(chunks, a);
  // The double instantiation draws the same.
  std::vector<double> xd(x.begin(), x.end()), yd(x.size());
  cpu::augment_images<double>(n, c, h, w, xd.data(), yd.data(), spec, 5);
  EXPECT_EQ(std::vector<float>(yd.begin(), yd.end()), a);
}

TEST(AugmentOp, AlternateFlipFollowsIndexPlusEpochParity) {
  const int n = 6, c = 1, h = 3, w = 4;
  const auto x = iota_images(n, c, h, w);
  std::vector<float> flipped(x.size()), y(x.size());
  cpu::flip_images<float>(n, c, h, w, x.data(), flipped.data());
  const size_t image = size_t(c) * h * w;
  for (int64_t epoch : {0, 1, 2, 7}) {
    ops::AugmentSpec spec;
    spec.flip = ops::FlipMode::Alternate;
    spec.epoch = epoch;
    spec.first_index = 3;
    cpu::augment_images<float>(n, c, h, w, x.data(), y.data(), spec, 1);
    for (int i = 0; i < n; ++i) {
      const bool flip = (3 + i + epoch) % 2 == 1;
      const auto& want = flip ? flipped : x;
      EXPECT_TRUE(std::equal(y.begin() + long(i * image), y.begin() + long((i + 1) * image), want.begin() + long(i * image)))
          << "epoch " << epoch << " image " << i;
    }
  }
}

TEST(AugmentOp, CutoutZeroesOneSquareInsideTheImagePerImage) {
  const int n = 50, c = 2, h = 7, w = 9, size = 3;
  const auto x = iota_images(n, c, h, w);  // no zeros in the input
  std::vector<float> y(x.size());
  ops::AugmentSpec spec;
  spec.cutout = size;
  cpu::augment_images<float>(n, c, h, w, x.data(), y.data(), spec, 77);
  std::set<std::pair<int, int>> corners;
  for (int i = 0; i < n; ++i) {
    int top = h, left = w, zeros = 0;
    for (int ch = 0; ch < c; ++ch)
      for (int r = 0; r < h; ++r)
        for (int q = 0; q < w; ++q) {
          const float v = at(y, c, h, w, i, ch, r, q);
          if (v == 0) {
            ++zeros;
            top = std::min(top, r);
            left = std::min(left, q);
          } else {
            EXPECT_EQ(v, at(x, c, h, w, i, ch, r, q));
          }
        }
    EXPECT_EQ(zeros, c * size * size) << "image " << i;
    EXPECT_LE(top + size, h);
    EXPECT_LE(left + size, w);
    corners.insert({top, left});
  }
  EXPECT_GT(corners.size(), 15u);  // 5 x 7 possible corners, 50 draws
}

TEST(AugmentOp, RefusesShiftsAndCutoutsLargerThanTheImage) {
  std::vector<float> x(16), y(16);
  ops::AugmentSpec spec;
  spec.translate = 4;
  EXPECT_THROW(cpu::augment_images<float>(1, 1, 4, 4, x.data(), y.data(), spec, 0), Error);
  spec.translate = 3;
  EXPECT_NO_THROW(cpu::augment_images<float>(1, 1, 4, 4, x.data(), y.data(), spec, 0));
  spec.cutout = 5;
  EXPECT_THROW(cpu::augment_images<float>(1, 1, 4, 4, x.data(), y.data(), spec, 0), Error);
}

}  // namespace
}  // namespace cnn
