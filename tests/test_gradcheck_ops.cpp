// Central-difference gradient checks, in double, for every CPU reference op and loss.
#include <gtest/gtest.h>

#include <string>

#include "kernels/ops.hpp"
#include "op_test_util.hpp"

namespace cnn {
namespace {
using test::expect_gradients_match;
using test::random_vector;
using test::weighted_sum;
namespace cpu = ops::cpu;

// ---- Conv2D ---------------------------------------------------------------------
struct ConvCase {
  int n, c_in, h, w, c_out, k_h, k_w, s_h, s_w;
  Padding padding;
  Activation act;
  bool bias;
};

class Conv2DGrad : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2DGrad, InputWeightAndBiasGradientsMatchFiniteDifferences) {
  const ConvCase c = GetParam();
  const auto s = ops::Conv2DShape::make(c.n, c.c_in, c.h, c.w, c.c_out, c.k_h, c.k_w, c.s_h, c.s_w, c.padding);
  Rng rng(42);
  auto x = random_vector(size_t(s.x_size()), rng);
  auto w = random_vector(size_t(s.w_size()), rng);
  auto b = random_vector(size_t(s.c_out), rng);
  const auto r = random_vector(size_t(s.y_size()), rng);
  const ops::ActivationSpec act{c.act, 0.2f};
  std::vector<double> y(size_t(s.y_size()));
  auto objective = [&] {
    cpu::conv2d_forward<double>(s, x.data(), w.data(), c.bias ? b.data() : nullptr, act, y.data());
    return weighted_sum(y, r);
  };
  objective();
  std::vector<double> dz(y.size()), dx(x.size()), dw(w.size()), db(b.size());
  cpu::activation_backward<double>(act, s.y_size(), nullptr, y.data(), r.data(), dz.data());
  cpu::conv2d_backward_input<double>(s, dz.data(), w.data(), dx.data());
  cpu::conv2d_backward_params<double>(s, x.data(), dz.data(), dw.data(), c.bias ? db.data() : nullptr);
  std::vector<GradTarget> targets{{"x", &x, &dx}, {"w", &w, &dw}};
  if (c.bias) targets.push_back({"bias", &b, &db});
  expect_gradients_match(check_gradients(objective, targets));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Conv2DGrad,
    ::testing::Values(
        ConvCase{3, 2, 7, 9, 4, 3, 3, 1, 1, Padding::Valid, Activation::Linear, true},   // non-square
        ConvCase{3, 3, 8, 6, 2, 3, 3, 2, 2, Padding::Valid, Activation::ReLU, true},     // stride 2
        ConvCase{4, 2, 6, 7, 3, 4, 4, 1, 1, Padding::Same, Activation::Linear, true},    // even kernel, same
        ConvCase{3, 2, 7, 5, 3, 2, 3, 2, 1, Padding::Same, Activation::Sigmoid, false},  // odd pad, no bias
        ConvCase{3, 1, 9, 9, 2, 5, 5, 2, 2, Padding::Same, Activation::Tanh, true},      // stride 2 same
        ConvCase{3, 2, 5, 5, 2, 1, 1, 1, 1, Padding::Valid, Activation::LeakyReLU, true}));

// ---- Dense ----------------------------------------------------------------------
TEST(DenseGrad, InputWeightAndBiasGradientsMatchFiniteDifferences) {
  const int n = 5, in = 7, out = 3;
  Rng rng(7);
  auto x = random_vector(size_t(n * in), rng), w = random_vector(size_t(out * in), rng),
       b = random_vector(size_t(out), rng);
  const auto r = random_vector(size_t(n * out), rng);
  for (Activation a : {Activation::Linear, Activation::ReLU, Activation::Sigmoid, Activation::Tanh}) {
    const ops::ActivationSpec act{a};
    std::vector<double> y(size_t(n * out));
    auto objective = [&] {
      cpu::dense_forward<double>(n, in, out, x.data(), w.data(), b.data(), act, y.data());
      return weighted_sum(y, r);
    };
    objective();
    std::vector<double> dz(y.size()), dx(x.size()), dw(w.size()), db(b.size());
    cpu::activation_backward<double>(act, n * out, nullptr, y.data(), r.data(), dz.data());
    cpu::dense_backward_input<double>(n, in, out, dz.data(), w.data(), dx.data());
    cpu::dense_backward_params<double>(n, in, out, x.data(), dz.data(), dw.data(), db.data());
    SCOPED_TRACE(to_string(a));
    expect_gradients_match(check_gradients(objective, {{"x", &x, &dx}, {"w", &w, &dw}, {"bias", &b, &db}}));
  }
}

// ---- Pooling --------------------------------------------------------------------
struct PoolCase {
  int n, c, h, w, k_h, k_w, s_h, s_w;
  Padding padding;
};

class PoolGrad : public ::testing::TestWithParam<PoolCase> {};

TEST_P(PoolGrad, MaxAndAverageInputGradientsMatchFiniteDifferences) {
  const PoolCase c = GetParam();
  const auto s = ops::Pool2DShape::make(c.n, c.c, c.h, c.w, c.k_h, c.k_w, c.s_h, c.s_w, c.padding);
  Rng rng(3);
  auto x = random_vector(size_t(s.x_size()), rng);
  const auto r = random_vector(size_t(s.y_size()), rng);
  std::vector<double> y(size_t(s.y_size())), dx(x.size());

  auto max_objective = [&] {
    cpu::maxpool2d_forward<double>(s, x.data(), y.data());
    return weighted_sum(y, r);
  };
  cpu::maxpool2d_backward<double>(s, x.data(), r.data(), dx.data());
  expect_gradients_match(check_gradients(max_objective, {{"max x", &x, &dx}}));

  auto avg_objective = [&] {
    cpu::avgpool2d_forward<double>(s, x.data(), y.data());
    return weighted_sum(y, r);
  };
  cpu::avgpool2d_backward<double>(s, r.data(), dx.data());
  expect_gradients_match(check_gradients(avg_objective, {{"avg x", &x, &dx}}));
}

INSTANTIATE_TEST_SUITE_P(Shapes, PoolGrad,
                         ::testing::Values(PoolCase{3, 2, 8, 6, 2, 2, 2, 2, Padding::Valid},
                                           PoolCase{3, 2, 7, 9, 2, 2, 2, 2, Padding::Same},   // odd size
                                           PoolCase{3, 1, 7, 7, 3, 3, 2, 2, Padding::Valid},  // overlapping
                                           PoolCase{4, 2, 5, 8, 3, 2, 1, 2, Padding::Same},   // rectangular
                                           PoolCase{3, 3, 6, 6, 3, 3, 3, 3, Padding::Same}));

// ---- Activations ------------------------------------------------------------------
class ActivationGrad : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationGrad, MatchesFiniteDifferences) {
  const ops::ActivationSpec act{GetParam(), 0.3f};
  Rng rng(11);
  auto x = random_vector(64, rng, -3, 3);
  const auto r = random_vector(64, rng);
  std::vector<double> y(64), dx(64);
  auto objective = [&] {
    cpu::activation_forward<double>(act, 64, x.data(), y.data());
    return weighted_sum(y, r);
  };
  objective();
  cpu::activation_backward<double>(act, 64, x.data(), y.data(), r.data(), dx.data());
  expect_gradients_match(check_gradients(objective, {{to_string(act.kind), &x, &dx}}));
}

INSTANTIATE_TEST_SUITE_P(All, ActivationGrad,
                         ::testing::Values(Activation::Linear, Activation::ReLU, Activation::LeakyReLU,
                                           Activation::Sigmoid, Activation::Tanh, Activation::GELU),
                         [](const auto& info) { return to_string(info.param); });

TEST(SoftmaxGrad, MatchesFiniteDifferences) {
  const int rows = 4, cols = 6;
  Rng rng(5);
  auto x = random_vector(rows * cols, rng, -4, 4);
  const auto r = random_vector(rows * cols, rng);
  std::vector<double> y(x.size()), dx(x.size());
  auto objective = [&] {
    cpu::softmax_forward<double>(rows, cols, x.data(), y.data());
    return weighted_sum(y, r);
  };
  objective();
  cpu::softmax_backward<double>(rows, cols, y.data(), r.data(), dx.data());
  expect_gradients_match(check_gradients(objective, {{"softmax x", &x, &dx}}));
}

// ---- Losses -----------------------------------------------------------------------
struct LossData {
  static constexpr int rows = 5, cols = 4;
  Rng rng{17};
  std::vector<int32_t> labels{2, 0, 3, 1, 3};
  std::vector<double> probs_target;  // rows of a probability distribution
  std::vector<double> binary_target;
  LossData() {
    probs_target = random_vector(rows * cols, rng, 0.05, 1);
    for (int r = 0; r < rows; ++r) {
      double s = 0;
      for (int j = 0; j < cols; ++j) s += probs_target[size_t(r * cols + j)];
      for (int j = 0; j < cols; ++j) probs_target[size_t(r * cols + j)] /= s;
    }
    for (int i = 0; i < rows * cols; ++i) binary_target.push_back(double(rng.below(2)));
  }
};

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

TEST(LossGrad, SoftmaxCrossEntropyAllTargetKindsAndSmoothing) {
  LossData d;
  for (double smoothing : {0.0, 0.2})
    for (ops::TargetKind kind : {ops::TargetKind::Labels, ops::TargetKind::Distribution}) {
      auto z = random_vector(d.rows * d.cols, d.rng, -3, 3);
      std::vector<double> loss(d.rows), g(z.size());
      auto objective = [&] {
        cpu::softmax_cross_entropy<double>(d.rows, d.cols, z.data(), kind, d.labels.data(), d.probs_target.data(),
                                           smoothing, loss.data(), g.data());
        return mean(loss);
      };
      objective();
      const auto analytic = g;
      SCOPED_TRACE("smoothing " + std::to_string(smoothing) + " kind " + std::to_string(int(kind)));
      expect_gradients_match(check_gradients(objective, {{"logits", &z, &analytic}}));
    }
}

TEST(LossGrad, CrossEntropyOnProbabilities) {
  LossData d;
  for (ops::TargetKind kind : {ops::TargetKind::Labels, ops::TargetKind::Distribution}) {
    auto p = random_vector(d.rows * d.cols, d.rng, 0.05, 0.95);
    std::vector<double> loss(d.rows), g(p.size());
    auto objective = [&] {
      cpu::cross_entropy<double>(d.rows, d.cols, p.data(), kind, d.labels.data(), d.probs_target.data(), 0.1,
                                 loss.data(), g.data());
      return mean(loss);
    };
    objective();
    const auto analytic = g;
    expect_gradients_match(check_gradients(objective, {{"probs", &p, &analytic}}));
  }
}

TEST(LossGrad, MeanSquaredError) {
  LossData d;
  auto p = random_vector(d.rows * d.cols, d.rng);
  const auto t = random_vector(d.rows * d.cols, d.rng);
  std::vector<double> loss(d.rows), g(p.size());
  auto objective = [&] {
    cpu::mse_loss<double>(d.rows, d.cols, p.data(), t.data(), loss.data(), g.data());
    return mean(loss);
  };
  objective();
  const auto analytic = g;
  expect_gradients_match(check_gradients(objective, {{"pred", &p, &analytic}}));
}

TEST(LossGrad, BinaryCrossEntropyOnProbabilitiesAndLogits) {
  LossData d;
  auto p = random_vector(d.rows * d.cols, d.rng, 0.05, 0.95);
  std::vector<double> loss(d.rows), g(p.size());
  auto on_probs = [&] {
    cpu::binary_cross_entropy<double>(d.rows, d.cols, p.data(), d.binary_target.data(), loss.data(), g.data());
    return mean(loss);
  };
  on_probs();
  const auto analytic_p = g;
  expect_gradients_match(check_gradients(on_probs, {{"probs", &p, &analytic_p}}));

  auto z = random_vector(d.rows * d.cols, d.rng, -4, 4);
  auto on_logits = [&] {
    cpu::binary_cross_entropy_logits<double>(d.rows, d.cols, z.data(), d.probs_target.data(), loss.data(),
                                             g.data());
    return mean(loss);
  };
  on_logits();
  const auto analytic_z = g;
  expect_gradients_match(check_gradients(on_logits, {{"logits", &z, &analytic_z}}));
}

}  // namespace
}  // namespace cnn

// ---- Batch normalisation, dropout, global pooling, scale ------------------------------------
namespace cnn {
namespace {
using test::expect_gradients_match;
using test::random_vector;
using test::weighted_sum;
namespace cpu = ops::cpu;

struct NormCase {
  int n, c, hw;
  bool gamma, beta;
};

class BatchNormGrad : public ::testing::TestWithParam<NormCase> {};

// Training mode: the gradient through the batch statistics, for x, gamma and beta.
TEST_P(BatchNormGrad, TrainingModeMatchesFiniteDifferences) {
  const NormCase k = GetParam();
  const size_t count = size_t(k.n) * k.c * k.hw;
  Rng rng(61);
  auto x = random_vector(count, rng, -2, 3);
  auto gamma = random_vector(size_t(k.c), rng, 0.5, 1.5), beta = random_vector(size_t(k.c), rng);
  const auto r = random_vector(count, rng);
  std::vector<double> y(count), mean(size_t(k.c)), invstd(size_t(k.c)), rm(size_t(k.c), 0.0), rv(size_t(k.c), 1.0);
  auto objective = [&] {
    cpu::batchnorm_forward_training<double>(
        k.n, k.c, k.hw,
        {.x = x.data(), .gamma = k.gamma ? gamma.data() : nullptr, .beta = k.beta ? beta.data() : nullptr, .eps = 1e-5,
         .momentum = 0.1, .running_mean = rm.data(), .running_var = rv.data(), .save_mean = mean.data(),
         .save_invstd = invstd.data(), .y = y.data()});
    return weighted_sum(y, r);
  };
  objective();
  std::vector<double> dx(count), dgamma(size_t(k.c)), dbeta(size_t(k.c));
  cpu::batchnorm_backward_training<double>(
      k.n, k.c, k.hw,
      {.x = x.data(), .dy = r.data(), .gamma = k.gamma ? gamma.data() : nullptr, .save_mean = mean.data(),
       .save_invstd = invstd.data(), .dx = dx.data(), .dgamma = dgamma.data(), .dbeta = dbeta.data()});
  std::vector<GradTarget> targets{{"x", &x, &dx}};
  if (k.gamma) targets.push_back({"gamma", &gamma, &dgamma});
  if (k.beta) targets.push_back({"beta", &beta, &dbeta});
  expect_gradients_match(check_gradients(objective, targets));
}

// Inference mode: the running statistics are constants.
TEST_P(BatchNormGrad, InferenceModeMatchesFiniteDifferences) {
  const NormCase k = GetParam();
  const size_t count = size_t(k.n) * k.c * k.hw;
  Rng rng(62);
  auto x = random_vector(count, rng, -2, 3);
  auto gamma = random_vector(size_t(k.c), rng, 0.5, 1.5), beta = random_vector(size_t(k.c), rng);
  const auto rm = random_vector(size_t(k.c), rng), rv = random_vector(size_t(k.c), rng, 0.2, 2);
  const auto r = random_vector(count, rng);
  std::vector<double> y(count);
  auto objective = [&] {
    cpu::batchnorm_forward_inference<double>(
        k.n, k.c, k.hw,
        {.x = x.data(), .gamma = k.gamma ? gamma.data() : nullptr, .beta = k.beta ? beta.data() : nullptr,
         .running_mean = rm.data(), .running_var = rv.data(), .eps = 1e-3, .y = y.data()});
    return weighted_sum(y, r);
  };
  objective();
  std::vector<double> dx(count), dgamma(size_t(k.c)), dbeta(size_t(k.c));
  cpu::batchnorm_backward_inference<double>(
      k.n, k.c, k.hw,
      {.x = x.data(), .dy = r.data(), .gamma = k.gamma ? gamma.data() : nullptr, .running_mean = rm.data(),
       .running_var = rv.data(), .eps = 1e-3, .dx = dx.data(), .dgamma = dgamma.data(), .dbeta = dbeta.data()});
  std::vector<GradTarget> targets{{"x", &x, &dx}};
  if (k.gamma) targets.push_back({"gamma", &gamma, &dgamma});
  if (k.beta) targets.push_back({"beta", &beta, &dbeta});
  expect_gradients_match(check_gradients(objective, targets));
}

INSTANTIATE_TEST_SUITE_P(Shapes, BatchNormGrad,
                         ::testing::Values(NormCase{3, 2, 15, true, true},    // NCHW, 5x3 planes
                                           NormCase{5, 4, 1, true, true},     // [N, F]
                                           NormCase{1, 3, 7, true, false},    // batch 1: statistics over the plane
                                           NormCase{3, 1, 1, false, true},    // three values per channel
                                           NormCase{4, 3, 4, false, false}),  // no affine at all
                         [](const auto& info) {
                           const NormCase& k = info.param;
                           return std::to_string(k.n) + "x" + std::to_string(k.c) + "x" + std::to_string(k.hw) +
                                  (k.gamma ? "_gamma" : "") + (k.beta ? "_beta" : "");
                         });

TEST(DropoutGrad, MatchesFiniteDifferencesForAFixedSeed) {
  const int64_t count = 301;
  Rng rng(63);
  auto x = random_vector(size_t(count), rng);
  const auto r = random_vector(size_t(count), rng);
  for (float rate : {0.0f, 0.25f, 0.5f, 0.9f}) {
    std::vector<double> y(x.size()), dx(x.size());
    auto objective = [&] {
      cpu::dropout_forward<double>(count, rate, 1234, x.data(), y.data());
      return weighted_sum(y, r);
    };
    objective();
    cpu::dropout_backward<double>(count, rate, 1234, r.data(), dx.data());
    SCOPED_TRACE("rate " + std::to_string(rate));
    expect_gradients_match(check_gradients(objective, {{"x", &x, &dx}}));
  }
}

TEST(GlobalPoolGrad, AverageAndMaxMatchFiniteDifferences) {
  struct Shape3 {
    int n, c, hw;
  };
  for (const auto& [n, c, hw] : {Shape3{3, 2, 12}, Shape3{1, 3, 1}, Shape3{2, 2, 49}}) {
    Rng rng(64);
    auto x = random_vector(size_t(n * c * hw), rng);
    const auto r = random_vector(size_t(n * c), rng);
    std::vector<double> y(size_t(n * c)), dx(x.size());
    auto avg = [&] {
      cpu::global_avgpool_forward<double>(n, c, hw, x.data(), y.data());
      return weighted_sum(y, r);
    };
    cpu::global_avgpool_backward<double>(n, c, hw, r.data(), dx.data());
    expect_gradients_match(check_gradients(avg, {{"avg x", &x, &dx}}));
    auto max = [&] {
      cpu::global_maxpool_forward<double>(n, c, hw, x.data(), y.data());
      return weighted_sum(y, r);
    };
    cpu::global_maxpool_backward<double>(n, c, hw, x.data(), r.data(), dx.data());
    expect_gradients_match(check_gradients(max, {{"max x", &x, &dx}}));
  }
}

TEST(ScaleGrad, MatchesFiniteDifferences) {
  Rng rng(65);
  auto x = random_vector(37, rng);
  const auto r = random_vector(37, rng);
  std::vector<double> y(x.size()), dx(x.size());
  auto objective = [&] {
    cpu::scale<double>(37, 1.0 / 9, x.data(), y.data());
    return weighted_sum(y, r);
  };
  cpu::scale<double>(37, 1.0 / 9, r.data(), dx.data());
  expect_gradients_match(check_gradients(objective, {{"x", &x, &dx}}));
}

}  // namespace
}  // namespace cnn
