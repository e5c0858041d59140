// The [fast-gpu] convolution kernels (conv2d_fast.cuh): the direct forward, its
// input-gradient twin and the split-K weight gradient against the CPU reference (in double),
// their rules and switch, bit-reproducibility, and LeNet-5 training with them on.
//
// Tolerance: the default 1e-5 (gpu_compare.hpp) for every op check. The direct forward sums
// at most c_in k_h k_w = 8 x 25 = 200 products per output, the input gradient at most
// c_out k_h k_w = 32 x 25 = 800. The split-K weight gradient's longest sequential chain is
// one slice, about R / (2 x SMs) positions (~800 at batch 256 on 132 SMs, more on a GPU with
// fewer SMs), then the slices' sums in 8 strided chains of a few dozen, added in order.
// Float rounding grows like sqrt(chain) x 2^-24 for random-signed data, ~2e-6 at worst
// here; a missing term or a wrong index gives O(1). The whole-model test uses the 1e-4 of
// test_gpu_model.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "gpu_compare.hpp"
#include "kernels/cuda/conv2d_fast.cuh"
#include "test_data_util.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {
using gputest::relative;
using gputest::ConvCase;
using gputest::shape_of;
using gputest::DeviceBuffer;
using gputest::GpuTest;
using gputest::OpCheck;
namespace gpu = ops::cuda;
namespace cpu = ops::cpu;

using test::ScopedEnv;  // the contexts made inside read CNN_CUDA_CONV_KERNELS

const Activation kAllActivations[] = {Activation::Linear, Activation::ReLU, Activation::LeakyReLU,
                                      Activation::Sigmoid, Activation::Tanh, Activation::GELU};

// LeNet-5's two convolutions (RGB and grayscale) and odd shapes inside both kernels' rules:
// channel counts that are not multiples of the 8-channel groups, bands that do not divide
// the output rows, stride 2, 'same' padding with an even kernel (1 before, 2 after).
const ConvCase kFastCases[] = {
    {"lenet5_conv1", 128, 3, 32, 32, 6, 5, 5, 1, 1, Padding::Valid},
    {"lenet5_gray_conv1", 7, 1, 32, 32, 6, 5, 5, 1, 1, Padding::Valid},
    {"lenet5_conv2", 128, 6, 14, 14, 16, 5, 5, 1, 1, Padding::Valid},
    {"batch1_odd", 1, 3, 13, 11, 5, 3, 3, 1, 1, Padding::Valid},
    {"batch7_stride2_same", 7, 5, 15, 17, 13, 3, 3, 2, 2, Padding::Same},
    {"even_kernel_same", 3, 2, 9, 10, 9, 4, 4, 1, 1, Padding::Same},
    {"rect_kernel_mixed_stride", 2, 8, 11, 7, 17, 2, 3, 2, 1, Padding::Same},
    {"wide_rows_one_row_per_band", 2, 1, 5, 150, 3, 3, 3, 1, 1, Padding::Same},  // w_out > threads per block
    {"batch256_32_filters", 256, 5, 12, 12, 32, 5, 5, 1, 1, Padding::Same},      // 32 x 126 = 4032 outputs
    {"kernel_equals_input", 5, 2, 5, 5, 3, 5, 5, 1, 1, Padding::Valid},          // 1x1 output
};

class FastConvGpu : public GpuTest, public ::testing::WithParamInterface<ConvCase> {};

TEST_P(FastConvGpu, DirectForwardEveryActivationWithAndWithoutBias) {
  const auto s = shape_of(GetParam());
  ASSERT_TRUE(gpu::direct_forward_takes(s));
  for (Activation a : kAllActivations)
    for (bool with_bias : {true, false}) {
      SCOPED_TRACE(to_string(a) + (with_bias ? " with bias" : " without bias"));
      const ops::ActivationSpec act{a, 0.2f};
      OpCheck op(ctx(), 31);
      const int x = op.input("x", s.x_size()), w = op.input("w", s.w_size()), b = op.input("bias", s.c_out);
      const int y = op.output("y", s.y_size());
      op.run([&](auto& d) { gpu::conv2d_forward_direct(ctx(), s, d[x], d[w], with_bias ? d[b] : nullptr, act, d[y]); },
             [&](auto& h) { cpu::conv2d_forward<double>(s, h[x], h[w], with_bias ? h[b] : nullptr, act, h[y]); });
    }
}

TEST_P(FastConvGpu, DirectBackwardInput) {
  const auto s = shape_of(GetParam());
  ASSERT_TRUE(gpu::direct_backward_input_takes(s));
  OpCheck op(ctx(), 35);
  const int dy = op.input("dy", s.y_size()), w = op.input("w", s.w_size());
  const int dx = op.output("dx", s.x_size());
  op.run([&](auto& d) { gpu::conv2d_backward_input_direct(ctx(), s, d[dy], d[w], d[dx]); },
         [&](auto& h) { cpu::conv2d_backward_input<double>(s, h[dy], h[w], h[dx]); });
}

TEST_P(FastConvGpu, SplitKWeightGradientWithAndWithoutBias) {
  const auto s = shape_of(GetParam());
  ASSERT_TRUE(gpu::split_k_weight_grad_takes(s));
  for (bool with_bias : {true, false}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    OpCheck op(ctx(), 32);
    const int x = op.input("x", s.x_size()), dy = op.input("dy", s.y_size());
    const int dw = op.output("dw", s.w_size()), db = op.output("dbias", s.c_out);
    op.run(
        [&](auto& d) {
          gpu::conv2d_backward_params_split_k(ctx(), s, d[x], d[dy], d[dw], with_bias ? d[db] : nullptr);
        },
        [&](auto& h) {
          cpu::conv2d_backward_params<double>(s, h[x], h[dy], h[dw], h[db]);  // always fills dbias...
          if (!with_bias) std::fill(h[db], h[db] + s.c_out, std::nan(""));    // ...which must stay untouched
        });
  }
}

// With the switch on, the public entry points take the fast kernels for these shapes and
// still match the CPU.
TEST_P(FastConvGpu, PublicEntryPointsWithTheFastSwitchOnMatchTheCpu) {
  const auto s = shape_of(GetParam());
  ctx().conv_kernels = cuda::ConvKernels::Fast;
  OpCheck op(ctx(), 33);
  const int x = op.input("x", s.x_size()), w = op.input("w", s.w_size()), b = op.input("bias", s.c_out);
  const int dy = op.input("dy", s.y_size());
  const int y = op.output("y", s.y_size()), dx = op.output("dx", s.x_size()), dw = op.output("dw", s.w_size()),
            db = op.output("dbias", s.c_out);
  const ops::ActivationSpec relu{Activation::ReLU, 0};
  op.run(
      [&](auto& d) {
        gpu::conv2d_forward(ctx(), s, d[x], d[w], d[b], relu, d[y]);
        gpu::conv2d_backward_input(ctx(), s, d[dy], d[w], d[dx]);
        gpu::conv2d_backward_params(ctx(), s, d[x], d[dy], d[dw], d[db]);
      },
      [&](auto& h) {
        cpu::conv2d_forward<double>(s, h[x], h[w], h[b], relu, h[y]);
        cpu::conv2d_backward_input<double>(s, h[dy], h[w], h[dx]);
        cpu::conv2d_backward_params<double>(s, h[x], h[dy], h[dw], h[db]);
      });
}

INSTANTIATE_TEST_SUITE_P(Shapes, FastConvGpu, ::testing::ValuesIn(kFastCases),
                         [](const auto& info) { return std::string(info.param.name); });

// The rules take LeNet-5's convolutions and leave wide layers to the implicit GEMMs.
TEST(FastConvRules, TakeLeNetConvolutionsAndLeaveWideLayersToTheGemms) {
  const auto conv1 = ops::Conv2DShape::make(128, 3, 32, 32, 6, 5, 5, 1, 1, Padding::Valid);
  const auto gray1 = ops::Conv2DShape::make(512, 1, 32, 32, 6, 5, 5, 1, 1, Padding::Valid);
  const auto conv2 = ops::Conv2DShape::make(128, 6, 14, 14, 16, 5, 5, 1, 1, Padding::Valid);
  for (const auto& s : {conv1, gray1, conv2}) {
    EXPECT_TRUE(gpu::direct_forward_takes(s));
    EXPECT_TRUE(gpu::direct_backward_input_takes(s));
    EXPECT_TRUE(gpu::split_k_weight_grad_takes(s));
  }
  const auto wide = ops::Conv2DShape::make(128, 64, 16, 16, 64, 3, 3, 1, 1, Padding::Same);
  EXPECT_FALSE(gpu::direct_forward_takes(wide));         // 64 input channels
  EXPECT_FALSE(gpu::direct_backward_input_takes(wide));  // 64 channels of dx
  EXPECT_FALSE(gpu::split_k_weight_grad_takes(wide));    // 64 filters
  const auto many_taps = ops::Conv2DShape::make(8, 8, 16, 16, 32, 7, 7, 1, 1, Padding::Same);
  EXPECT_FALSE(gpu::split_k_weight_grad_takes(many_taps));  // 32 x 393 outputs > 4096
  const auto big_image = ops::Conv2DShape::make(1, 8, 512, 512, 8, 3, 3, 1, 1, Padding::Same);
  EXPECT_FALSE(gpu::direct_forward_takes(big_image));  // its band's rows exceed 48 KB of shared memory
  const auto many_filters = ops::Conv2DShape::make(1, 3, 64, 64, 512, 3, 3, 1, 1, Padding::Same);
  EXPECT_FALSE(gpu::direct_backward_input_takes(many_filters));  // 512 channels of dy rows exceed 48 KB
}

// The pooling after a direct convolution, fused into its epilogue: window = stride >= 2, no
// padding, the pool's input being the conv's output. Runs in CI without a GPU (host code).
TEST(FastConvRules, PooledForwardTakesLeNetsConvPoolPairsOnly) {
  const auto conv1 = ops::Conv2DShape::make(128, 3, 32, 32, 6, 5, 5, 1, 1, Padding::Valid);
  const auto conv2 = ops::Conv2DShape::make(128, 6, 14, 14, 16, 5, 5, 1, 1, Padding::Valid);
  auto pool = [](const ops::Conv2DShape& s, int k, int stride, Padding p) {
    return ops::Pool2DShape::make(s.n, s.c_out, s.h_out, s.w_out, k, k, stride, stride, p);
  };
  for (const auto& s : {conv1, conv2}) {
    EXPECT_TRUE(gpu::direct_forward_pooled_takes(s, pool(s, 2, 2, Padding::Valid)));
    EXPECT_TRUE(gpu::direct_forward_pooled_takes(s, pool(s, 3, 3, Padding::Valid)));
    EXPECT_FALSE(gpu::direct_forward_pooled_takes(s, pool(s, 3, 2, Padding::Valid)));  // overlapping windows
    EXPECT_FALSE(gpu::direct_forward_pooled_takes(s, pool(s, 2, 1, Padding::Valid)));
  }
  EXPECT_FALSE(gpu::direct_forward_pooled_takes(conv1, pool(conv1, 3, 3, Padding::Same)));  // 28 = 9 x 3 + 1: padded
  auto other = pool(conv2, 2, 2, Padding::Valid);
  other.c = 6;  // not the conv's output
  EXPECT_FALSE(gpu::direct_forward_pooled_takes(conv2, other));
  const auto wide = ops::Conv2DShape::make(2, 64, 8, 8, 64, 3, 3, 1, 1, Padding::Same);
  EXPECT_FALSE(gpu::direct_forward_pooled_takes(wide, pool(wide, 2, 2, Padding::Valid)));  // no direct forward
}

// With the fast kernels, the conv and the pooling after it run as one kernel whose y and
// pooled output are the bits of the direct forward then the pooling kernel; with the default
// kernels the op declines and leaves both outputs alone. Odd sizes leave rows and columns
// that 'valid' pooling ignores; batch 1, 7 and 16 (small enough for racecheck); 2x2 and 3x3
// windows; max and average.
TEST_F(GpuTest, ConvForwardWithPoolingIsTheTwoKernelsBitForBit) {
  struct Pair {
    const char* name;
    int n, c_in, h, w, c_out, k, pool;
  };
  const Pair pairs[] = {{"lenet5_conv1", 16, 3, 32, 32, 6, 5, 2},   {"lenet5_conv2", 7, 6, 14, 14, 16, 5, 2},
                        {"gray_conv1_pool3", 1, 1, 32, 32, 6, 5, 3}, {"odd_13x11", 7, 5, 13, 11, 13, 3, 2},
                        {"wide_rows", 2, 1, 5, 150, 3, 3, 2}};
  const cuda::ConvKernels before = ctx().conv_kernels;
  for (const Pair& c : pairs)
    for (const bool max_pool : {false, true})
      for (Activation a : {Activation::ReLU, Activation::Tanh}) {
        std::string trace(c.name);
        trace.append(max_pool ? " max " : " average ").append(to_string(a));
        SCOPED_TRACE(trace);
        const auto s = ops::Conv2DShape::make(c.n, c.c_in, c.h, c.w, c.c_out, c.k, c.k, 1, 1, Padding::Valid);
        const auto p = ops::Pool2DShape::make(c.n, c.c_out, s.h_out, s.w_out, c.pool, c.pool, c.pool, c.pool,
                                              Padding::Valid);
        ASSERT_TRUE(gpu::direct_forward_pooled_takes(s, p));
        OpCheck op(ctx(), 41);
        const std::vector<float> x = op.random(s.x_size()), w = op.random(s.w_size()), bias = op.random(s.c_out);
        const ops::ActivationSpec act{a, 0.f};
        auto run = [&](int how) {  // 0: the two kernels; 1: fused; 2: the default kernels (declines)
          DeviceBuffer xb(x.size() * 4), wb(w.size() * 4), bb(bias.size() * 4), yb(size_t(s.y_size()) * 4),
              pb(size_t(p.y_size()) * 4);
          xb.upload(x);
          wb.upload(w);
          bb.upload(bias);
          yb.upload(std::vector<float>(size_t(s.y_size()), std::nanf("")));
          pb.upload(std::vector<float>(size_t(p.y_size()), std::nanf("")));
          auto* xp = static_cast<float*>(xb.get());
          auto* wp = static_cast<float*>(wb.get());
          auto* bp = static_cast<float*>(bb.get());
          auto* yp = static_cast<float*>(yb.get());
          auto* pp = static_cast<float*>(pb.get());
          ctx().conv_kernels = how == 2 ? cuda::ConvKernels::Default : cuda::ConvKernels::Fast;
          if (how == 0) {
            gpu::conv2d_forward_direct(ctx(), s, xp, wp, bp, act, yp);
            if (max_pool) gpu::maxpool2d_forward(ctx(), p, yp, pp);
            else gpu::avgpool2d_forward(ctx(), p, yp, pp);
          } else {
            const int64_t launches = cuda_kernel_launches();
            EXPECT_EQ(gpu::conv2d_forward_pooled(ctx(), s, p, max_pool, xp, wp, bp, act, yp, pp), how == 1);
            EXPECT_EQ(cuda_kernel_launches() - launches, how == 1 ? 1 : 0);
          }
          cuda::synchronize(ctx());
          return std::make_pair(yb.download<float>(), pb.download<float>());
        };
        const auto two = run(0), one = run(1), declined = run(2);
        ASSERT_EQ(0, std::memcmp(one.first.data(), two.first.data(), two.first.size() * sizeof(float)));
        ASSERT_EQ(0, std::memcmp(one.second.data(), two.second.data(), two.second.size() * sizeof(float)));
        for (float v : two.second) ASSERT_TRUE(std::isfinite(v));
        for (float v : declined.second) ASSERT_TRUE(std::isnan(v));  // untouched
      }
  ctx().conv_kernels = before;
}

TEST_F(GpuTest, FastConvKernelsRefuseShapesOutsideTheirRules) {
  const auto wide = ops::Conv2DShape::make(2, 64, 8, 8, 64, 3, 3, 1, 1, Padding::Same);
  EXPECT_THROW(gpu::conv2d_forward_direct(ctx(), wide, nullptr, nullptr, nullptr, {Activation::Linear}, nullptr),
               Error);
  EXPECT_THROW(gpu::conv2d_backward_input_direct(ctx(), wide, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(gpu::conv2d_backward_params_split_k(ctx(), wide, nullptr, nullptr, nullptr, nullptr), Error);
}

TEST(FastConvSwitch, ContextsReadCnnCudaConvKernelsWhenTheyAreMade) {
  if (!cuda_available()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  const auto kernels_with = [](const char* value) {
    ScopedEnv env("CNN_CUDA_CONV_KERNELS", value);
    cuda::Context* c = cuda::create_context();
    const cuda::ConvKernels k = c->conv_kernels;
    cuda::destroy_context(c);
    return k;
  };
  EXPECT_EQ(kernels_with(nullptr), cuda::ConvKernels::Default);
  EXPECT_EQ(kernels_with("default"), cuda::ConvKernels::Default);
  EXPECT_EQ(kernels_with("fast"), cuda::ConvKernels::Fast);
  ScopedEnv env("CNN_CUDA_CONV_KERNELS", "Fast!");
  EXPECT_THROW(cuda::destroy_context(cuda::create_context()), Error);
}

// Fixed reduction orders: the same inputs give bit-identical outputs, call after call, and
// the switched entry points give exactly what the fast kernels give.
TEST_F(GpuTest, FastConvKernelsAreBitReproducible) {
  const auto s = ops::Conv2DShape::make(96, 3, 32, 32, 6, 5, 5, 1, 1, Padding::Valid);
  OpCheck values(ctx(), 34);
  const auto to_device = [](const std::vector<float>& v) {
    DeviceBuffer b(v.size() * sizeof(float));
    b.upload(v);
    return b;
  };
  const DeviceBuffer x = to_device(values.random(s.x_size())), w = to_device(values.random(s.w_size())),
                     bias = to_device(values.random(s.c_out)), dy = to_device(values.random(s.y_size()));
  const auto f = [](const DeviceBuffer& b) { return static_cast<float*>(b.get()); };
  const auto run = [&](bool through_switch) {
    DeviceBuffer y(size_t(s.y_size()) * sizeof(float)), dx(size_t(s.x_size()) * sizeof(float)),
        dw(size_t(s.w_size()) * sizeof(float)), db(size_t(s.c_out) * sizeof(float));
    const ops::ActivationSpec tanh_act{Activation::Tanh, 0};
    if (through_switch) {
      ctx().conv_kernels = cuda::ConvKernels::Fast;
      gpu::conv2d_forward(ctx(), s, f(x), f(w), f(bias), tanh_act, f(y));
      gpu::conv2d_backward_input(ctx(), s, f(dy), f(w), f(dx));
      gpu::conv2d_backward_params(ctx(), s, f(x), f(dy), f(dw), f(db));
    } else {
      gpu::conv2d_forward_direct(ctx(), s, f(x), f(w), f(bias), tanh_act, f(y));
      gpu::conv2d_backward_input_direct(ctx(), s, f(dy), f(w), f(dx));
      gpu::conv2d_backward_params_split_k(ctx(), s, f(x), f(dy), f(dw), f(db));
    }
    cuda::synchronize(ctx());
    std::vector<std::vector<float>> out{y.download<float>(), dx.download<float>(), dw.download<float>(),
                                        db.download<float>()};
    return out;
  };
  const auto first = run(false), second = run(false), switched = run(true);
  for (size_t i = 0; i < first.size(); ++i) {
    SCOPED_TRACE("output " + std::to_string(i) + " (y, dx, dw, dbias)");
    for (float v : first[i]) ASSERT_TRUE(std::isfinite(v));
    EXPECT_EQ(first[i], second[i]);
    EXPECT_EQ(first[i], switched[i]);
  }
}

// Twenty SGD steps of LeNet-5 (RGB and grayscale) with the fast kernels on agree with the
// CPU to the 1e-4 of the other whole-model tests (from the third step on, a step replays the
// recorded CUDA graph, so the fast kernels are checked inside graphs too).
TEST(FastConvModel, TwentySgdStepsOfLeNet5WithTheFastKernelsAgreeWithTheCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  ScopedEnv env("CNN_CUDA_CONV_KERNELS", "fast");  // read when the GPU model makes its context
  for (const auto& [file, channels] :
       {std::pair<const char*, int>{"lenet5.json", 3}, std::pair<const char*, int>{"lenet5_gray.json", 1}}) {
    SCOPED_TRACE(file);
    CompileOptions sgd;
    sgd.optimizer = "sgd";
    sgd.momentum = 0.9f;
    sgd.learning_rate = 0.01f;
    sgd.input_shape = {channels, 32, 32};
    Sequential cpu_model = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/" + file);
    cpu_model.compile(sgd);
    Sequential gpu_model = Sequential::from_json(cpu_model.to_json());
    gpu_model.set_weights(cpu_model.weights());
    gpu_model.to(Device::CUDA);
    const auto data = test::make_quadrant_data(32 * 20, channels, 32, 32, 6);
    for (int step = 0; step < 20; ++step) {
      const Tensor x = data.x.slice(step * 32, step * 32 + 32), y = data.y.slice(step * 32, step * 32 + 32);
      const Tensor onehot = to_categorical(y, 10);
      const double a = cpu_model.train_on_batch(x, onehot), b = gpu_model.train_on_batch(x, onehot);
      ASSERT_NEAR(b, a, 1e-4 * std::abs(a)) << "step " << step;
    }
    EXPECT_LE(relative(gpu_model.parameters().to_vector(), cpu_model.parameters().to_vector()), 1e-4);
  }
}

}  // namespace
}  // namespace cnn
