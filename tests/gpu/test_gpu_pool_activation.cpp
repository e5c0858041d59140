// Pooling, elementwise activations and softmax: the CUDA kernels against the CPU reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {
using gputest::GpuTest;
using gputest::OpCheck;
namespace gpu = ops::cuda;
namespace cpu = ops::cpu;

// ---- Pooling ------------------------------------------------------------------------------
struct PoolCase {
  const char* name;
  int n, c, h, w, k_h, k_w, s_h, s_w;
  Padding padding;
};

const PoolCase kPoolCases[] = {
    {"2x2_valid", 3, 2, 8, 6, 2, 2, 2, 2, Padding::Valid},
    {"2x2_same_odd_size", 3, 2, 7, 9, 2, 2, 2, 2, Padding::Same},
    {"3x3_stride2_overlapping", 3, 1, 7, 7, 3, 3, 2, 2, Padding::Valid},
    {"rect_window_same", 4, 2, 5, 8, 3, 2, 1, 2, Padding::Same},
    {"3x3_stride3_same", 3, 3, 6, 6, 3, 3, 3, 3, Padding::Same},
    {"3x3_stride1_same", 2, 3, 9, 7, 3, 3, 1, 1, Padding::Same},
    {"batch1_64ch", 1, 64, 10, 10, 2, 2, 2, 2, Padding::Valid},
    {"batch256", 256, 3, 6, 6, 2, 2, 2, 2, Padding::Same},
    {"window_covers_input", 2, 2, 4, 5, 4, 5, 1, 1, Padding::Valid},
    {"4x4_stride2_same_even", 2, 2, 9, 10, 4, 4, 2, 2, Padding::Same},
};

class PoolGpu : public GpuTest, public ::testing::WithParamInterface<PoolCase> {
 protected:
  ops::Pool2DShape shape() const {
    const PoolCase& c = GetParam();
    return ops::Pool2DShape::make(c.n, c.c, c.h, c.w, c.k_h, c.k_w, c.s_h, c.s_w, c.padding);
  }
  // Same checks on random inputs and on inputs drawn from {0, 0.5, 1}, where most windows
  // hold ties and only the first maximum in row-major order may take the gradient.
  template <class Body>
  void for_inputs(Body body) {
    const auto s = shape();
    {
      SCOPED_TRACE("random values");
      OpCheck op(ctx(), 31);
      body(op, op.input("x", s.x_size()));
    }
    {
      SCOPED_TRACE("many ties");
      OpCheck op(ctx(), 32);
      std::vector<float> v(size_t(s.x_size()));
      for (auto& e : v) e = 0.5f * float(op.rng().below(3));
      body(op, op.input("x", v));
    }
  }
};

TEST_P(PoolGpu, MaxForwardAndBackward) {
  const auto s = shape();
  for_inputs([&](OpCheck& op, int x) {
    const int dy = op.input("dy", s.y_size());
    const int y = op.output("y", s.y_size()), dx = op.output("dx", s.x_size());
    op.run(
        [&](auto& d) {
          gpu::maxpool2d_forward(ctx(), s, d[x], d[y]);
          gpu::maxpool2d_backward(ctx(), s, d[x], d[dy], d[dx]);
        },
        [&](auto& h) {
          cpu::maxpool2d_forward<double>(s, h[x], h[y]);
          cpu::maxpool2d_backward<double>(s, h[x], h[dy], h[dx]);
        });
  });
}

TEST_P(PoolGpu, AverageForwardAndBackward) {
  const auto s = shape();
  for_inputs([&](OpCheck& op, int x) {
    const int dy = op.input("dy", s.y_size());
    const int y = op.output("y", s.y_size()), dx = op.output("dx", s.x_size());
    op.run(
        [&](auto& d) {
          gpu::avgpool2d_forward(ctx(), s, d[x], d[y]);
          gpu::avgpool2d_backward(ctx(), s, d[dy], d[dx]);
        },
        [&](auto& h) {
          cpu::avgpool2d_forward<double>(s, h[x], h[y]);
          cpu::avgpool2d_backward<double>(s, h[dy], h[dx]);
        });
  });
}

// The backward passes with the gradient of the activation below folded in (ops.hpp): the bits
// of the plain pass followed by activation_backward on its dx (which the conv below then
// skips), in one launch, the pool's input standing for that activation's output; against the
// CPU reference in double too. NaN-poisoned outputs (DeviceBuffer) show skipped elements.
TEST_P(PoolGpu, BackwardWithTheActivationBelowIsThePassThenTheActivationBitForBit) {
  using gputest::DeviceBuffer;
  const auto s = shape();
  for (Activation a : {Activation::ReLU, Activation::LeakyReLU, Activation::Sigmoid, Activation::Tanh})
    for (const bool max_pool : {true, false}) {
      SCOPED_TRACE(to_string(a) + (max_pool ? " max" : " average"));
      const ops::ActivationSpec act{a, 0.1f};
      OpCheck op(ctx(), 33);
      std::vector<float> z = op.random(s.x_size(), -2, 2), x(z.size());
      cpu::activation_forward<float>(act, s.x_size(), z.data(), x.data());  // the layer below's output
      const std::vector<float> dy = op.random(s.y_size());
      auto run = [&](bool folded) {
        DeviceBuffer dx_buf(size_t(s.x_size()) * sizeof(float)), x_buf(x.size() * sizeof(float)),
            dy_buf(dy.size() * sizeof(float));
        x_buf.upload(x);
        dy_buf.upload(dy);
        dx_buf.upload(std::vector<float>(size_t(s.x_size()), std::nanf("")));
        auto* xp = static_cast<float*>(x_buf.get());
        auto* dyp = static_cast<float*>(dy_buf.get());
        auto* dxp = static_cast<float*>(dx_buf.get());
        const int64_t launches = cuda_kernel_launches();
        if (max_pool) gpu::maxpool2d_backward(ctx(), s, xp, dyp, dxp, folded ? act : ops::ActivationSpec{});
        else gpu::avgpool2d_backward(ctx(), s, dyp, dxp, xp, folded ? act : ops::ActivationSpec{});
        if (!folded) gpu::activation_backward(ctx(), act, s.x_size(), nullptr, xp, dxp, dxp);
        else EXPECT_EQ(cuda_kernel_launches() - launches, 1);
        cuda::synchronize(ctx());
        return dx_buf.download<float>();
      };
      const std::vector<float> two = run(false), one = run(true);
      ASSERT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)));
      const int xi = op.input("x", x), dyi = op.input("dy", dy), dx = op.output("dx", s.x_size());
      op.run(
          [&](auto& d) {
            if (max_pool) gpu::maxpool2d_backward(ctx(), s, d[xi], d[dyi], d[dx], act);
            else gpu::avgpool2d_backward(ctx(), s, d[dyi], d[dx], d[xi], act);
          },
          [&](auto& h) {
            if (max_pool) cpu::maxpool2d_backward<double>(s, h[xi], h[dyi], h[dx], act);
            else cpu::avgpool2d_backward<double>(s, h[dyi], h[dx], h[xi], act);
          });
    }
}

TEST_F(GpuTest, PoolingBackwardRefusesActivationsItCannotTake) {
  const auto s = ops::Pool2DShape::make(1, 1, 4, 4, 2, 2, 2, 2, Padding::Valid);
  for (Activation a : {Activation::GELU, Activation::Softmax}) {
    const std::string message = test::error_of([&] {
      gpu::avgpool2d_backward(ctx(), s, nullptr, nullptr, nullptr, ops::ActivationSpec{a, 0.f});
    });
    EXPECT_NE(message.find("pooling backward: cannot take the gradient of " + to_string(a)), std::string::npos)
        << message;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PoolGpu, ::testing::ValuesIn(kPoolCases),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- Elementwise activations --------------------------------------------------------------
class ActivationGpu : public GpuTest, public ::testing::WithParamInterface<Activation> {};

TEST_P(ActivationGpu, ForwardAndBackwardOddCounts) {
  const ops::ActivationSpec act{GetParam(), 0.3f};
  // 2000003 exceeds one pass of the grid-stride launch (16 blocks of 256 per multiprocessor).
  for (int64_t count : {int64_t(1), int64_t(1000), int64_t(100003), int64_t(2000003)}) {
    SCOPED_TRACE("count " + std::to_string(count));
    OpCheck op(ctx(), 41);
    const int x = op.input("x", count, -6, 6), y_in = op.input("y (given)", count, -1, 1),
              dy = op.input("dy", count);
    const int y = op.output("y", count), dx = op.output("dx", count);
    // backward is fed an independent y, so its formula is checked on its own; ReLU and
    // LeakyReLU branch on y > 0, which compares the same float values on both sides.
    op.run(
        [&](auto& d) {
          gpu::activation_forward(ctx(), act, count, d[x], d[y]);
          gpu::activation_backward(ctx(), act, count, d[x], d[y_in], d[dy], d[dx]);
        },
        [&](auto& h) {
          cpu::activation_forward<double>(act, count, h[x], h[y]);
          cpu::activation_backward<double>(act, count, h[x], h[y_in], h[dy], h[dx]);
        });
  }
}

TEST_P(ActivationGpu, InPlaceForwardAndBackward) {
  const ops::ActivationSpec act{GetParam(), 0.3f};
  const int64_t count = 4099;
  OpCheck op(ctx(), 42);
  const int x = op.input("x", count, -6, 6);
  const int y = op.state("y = x in place", op.random(count, -6, 6));
  const int g = op.state("dx = dy in place", op.random(count));
  op.run(
      [&](auto& d) {
        gpu::activation_forward(ctx(), act, count, d[y], d[y]);
        gpu::activation_backward(ctx(), act, count, d[x], d[y], d[g], d[g]);
      },
      [&](auto& h) {
        cpu::activation_forward<double>(act, count, h[y], h[y]);
        cpu::activation_backward<double>(act, count, h[x], h[y], h[g], h[g]);
      });
}

INSTANTIATE_TEST_SUITE_P(All, ActivationGpu,
                         ::testing::Values(Activation::Linear, Activation::ReLU, Activation::LeakyReLU,
                                           Activation::Sigmoid, Activation::Tanh, Activation::GELU),
                         [](const auto& info) { return to_string(info.param); });

// Backward for everything but GELU must not read x (layers pass null when they keep no x).
TEST_F(GpuTest, ActivationBackwardWithoutXExceptGelu) {
  for (Activation a : {Activation::Linear, Activation::ReLU, Activation::LeakyReLU, Activation::Sigmoid,
                       Activation::Tanh}) {
    SCOPED_TRACE(to_string(a));
    const ops::ActivationSpec act{a, 0.3f};
    const int64_t count = 777;
    OpCheck op(ctx(), 43);
    const int y = op.input("y", count), dy = op.input("dy", count);
    const int dx = op.output("dx", count);
    op.run([&](auto& d) { gpu::activation_backward(ctx(), act, count, nullptr, d[y], d[dy], d[dx]); },
           [&](auto& h) { cpu::activation_backward<double>(act, count, nullptr, h[y], h[dy], h[dx]); });
  }
}

// The copy op against the CPU's, exactly (tolerance 0), at several sizes and in place.
TEST_F(GpuTest, CopyMatchesTheCpu) {
  for (int64_t count : {int64_t(1), int64_t(1000), int64_t(100003), int64_t(2000003)}) {
    SCOPED_TRACE("count " + std::to_string(count));
    OpCheck op(ctx(), 44);
    const int src = op.input("src", count, -6, 6);
    const int dst = op.output("dst", count, 0);
    const int same = op.state("in place", op.random(count), 0);
    op.run(
        [&](auto& d) {
          gpu::copy(ctx(), count, d[src], d[dst]);
          gpu::copy(ctx(), count, d[same], d[same]);
        },
        [&](auto& h) {
          cpu::copy<double>(count, h[src], h[dst]);
          cpu::copy<double>(count, h[same], h[same]);
        });
  }
}

TEST_F(GpuTest, ActivationRefusesSoftmax) {
  EXPECT_THROW(gpu::activation_forward(ctx(), {Activation::Softmax}, 1, nullptr, nullptr), Error);
  EXPECT_THROW(gpu::activation_backward(ctx(), {Activation::Softmax}, 1, nullptr, nullptr, nullptr, nullptr), Error);
}

// ---- Softmax ------------------------------------------------------------------------------
struct SoftmaxCase {
  int rows, cols;
  double range;  // logits uniform in [-range, range)
};

class SoftmaxGpu : public GpuTest, public ::testing::WithParamInterface<SoftmaxCase> {};

TEST_P(SoftmaxGpu, ForwardAndBackward) {
  const SoftmaxCase c = GetParam();
  const int64_t count = int64_t(c.rows) * c.cols;
  OpCheck op(ctx(), 51);
  const int x = op.input("x", count, -c.range, c.range), p = op.input("y (given)", count, 0, 1),
            dy = op.input("dy", count);
  const int y = op.output("y", count), dx = op.output("dx", count);
  op.run(
      [&](auto& d) {
        gpu::softmax_forward(ctx(), c.rows, c.cols, d[x], d[y]);
        gpu::softmax_backward(ctx(), c.rows, c.cols, d[p], d[dy], d[dx]);
      },
      [&](auto& h) {
        cpu::softmax_forward<double>(c.rows, c.cols, h[x], h[y]);
        cpu::softmax_backward<double>(c.rows, c.cols, h[p], h[dy], h[dx]);
      });
}

INSTANTIATE_TEST_SUITE_P(Shapes, SoftmaxGpu,
                         ::testing::Values(SoftmaxCase{1, 1, 3}, SoftmaxCase{7, 10, 5}, SoftmaxCase{3, 33, 5},
                                           SoftmaxCase{256, 1000, 8}, SoftmaxCase{5, 2000, 3},
                                           SoftmaxCase{9, 17, 1000}),  // +-1000: needs the max shift
                         [](const auto& info) {
                           return std::to_string(info.param.rows) + "x" + std::to_string(info.param.cols) +
                                  "_range" + std::to_string(int(info.param.range));
                         });

TEST_F(GpuTest, SoftmaxInPlace) {
  const int rows = 6, cols = 45;
  OpCheck op(ctx(), 52);
  const int y = op.state("y = x in place", op.random(rows * cols, -4, 4));
  const int p = op.input("y (given)", rows * cols, 0, 1);
  const int g = op.state("dx = dy in place", op.random(rows * cols));
  op.run(
      [&](auto& d) {
        gpu::softmax_forward(ctx(), rows, cols, d[y], d[y]);
        gpu::softmax_backward(ctx(), rows, cols, d[p], d[g], d[g]);
      },
      [&](auto& h) {
        cpu::softmax_forward<double>(rows, cols, h[y], h[y]);
        cpu::softmax_backward<double>(rows, cols, h[p], h[g], h[g]);
      });
}

}  // namespace
}  // namespace cnn
