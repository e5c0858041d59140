// Conv2D and Dense: the CUDA kernels against the CPU reference (in double).
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

const Activation kAllActivations[] = {Activation::Linear, Activation::ReLU, Activation::LeakyReLU,
                                      Activation::Sigmoid, Activation::Tanh, Activation::GELU};

// ---- Conv2D -------------------------------------------------------------------------------
struct ConvCase {
  const char* name;
  int n, c_in, h, w, c_out, k_h, k_w, s_h, s_w;
  Padding padding;
};

// Sizes chosen so no dimension is a multiple of the 64 x 64 x 16 tiles unless stated.
const ConvCase kConvCases[] = {
    {"batch1_1ch_valid", 1, 1, 7, 9, 1, 3, 3, 1, 1, Padding::Valid},
    {"batch7_3ch_stride2_same_odd_kernel", 7, 3, 13, 11, 5, 3, 3, 2, 2, Padding::Same},
    {"64ch_same_3x3", 3, 64, 9, 9, 64, 3, 3, 1, 1, Padding::Same},  // c_out exactly one tile
    {"even_kernel_same", 3, 3, 8, 10, 70, 4, 4, 1, 1, Padding::Same},  // pad 1 before, 2 after
    {"rect_kernel_mixed_stride_same", 2, 5, 10, 7, 3, 2, 3, 2, 1, Padding::Same},
    {"batch256_3ch", 256, 3, 8, 8, 16, 3, 3, 1, 1, Padding::Same},
    {"5x5_stride2_same_odd_channels", 4, 17, 12, 12, 33, 5, 5, 2, 2, Padding::Same},
    {"pointwise_1x1", 2, 64, 6, 6, 130, 1, 1, 1, 1, Padding::Valid},
    {"kernel_equals_input", 2, 2, 5, 5, 2, 5, 5, 1, 1, Padding::Valid},  // 1x1 output
    {"even_kernel_stride2_valid", 3, 4, 11, 9, 6, 2, 2, 2, 2, Padding::Valid},
    {"deep_K", 8, 64, 16, 16, 65, 3, 3, 1, 1, Padding::Same},  // K = 576, many K steps
    {"stride3_larger_than_kernel", 2, 3, 10, 11, 4, 2, 2, 3, 3, Padding::Same},
};

class Conv2DGpu : public GpuTest, public ::testing::WithParamInterface<ConvCase> {
 protected:
  ops::Conv2DShape shape() const {
    const ConvCase& c = GetParam();
    return ops::Conv2DShape::make(c.n, c.c_in, c.h, c.w, c.c_out, c.k_h, c.k_w, c.s_h, c.s_w, c.padding);
  }
};

TEST_P(Conv2DGpu, ForwardEveryActivationWithAndWithoutBias) {
  const auto s = shape();
  for (Activation a : kAllActivations)
    for (bool with_bias : {true, false}) {
      SCOPED_TRACE(to_string(a) + (with_bias ? " with bias" : " without bias"));
      const ops::ActivationSpec act{a, 0.2f};
      OpCheck op(ctx(), 11);
      const int x = op.input("x", s.x_size()), w = op.input("w", s.w_size()), b = op.input("bias", s.c_out);
      const int y = op.output("y", s.y_size());
      op.run([&](auto& d) { gpu::conv2d_forward(ctx(), s, d[x], d[w], with_bias ? d[b] : nullptr, act, d[y]); },
             [&](auto& h) { cpu::conv2d_forward<double>(s, h[x], h[w], with_bias ? h[b] : nullptr, act, h[y]); });
    }
}

TEST_P(Conv2DGpu, BackwardInput) {
  const auto s = shape();
  OpCheck op(ctx(), 12);
  const int dy = op.input("dy", s.y_size()), w = op.input("w", s.w_size());
  const int dx = op.output("dx", s.x_size());
  op.run([&](auto& d) { gpu::conv2d_backward_input(ctx(), s, d[dy], d[w], d[dx]); },
         [&](auto& h) { cpu::conv2d_backward_input<double>(s, h[dy], h[w], h[dx]); });
}

TEST_P(Conv2DGpu, BackwardParamsWithAndWithoutBias) {
  const auto s = shape();
  for (bool with_bias : {true, false}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    OpCheck op(ctx(), 13);
    const int x = op.input("x", s.x_size()), dy = op.input("dy", s.y_size());
    const int dw = op.output("dw", s.w_size()), db = op.output("dbias", s.c_out);
    op.run(
        [&](auto& d) { gpu::conv2d_backward_params(ctx(), s, d[x], d[dy], d[dw], with_bias ? d[db] : nullptr); },
        [&](auto& h) {
          cpu::conv2d_backward_params<double>(s, h[x], h[dy], h[dw], h[db]);  // always fills dbias...
          if (!with_bias) std::fill(h[db], h[db] + s.c_out, std::nan(""));   // ...which must stay untouched
        });
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv2DGpu, ::testing::ValuesIn(kConvCases),
                         [](const auto& info) { return std::string(info.param.name); });

// The same scratch buffer serves calls of different sizes on one context: a large split
// reduction, then a small one, then the large one again, all queued before one wait.
TEST_F(GpuTest, Conv2DWeightGradientsOfDifferentSizesShareTheContextScratch) {
  const auto big = ops::Conv2DShape::make(64, 3, 16, 16, 8, 3, 3, 1, 1, Padding::Same);
  const auto small = ops::Conv2DShape::make(16, 2, 6, 6, 3, 3, 3, 1, 1, Padding::Valid);
  OpCheck op(ctx(), 14);
  const int xb = op.input("x big", big.x_size()), dyb = op.input("dy big", big.y_size());
  const int xs = op.input("x small", small.x_size()), dys = op.input("dy small", small.y_size());
  const int dw1 = op.output("dw big 1", big.w_size()), dw2 = op.output("dw small", small.w_size()),
            dw3 = op.output("dw big 2", big.w_size());
  op.run(
      [&](auto& d) {
        gpu::conv2d_backward_params(ctx(), big, d[xb], d[dyb], d[dw1], nullptr);
        gpu::conv2d_backward_params(ctx(), small, d[xs], d[dys], d[dw2], nullptr);
        gpu::conv2d_backward_params(ctx(), big, d[xb], d[dyb], d[dw3], nullptr);
      },
      [&](auto& h) {
        cpu::conv2d_backward_params<double>(big, h[xb], h[dyb], h[dw1], nullptr);
        cpu::conv2d_backward_params<double>(small, h[xs], h[dys], h[dw2], nullptr);
        cpu::conv2d_backward_params<double>(big, h[xb], h[dyb], h[dw3], nullptr);
      });
}

TEST_F(GpuTest, Conv2DRefusesSoftmaxAsAnElementwiseActivation) {
  const auto s = ops::Conv2DShape::make(1, 1, 3, 3, 1, 1, 1, 1, 1, Padding::Valid);
  EXPECT_THROW(gpu::conv2d_forward(ctx(), s, nullptr, nullptr, nullptr, {Activation::Softmax}, nullptr), Error);
  EXPECT_THROW(gpu::dense_forward(ctx(), 1, 1, 1, nullptr, nullptr, nullptr, {Activation::Softmax}, nullptr), Error);
}

// ---- Dense --------------------------------------------------------------------------------
struct DenseCase {
  const char* name;
  int n, in, out;
};

const DenseCase kDenseCases[] = {
    {"all_ones", 1, 1, 1},      {"batch1", 1, 37, 10},       {"batch7_odd", 7, 13, 5},
    {"batch256", 256, 300, 10}, {"wide_out", 33, 64, 130},   {"tall_in", 5, 1025, 3},
};

class DenseGpu : public GpuTest, public ::testing::WithParamInterface<DenseCase> {};

TEST_P(DenseGpu, ForwardEveryActivationWithAndWithoutBias) {
  const DenseCase c = GetParam();
  for (Activation a : kAllActivations)
    for (bool with_bias : {true, false}) {
      SCOPED_TRACE(to_string(a) + (with_bias ? " with bias" : " without bias"));
      const ops::ActivationSpec act{a, 0.1f};
      OpCheck op(ctx(), 21);
      const int x = op.input("x", int64_t(c.n) * c.in), w = op.input("w", int64_t(c.out) * c.in),
                b = op.input("bias", c.out);
      const int y = op.output("y", int64_t(c.n) * c.out);
      op.run(
          [&](auto& d) { gpu::dense_forward(ctx(), c.n, c.in, c.out, d[x], d[w], with_bias ? d[b] : nullptr, act, d[y]); },
          [&](auto& h) {
            cpu::dense_forward<double>(c.n, c.in, c.out, h[x], h[w], with_bias ? h[b] : nullptr, act, h[y]);
          });
    }
}

TEST_P(DenseGpu, BackwardInputAndParams) {
  const DenseCase c = GetParam();
  for (bool with_bias : {true, false}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    OpCheck op(ctx(), 22);
    const int x = op.input("x", int64_t(c.n) * c.in), w = op.input("w", int64_t(c.out) * c.in),
              dy = op.input("dy", int64_t(c.n) * c.out);
    const int dx = op.output("dx", int64_t(c.n) * c.in), dw = op.output("dw", int64_t(c.out) * c.in),
              db = op.output("dbias", c.out);
    op.run(
        [&](auto& d) {
          gpu::dense_backward_input(ctx(), c.n, c.in, c.out, d[dy], d[w], d[dx]);
          gpu::dense_backward_params(ctx(), c.n, c.in, c.out, d[x], d[dy], d[dw], with_bias ? d[db] : nullptr);
        },
        [&](auto& h) {
          cpu::dense_backward_input<double>(c.n, c.in, c.out, h[dy], h[w], h[dx]);
          cpu::dense_backward_params<double>(c.n, c.in, c.out, h[x], h[dy], h[dw], h[db]);
          if (!with_bias) std::fill(h[db], h[db] + c.out, std::nan(""));  // must stay untouched
        });
  }
}

// Dense's backward on the GPU takes the activation's gradient and the bias gradient in one
// kernel: the same bits as activation_backward then dense_backward_params' column sum, in
// place (dz over dy, as Dense calls it) and not, for every elementwise activation, in one
// launch; NaN-poisoned outputs show any element it skips.
TEST_P(DenseGpu, ActivationBackwardWithBiasGradIsTheTwoOpsBitForBit) {
  using gputest::DeviceBuffer;
  const DenseCase c = GetParam();
  const int64_t count = int64_t(c.n) * c.out;
  for (Activation a : kAllActivations) {
    SCOPED_TRACE(to_string(a));
    const ops::ActivationSpec act{a, 0.1f};
    OpCheck op(ctx(), 23);
    const std::vector<float> z = op.random(count, -3, 3), dy = op.random(count);
    std::vector<float> y(z.size());
    cpu::activation_forward<float>(act, count, z.data(), y.data());
    struct Out {
      std::vector<float> dz, dbias;
    };
    auto run = [&](int how) {  // 0: the two ops; 1: fused; 2: fused, dz over dy
      DeviceBuffer dz_in(size_t(count) * sizeof(float)), y_in(size_t(count) * sizeof(float)),
          dy_in(size_t(count) * sizeof(float)), dz_out(size_t(count) * sizeof(float)),
          dw(size_t(c.out) * c.in * sizeof(float)), db(size_t(c.out) * sizeof(float)),
          x_in(size_t(c.n) * c.in * sizeof(float));
      dz_in.upload(z);
      y_in.upload(y);
      dy_in.upload(dy);
      x_in.upload(std::vector<float>(size_t(c.n) * c.in, 0.5f));
      dz_out.upload(std::vector<float>(size_t(count), std::nanf("")));
      db.upload(std::vector<float>(size_t(c.out), std::nanf("")));
      auto* zp = static_cast<float*>(dz_in.get());
      auto* yp = static_cast<float*>(y_in.get());
      auto* dyp = static_cast<float*>(dy_in.get());
      auto* outp = how == 2 ? dyp : static_cast<float*>(dz_out.get());
      const int64_t launches = cuda_kernel_launches();
      if (how == 0) {
        gpu::activation_backward(ctx(), act, count, zp, yp, dyp, outp);
        gpu::dense_backward_params(ctx(), c.n, c.in, c.out, static_cast<float*>(x_in.get()), outp,
                                   static_cast<float*>(dw.get()), static_cast<float*>(db.get()));
      } else {
        gpu::activation_backward_with_bias_grad(ctx(), act, c.n, c.out, zp, yp, dyp, outp,
                                                static_cast<float*>(db.get()));
        EXPECT_EQ(cuda_kernel_launches() - launches, 1);
      }
      cuda::synchronize(ctx());
      return Out{how == 2 ? dy_in.download<float>() : dz_out.download<float>(), db.download<float>()};
    };
    const Out two = run(0), fused = run(1), in_place = run(2);
    for (const Out* o : {&fused, &in_place}) {
      SCOPED_TRACE(o == &fused ? "fused" : "fused, dz over dy");
      ASSERT_EQ(0, std::memcmp(o->dz.data(), two.dz.data(), two.dz.size() * sizeof(float)));
      ASSERT_EQ(0, std::memcmp(o->dbias.data(), two.dbias.data(), two.dbias.size() * sizeof(float)));
    }
    for (float v : two.dbias) ASSERT_TRUE(std::isfinite(v));
  }
}

// The chain of small Dense layers (one kernel forward) against the CPU reference, link by
// link in double: LeNet-5's head and its widest chains, batch 1, 7 (a partial block of 8
// rows), 128, 256 and 517, with and without biases; every link's output NaN-poisoned.
TEST_F(GpuTest, DenseChainForwardIsEveryLinksDenseForward) {
  struct Chain {
    const char* name;
    std::vector<int> widths;
    std::vector<Activation> acts;
  };
  const Chain chains[] = {
      {"lenet5_head", {400, 120, 84, 10}, {Activation::ReLU, Activation::ReLU, Activation::Linear}},
      {"widest", {512, 512, 512}, {Activation::Tanh, Activation::Sigmoid}},
      {"narrow_odd", {3, 1, 33, 5, 7}, {Activation::LeakyReLU, Activation::Linear, Activation::ReLU, Activation::Tanh}},
  };
  for (const Chain& c : chains)
    for (int n : {1, 7, 128, 256, 517})
      for (bool with_bias : {true, false}) {
        std::string trace(c.name);
        trace.append(" n ").append(std::to_string(n)).append(with_bias ? " with bias" : " without bias");
        SCOPED_TRACE(trace);
        const int links = int(c.acts.size());
        auto label = [](const char* prefix, int l) {  // not "w" + to_string(l): GCC 12's -Wrestrict misfires
          std::string name(prefix);
          name.append(std::to_string(l));
          return name;
        };
        OpCheck op(ctx(), 24);
        const int x = op.input("x", int64_t(n) * c.widths[0]);
        std::vector<int> w, b, y;
        for (int l = 0; l < links; ++l) {
          w.push_back(op.input(label("w", l), int64_t(c.widths[size_t(l) + 1]) * c.widths[size_t(l)]));
          b.push_back(op.input(label("b", l), c.widths[size_t(l) + 1]));
          y.push_back(op.output(label("y", l), int64_t(n) * c.widths[size_t(l) + 1]));
        }
        op.run(
            [&](auto& d) {
              std::vector<ops::DenseChainLayer> chain;
              for (int l = 0; l < links; ++l)
                chain.push_back({c.widths[size_t(l)], c.widths[size_t(l) + 1], d[w[size_t(l)]],
                                 with_bias ? d[b[size_t(l)]] : nullptr, {c.acts[size_t(l)], 0.1f}, d[y[size_t(l)]]});
              const int64_t launches = cuda_kernel_launches();
              gpu::dense_chain_forward(ctx(), n, d[x], chain.data(), links);
              EXPECT_EQ(cuda_kernel_launches() - launches, 1);
            },
            [&](auto& h) {
              const double* in = h[x];
              for (int l = 0; l < links; ++l) {
                cpu::dense_forward<double>(n, c.widths[size_t(l)], c.widths[size_t(l) + 1], in, h[w[size_t(l)]],
                                           with_bias ? h[b[size_t(l)]] : nullptr, {c.acts[size_t(l)], 0.1f},
                                           h[y[size_t(l)]]);
                in = h[y[size_t(l)]];
              }
            });
      }
}

TEST_F(GpuTest, DenseChainForwardRefusesLinksItCannotRun) {
  float dummy = 0;
  const ops::DenseChainLayer gelu{4, 4, &dummy, nullptr, {Activation::GELU, 0.f}, &dummy};
  const ops::DenseChainLayer wide{600, 4, &dummy, nullptr, {}, &dummy};
  for (const auto& link : {gelu, wide}) {
    const std::string message = test::error_of([&] { gpu::dense_chain_forward(ctx(), 1, &dummy, &link, 1); });
    EXPECT_NE(message.find("dense_chain_forward: link 0"), std::string::npos) << message;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, DenseGpu, ::testing::ValuesIn(kDenseCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace cnn
