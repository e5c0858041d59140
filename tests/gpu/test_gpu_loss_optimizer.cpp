// Losses, metrics and optimizer updates: the CUDA kernels against the CPU reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_compare.hpp"

namespace cnn {
namespace {
using gputest::GpuTest;
using gputest::OpCheck;
using ops::TargetKind;
namespace gpu = ops::cuda;
namespace cpu = ops::cpu;

struct LossCase {
  int rows, cols;
};

std::string loss_case_name(const ::testing::TestParamInfo<LossCase>& info) {
  return std::to_string(info.param.rows) + "x" + std::to_string(info.param.cols);
}

std::vector<int32_t> random_labels(OpCheck& op, int rows, int cols) {
  std::vector<int32_t> v(static_cast<size_t>(rows));
  for (auto& l : v) l = int32_t(op.rng().below(uint64_t(cols)));
  return v;
}

// Rows of positive values summing to 1.
std::vector<float> random_distributions(OpCheck& op, int rows, int cols) {
  std::vector<float> v = op.random(int64_t(rows) * cols, 0.01, 1);
  for (int r = 0; r < rows; ++r) {
    float sum = 0;
    for (int j = 0; j < cols; ++j) sum += v[size_t(r) * cols + j];
    for (int j = 0; j < cols; ++j) v[size_t(r) * cols + j] /= sum;
  }
  return v;
}

std::vector<float> random_binary(OpCheck& op, int64_t count) {
  std::vector<float> v(static_cast<size_t>(count));
  for (auto& e : v) e = float(op.rng().below(2));
  return v;
}

// Probabilities with some values beyond the 1e-7 clip on either side (no gradient there).
std::vector<float> probabilities_with_clipped(OpCheck& op, int64_t count) {
  std::vector<float> v = op.random(count, 0.001, 1);
  const float extremes[] = {0.f, 1e-9f, 1.f, 1.f - 1e-9f /* rounds to 1 */};
  for (int64_t i = 0; i < count; i += 7) v[size_t(i)] = extremes[(i / 7) % 4];
  return v;
}

class LossGpu : public GpuTest, public ::testing::WithParamInterface<LossCase> {};

TEST_P(LossGpu, SoftmaxCrossEntropyLabelsAndDistributionsWithSmoothing) {
  const LossCase c = GetParam();
  const int64_t count = int64_t(c.rows) * c.cols;
  for (TargetKind kind : {TargetKind::Labels, TargetKind::Distribution})
    for (float smoothing : {0.f, 0.1f})
      for (double range : {3.0, 1000.0}) {  // +-1000: stability of the log-sum-exp
        SCOPED_TRACE("kind " + std::to_string(int(kind)) + " smoothing " + std::to_string(smoothing) + " range " +
                     std::to_string(range));
        OpCheck op(ctx(), 61);
        const int z = op.input("logits", count, -range, range);
        const int lbl = op.labels("labels", random_labels(op, c.rows, c.cols));
        const int t = op.input("targets", random_distributions(op, c.rows, c.cols));
        const int loss = op.output("row_loss", c.rows), g = op.output("dlogits", count);
        op.run(
            [&](auto& d) {
              gpu::softmax_cross_entropy(ctx(), c.rows, c.cols, d[z], kind, d.labels(lbl), d[t], smoothing, d[loss],
                                         d[g]);
            },
            [&](auto& h) {
              cpu::softmax_cross_entropy<double>(c.rows, c.cols, h[z], kind, h.labels(lbl), h[t], smoothing, h[loss],
                                                 h[g]);
            });
      }
}

TEST_P(LossGpu, CrossEntropyOnProbabilitiesWithClipping) {
  const LossCase c = GetParam();
  const int64_t count = int64_t(c.rows) * c.cols;
  for (TargetKind kind : {TargetKind::Labels, TargetKind::Distribution})
    for (float smoothing : {0.f, 0.2f}) {
      SCOPED_TRACE("kind " + std::to_string(int(kind)) + " smoothing " + std::to_string(smoothing));
      OpCheck op(ctx(), 62);
      const int p = op.input("probs", probabilities_with_clipped(op, count));
      const int lbl = op.labels("labels", random_labels(op, c.rows, c.cols));
      const int t = op.input("targets", random_distributions(op, c.rows, c.cols));
      const int loss = op.output("row_loss", c.rows), g = op.output("dprobs", count);
      op.run(
          [&](auto& d) {
            gpu::cross_entropy(ctx(), c.rows, c.cols, d[p], kind, d.labels(lbl), d[t], smoothing, d[loss], d[g]);
          },
          [&](auto& h) {
            cpu::cross_entropy<double>(c.rows, c.cols, h[p], kind, h.labels(lbl), h[t], smoothing, h[loss], h[g]);
          });
    }
}

TEST_P(LossGpu, MeanSquaredError) {
  const LossCase c = GetParam();
  const int64_t count = int64_t(c.rows) * c.cols;
  OpCheck op(ctx(), 63);
  const int p = op.input("pred", count, -2, 2), t = op.input("targets", count, -2, 2);
  const int loss = op.output("row_loss", c.rows), g = op.output("dpred", count);
  op.run([&](auto& d) { gpu::mse_loss(ctx(), c.rows, c.cols, d[p], d[t], d[loss], d[g]); },
         [&](auto& h) { cpu::mse_loss<double>(c.rows, c.cols, h[p], h[t], h[loss], h[g]); });
}

// Against the float reference: the upper clip bound 1 - 1e-7 is 1 - 1.19e-7 in float, so at
// a clipped p the term log(1 - p) differs from double's by 0.18. The GPU implements the float
// semantics, which is what the CPU computes when it trains. (A second run with unclipped
// probabilities checks the formula against double.)
TEST_P(LossGpu, BinaryCrossEntropyOnProbabilitiesWithClipping) {
  const LossCase c = GetParam();
  const int64_t count = int64_t(c.rows) * c.cols;
  {
    OpCheck op(ctx(), 64);
    const int p = op.input("probs", probabilities_with_clipped(op, count));
    const int t = op.input("targets", random_binary(op, count));
    const int loss = op.output("row_loss", c.rows), g = op.output("dprobs", count);
    op.run<float>([&](auto& d) { gpu::binary_cross_entropy(ctx(), c.rows, c.cols, d[p], d[t], d[loss], d[g]); },
                  [&](auto& h) { cpu::binary_cross_entropy<float>(c.rows, c.cols, h[p], h[t], h[loss], h[g]); });
  }
  {
    OpCheck op(ctx(), 65);
    const int p = op.input("probs", count, 0.001, 0.999);
    const int t = op.input("targets", random_binary(op, count));
    const int loss = op.output("row_loss", c.rows), g = op.output("dprobs", count);
    op.run([&](auto& d) { gpu::binary_cross_entropy(ctx(), c.rows, c.cols, d[p], d[t], d[loss], d[g]); },
           [&](auto& h) { cpu::binary_cross_entropy<double>(c.rows, c.cols, h[p], h[t], h[loss], h[g]); });
  }
}

TEST_P(LossGpu, BinaryCrossEntropyOnLogits) {
  const LossCase c = GetParam();
  const int64_t count = int64_t(c.rows) * c.cols;
  for (double range : {5.0, 1000.0})
    for (bool soft_targets : {false, true}) {
      SCOPED_TRACE("range " + std::to_string(range) + (soft_targets ? " soft targets" : " 0/1 targets"));
      OpCheck op(ctx(), 65);
      const int z = op.input("logits", count, -range, range);
      const int t = soft_targets ? op.input("targets", count, 0, 1) : op.input("targets", random_binary(op, count));
      const int loss = op.output("row_loss", c.rows), g = op.output("dlogits", count);
      op.run([&](auto& d) { gpu::binary_cross_entropy_logits(ctx(), c.rows, c.cols, d[z], d[t], d[loss], d[g]); },
             [&](auto& h) { cpu::binary_cross_entropy_logits<double>(c.rows, c.cols, h[z], h[t], h[loss], h[g]); });
    }
}

// Metrics add into two doubles (summed loss, correct predictions), so the starting values
// must survive. The GPU sums the same float row losses in double in another order: 1e-12.
TEST_P(LossGpu, AccumulateMetricsEveryTargetKind) {
  const LossCase c = GetParam();
  const int64_t count = int64_t(c.rows) * c.cols;
  struct Mode {
    TargetKind kind;
    bool logits;
    bool ties;  // scores drawn from {0, 0.5, 1}: argmax ties and exact thresholds
  };
  for (Mode m : {Mode{TargetKind::Labels, false, false}, Mode{TargetKind::Labels, false, true},
                 Mode{TargetKind::Distribution, false, false}, Mode{TargetKind::Distribution, false, true},
                 Mode{TargetKind::Binary, false, false}, Mode{TargetKind::Binary, false, true},
                 Mode{TargetKind::Binary, true, false}, Mode{TargetKind::Binary, true, true}}) {
    SCOPED_TRACE("kind " + std::to_string(int(m.kind)) + (m.logits ? " logits" : " probabilities") +
                 (m.ties ? " with ties" : ""));
    OpCheck op(ctx(), 66);
    std::vector<float> scores = op.random(count, m.logits ? -3 : 0, m.logits ? 3 : 1);
    if (m.ties)
      for (auto& s : scores) s = 0.5f * float(op.rng().below(3)) - (m.logits ? 0.5f : 0.f);
    std::vector<float> targets = m.kind == TargetKind::Binary ? random_binary(op, count)
                                                              : random_distributions(op, c.rows, c.cols);
    if (m.ties && m.kind == TargetKind::Distribution)
      for (auto& t : targets) t = float(op.rng().below(2));  // tied targets too
    const int loss = op.input("row_loss", c.rows, 0, 5), s = op.input("scores", scores);
    const int lbl = op.labels("labels", random_labels(op, c.rows, c.cols));
    const int t = op.input("targets", targets);
    const int acc = op.state_f64("accum", {3.5, 2.0}, 1e-12);
    op.run(
        [&](auto& d) {
          gpu::accumulate_metrics(ctx(), c.rows, c.cols, d[loss], d[s], m.kind, d.labels(lbl), d[t], m.logits,
                                  d.f64(acc));
        },
        [&](auto& h) {
          cpu::accumulate_metrics<double>(c.rows, c.cols, h[loss], h[s], m.kind, h.labels(lbl), h[t], m.logits,
                                          h.f64(acc));
        });
  }
}

// The fused loss-and-metrics op against the two ops it replaces, bit for bit: the one-block
// kernel (rows <= kSoftmaxCrossEntropyMetricsMaxRows: one launch) and the fallback (two), also
// with the gradient written over the logits (the predictions are read first). Logits with
// ties (whole rows of zeros) test the argmax's first-index rule.
TEST_P(LossGpu, SoftmaxCrossEntropyWithMetricsIsTheTwoOpsBitForBit) {
  using gputest::DeviceBuffer;
  const LossCase c = GetParam();
  const int64_t count = int64_t(c.rows) * c.cols;
  for (TargetKind kind : {TargetKind::Labels, TargetKind::Distribution})
    for (float smoothing : {0.f, 0.1f}) {
      SCOPED_TRACE("kind " + std::to_string(int(kind)) + " smoothing " + std::to_string(smoothing));
      OpCheck op(ctx(), 67);
      std::vector<float> z = op.random(count, -3, 3);
      for (int r = 0; r < c.rows; r += 5)
        for (int j = 0; j < c.cols; ++j) z[size_t(r) * c.cols + size_t(j)] = 0.f;
      const std::vector<int32_t> labels = random_labels(op, c.rows, c.cols);
      const std::vector<float> targets = random_distributions(op, c.rows, c.cols);
      struct Out {
        std::vector<float> row_loss, dlogits;
        std::vector<double> accum;
      };
      auto run = [&](int how) {  // 0: the two ops; 1: fused; 2: fused, dlogits over the logits
        DeviceBuffer dz(size_t(count) * sizeof(float)), dlbl(labels.size() * sizeof(int32_t)),
            dt(targets.size() * sizeof(float)), dloss(size_t(c.rows) * sizeof(float)),
            dg(size_t(count) * sizeof(float)), dacc(2 * sizeof(double));
        dz.upload(z);
        dlbl.upload(labels);
        dt.upload(targets);
        dloss.upload(std::vector<float>(size_t(c.rows), std::nanf("")));
        dg.upload(std::vector<float>(size_t(count), std::nanf("")));
        dacc.upload(std::vector<double>{3.5, 2.0});
        auto* zp = static_cast<float*>(dz.get());
        auto* lp = static_cast<int32_t*>(dlbl.get());
        auto* tp = static_cast<float*>(dt.get());
        auto* lossp = static_cast<float*>(dloss.get());
        auto* gp = how == 2 ? zp : static_cast<float*>(dg.get());
        auto* accp = static_cast<double*>(dacc.get());
        const int64_t launches = cuda_kernel_launches();
        if (how == 0) {
          gpu::softmax_cross_entropy(ctx(), c.rows, c.cols, zp, kind, lp, tp, smoothing, lossp, gp);
          gpu::accumulate_metrics(ctx(), c.rows, c.cols, lossp, zp, kind, lp, tp, false, accp);
        } else {
          gpu::softmax_cross_entropy_with_metrics(ctx(), c.rows, c.cols, zp, kind, lp, tp, smoothing, lossp, gp, accp);
          EXPECT_EQ(cuda_kernel_launches() - launches, gpu::softmax_cross_entropy_metrics_takes(c.rows) ? 1 : 2);
        }
        cuda::synchronize(ctx());
        return Out{dloss.download<float>(), how == 2 ? dz.download<float>() : dg.download<float>(),
                   dacc.download<double>()};
      };
      const Out two = run(0), fused = run(1), in_place = run(2);
      for (const Out* o : {&fused, &in_place}) {
        SCOPED_TRACE(o == &fused ? "fused" : "fused, gradient over the logits");
        ASSERT_EQ(0, std::memcmp(o->row_loss.data(), two.row_loss.data(), two.row_loss.size() * sizeof(float)));
        ASSERT_EQ(0, std::memcmp(o->dlogits.data(), two.dlogits.data(), two.dlogits.size() * sizeof(float)));
        EXPECT_EQ(o->accum[0], two.accum[0]);
        EXPECT_EQ(o->accum[1], two.accum[1]);
      }
      EXPECT_GT(two.accum[0], 3.5);  // the row losses (all positive) were added to the starting value
    }
}

// The fused loss can also write the last Dense layer's bias gradient, the column sums of
// dlogits: the bits of dense_backward_params' column sum over the same dlogits, one launch
// in all; on the two-op path (over kSoftmaxCrossEntropyMetricsMaxRows rows) it declines and
// leaves dbias alone (NaN-poisoned here).
TEST_P(LossGpu, SoftmaxCrossEntropyWithMetricsWritesTheLastBiasGradientBitForBit) {
  using gputest::DeviceBuffer;
  const LossCase c = GetParam();
  const int64_t count = int64_t(c.rows) * c.cols;
  OpCheck op(ctx(), 68);
  const std::vector<float> z = op.random(count, -3, 3);
  const std::vector<int32_t> labels = random_labels(op, c.rows, c.cols);
  DeviceBuffer dz(size_t(count) * 4), dlbl(labels.size() * 4), dloss(size_t(c.rows) * 4), dg(size_t(count) * 4),
      dacc(2 * sizeof(double)), db(size_t(c.cols) * 4), db_ref(size_t(c.cols) * 4), dw(size_t(c.cols) * 4),
      ones(size_t(c.rows) * 4);
  dz.upload(z);
  dlbl.upload(labels);
  dacc.upload(std::vector<double>{0.0, 0.0});
  db.upload(std::vector<float>(size_t(c.cols), std::nanf("")));
  db_ref.upload(std::vector<float>(size_t(c.cols), std::nanf("")));
  ones.upload(std::vector<float>(size_t(c.rows), 1.f));
  auto* gp = static_cast<float*>(dg.get());
  const int64_t launches = cuda_kernel_launches();
  const bool wrote = gpu::softmax_cross_entropy_with_metrics(
      ctx(), c.rows, c.cols, static_cast<float*>(dz.get()), TargetKind::Labels, static_cast<int32_t*>(dlbl.get()),
      nullptr, 0.1f, static_cast<float*>(dloss.get()), gp, static_cast<double*>(dacc.get()), static_cast<float*>(db.get()));
  const bool fused = gpu::softmax_cross_entropy_metrics_takes(c.rows);
  EXPECT_EQ(wrote, fused);
  EXPECT_EQ(cuda_kernel_launches() - launches, fused ? 1 : 2);
  // The reference: Dense's own bias gradient of a 1-input layer over the same dlogits.
  gpu::dense_backward_params(ctx(), c.rows, 1, c.cols, static_cast<float*>(ones.get()), gp,
                             static_cast<float*>(dw.get()), static_cast<float*>(db_ref.get()));
  cuda::synchronize(ctx());
  const std::vector<float> got = db.download<float>(), want = db_ref.download<float>();
  if (fused) {
    ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
  } else {
    for (float v : got) ASSERT_TRUE(std::isnan(v));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LossGpu,
                         ::testing::Values(LossCase{1, 10}, LossCase{7, 33}, LossCase{256, 10}, LossCase{5, 1000},
                                           LossCase{3, 1}, LossCase{1000, 3}),
                         loss_case_name);

// ---- Optimizers ---------------------------------------------------------------------------
// Five steps with a different gradient each. Parameters start near 0 and the learning rate
// is large, so the compared values are dominated by the updates themselves.
constexpr int kSteps = 5;
constexpr int64_t kParams = 10007;

struct SgdCase {
  const char* name;
  ops::SgdConfig cfg;
  bool velocity;
};

class SgdGpu : public GpuTest, public ::testing::WithParamInterface<SgdCase> {};

TEST_P(SgdGpu, SeveralSteps) {
  const SgdCase c = GetParam();
  OpCheck op(ctx(), 71);
  const int grads = op.input("grads", kSteps * kParams);
  const int p = op.state("param", op.random(kParams, -0.01, 0.01));
  const int v = op.state("velocity", op.random(kParams, -0.1, 0.1));
  op.run(
      [&](auto& d) {
        for (int step = 0; step < kSteps; ++step)
          gpu::sgd_update(ctx(), kParams, d[p], d[grads] + step * kParams, c.velocity ? d[v] : nullptr, c.cfg);
      },
      [&](auto& h) {
        for (int step = 0; step < kSteps; ++step)
          cpu::sgd_update<double>(kParams, h[p], h[grads] + step * kParams, c.velocity ? h[v] : nullptr, c.cfg);
      });
}

ops::SgdConfig sgd(float lr, float momentum, bool nesterov, float wd, bool decoupled) {
  ops::SgdConfig cfg;
  cfg.lr = lr;
  cfg.momentum = momentum;
  cfg.nesterov = nesterov;
  cfg.weight_decay = wd;
  cfg.decoupled_weight_decay = decoupled;
  return cfg;
}

INSTANTIATE_TEST_SUITE_P(Configs, SgdGpu,
                         ::testing::Values(SgdCase{"plain", sgd(0.5f, 0, false, 0, false), false},
                                           SgdCase{"velocity_without_momentum", sgd(0.5f, 0, false, 0, false), true},
                                           SgdCase{"momentum", sgd(0.3f, 0.9f, false, 0, false), true},
                                           SgdCase{"nesterov", sgd(0.3f, 0.9f, true, 0, false), true},
                                           SgdCase{"coupled_decay", sgd(0.3f, 0.8f, false, 0.05f, false), true},
                                           SgdCase{"decoupled_decay_nesterov", sgd(0.3f, 0.8f, true, 0.1f, true), true},
                                           SgdCase{"decoupled_decay_plain", sgd(0.5f, 0, false, 0.2f, true), false}),
                         [](const auto& info) { return std::string(info.param.name); });

struct AdamCase {
  const char* name;
  ops::AdamConfig cfg;
};

class AdamGpu : public GpuTest, public ::testing::WithParamInterface<AdamCase> {};

TEST_P(AdamGpu, SeveralSteps) {
  const AdamCase c = GetParam();
  OpCheck op(ctx(), 72);
  const int grads = op.input("grads", kSteps * kParams);
  const int p = op.state("param", op.random(kParams, -0.01, 0.01));
  const int m = op.state("m", std::vector<float>(size_t(kParams), 0.f));
  const int v = op.state("v", std::vector<float>(size_t(kParams), 0.f));
  op.run(
      [&](auto& d) {
        ops::AdamConfig cfg = c.cfg;
        for (int step = 0; step < kSteps; ++step) {
          cfg.step = step + 1;
          gpu::adam_update(ctx(), kParams, d[p], d[grads] + step * kParams, d[m], d[v], cfg);
        }
      },
      [&](auto& h) {
        ops::AdamConfig cfg = c.cfg;
        for (int step = 0; step < kSteps; ++step) {
          cfg.step = step + 1;
          cpu::adam_update<double>(kParams, h[p], h[grads] + step * kParams, h[m], h[v], cfg);
        }
      });
}

ops::AdamConfig adam(float lr, float beta1, float beta2, float wd, bool decoupled) {
  ops::AdamConfig cfg;
  cfg.lr = lr;
  cfg.beta1 = beta1;
  cfg.beta2 = beta2;
  cfg.weight_decay = wd;
  cfg.decoupled_weight_decay = decoupled;
  return cfg;
}

INSTANTIATE_TEST_SUITE_P(Configs, AdamGpu,
                         ::testing::Values(AdamCase{"defaults", adam(0.1f, 0.9f, 0.999f, 0, true)},
                                           AdamCase{"coupled_decay", adam(0.1f, 0.9f, 0.999f, 0.05f, false)},
                                           AdamCase{"adamw", adam(0.05f, 0.8f, 0.99f, 0.1f, true)}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace cnn
