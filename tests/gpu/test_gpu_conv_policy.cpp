// Conv2D under a tf32/bf16 precision policy on CUDA (src/host/layers/conv2d_mma.cpp): the
// tensor-core kernels where their rules take the shape, the fp32 kernels on rounded operands
// elsewhere, per op; CNN_CUDA_CONV_MMA=0 turns the tensor cores off.
//
// Each layer case runs forward and backward three times on the same values: on the CPU under
// the same policy (the reference: rounded operands, fp32 sums), on the GPU with the switch on
// and on the GPU with CNN_CUDA_CONV_MMA=0. Outputs (y, dx, dW, dbias) are poisoned with NaN
// first, so an element nobody writes is caught.
//
// Tolerance: bf16_tolerance(L) (gpu_compare.hpp; derived in test_gpu_conv_mma.cpp) for a
// reduction of L terms: c_in k_h k_w for y, c_out k_h k_w for dx, n h_out w_out for dW and
// dbias. Both sides multiply identical rounded operands and products of two bf16 (or tf32)
// values are exact in fp32, so the two differ only by fp32 summation order, ~sqrt(L) 2^-24;
// an operand rounded differently (unrounded, truncated) costs ~2^-9 (bf16) or ~2^-12 (tf32),
// above every tolerance here. GELU's case is looser for the gradients: dz = gelu'(z) dy is
// rounded after it is computed from each side's own z, so a z a few ulps apart can round dz
// to the neighbouring bf16 value (2^-8 relative in that element); 2e-3 allows a few such flips.
//
// Which path ran: where a rule takes an op, the tensor-core result is expected to differ in
// some bit from the CNN_CUDA_CONV_MMA=0 result (another fp32 summation order over thousands of
// outputs; the bias gradient is left out, since sums of a few hundred bf16 values can be
// exact in fp32 in any order); where it refuses, the two must be identical bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "cnn/rng.hpp"
#include "gpu_compare.hpp"
#include "test_data_util.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {
using gputest::bf16_tolerance;
using gputest::compare_values;
using gputest::DeviceBuffer;
using gputest::relative;
using test::error_of;
using test::ScopedEnv;
namespace gpu = ops::cuda;

class ConvPolicyGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  }
};

// A context made with CNN_CUDA_CONV_MMA set to `mma` (null: unset).
std::shared_ptr<cuda::Context> context_with(const char* mma) {
  ScopedEnv env("CNN_CUDA_CONV_MMA", mma);
  return std::shared_ptr<cuda::Context>(cuda::create_context(), cuda::destroy_context);
}

struct LayerCase {
  const char* name;
  int n, c_in, h, w, filters, k, stride;
  const char* padding;
  const char* activation;
  bool use_bias;
};

const LayerCase kCases[] = {
    // 3 channels: the forward pads to 8 (tf32: 4), the weight gradient falls back (bf16).
    {"rgb_first_layer_relu", 2, 3, 11, 13, 16, 3, 1, "same", "relu", true},
    {"strided_linear", 3, 16, 15, 17, 24, 3, 2, "same", "linear", true},
    // 12 -> 10 channels: bf16 forward padded to 16, input and weight gradients fall back;
    // tf32 forward unpadded, input gradient falls back (10 % 4).
    {"c12_k10_fallbacks_relu", 2, 12, 9, 9, 10, 3, 1, "valid", "relu", true},
    {"batch1_gelu_pre_activation", 1, 8, 7, 5, 8, 3, 1, "same", "gelu", true},
    {"c64_k64_no_bias", 4, 64, 16, 16, 64, 3, 1, "same", "relu", false},
};

std::vector<float> random_floats(size_t count, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(count);
  for (auto& x : v) x = float(rng.uniform(-1, 1));
  return v;
}

struct Results {
  std::vector<float> y, dx, dw, dbias;
};

struct LayerRun {
  const LayerCase& c;
  Precision p;
  Conv2D layer;
  int64_t x_size, y_size, w_size;
  std::vector<float> x, params, dy;

  LayerRun(const LayerCase& lc, Precision precision)
      : c(lc), p(precision), layer(Conv2DOptions{.filters = lc.filters, .kernel_size = lc.k, .strides = lc.stride,
                                                 .padding = lc.padding, .activation = lc.activation,
                                                 .use_bias = lc.use_bias}) {
    const Shape out = layer.build({lc.c_in, lc.h, lc.w});
    x_size = int64_t(lc.n) * lc.c_in * lc.h * lc.w;
    y_size = int64_t(lc.n) * out[0] * out[1] * out[2];
    w_size = int64_t(lc.filters) * lc.c_in * lc.k * lc.k;
    x = random_floats(size_t(x_size), 1);
    params = random_floats(size_t(layer.param_count()), 2);
    dy = random_floats(size_t(y_size), 3);
  }
  ops::Conv2DShape shape() const {
    return ops::Conv2DShape::make(c.n, c.c_in, c.h, c.w, c.filters, c.k, c.k, c.stride, c.stride,
                                  parse_padding(c.padding));
  }

  Results split(const std::vector<float>& y, const std::vector<float>& dx, const std::vector<float>& grads) const {
    return {y, dx, {grads.begin(), grads.begin() + w_size}, {grads.begin() + w_size, grads.end()}};
  }

  Results on_cpu() {
    Conv2D l = layer;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> y(size_t(y_size), nan), dx(size_t(x_size), nan), grads(params.size(), nan), g = dy;
    LayerBuffers<float> b{c.n, x.data(), y.data(), params.data(), grads.data(), g.data(), dx.data()};
    const Exec e{Device::CPU, nullptr, true, 0, p};
    l.forward(e, b);
    l.backward(e, b);
    return split(y, dx, grads);
  }

  Results on_gpu(cuda::Context& ctx) {
    Conv2D l = layer;
    auto nans = [](int64_t count) {
      DeviceBuffer b(size_t(count) * sizeof(float));
      b.upload(std::vector<float>(size_t(count), std::numeric_limits<float>::quiet_NaN()));
      return b;
    };
    DeviceBuffer xd(x.size() * sizeof(float)), pd(params.size() * sizeof(float)), gd(dy.size() * sizeof(float));
    xd.upload(x);
    pd.upload(params);
    gd.upload(dy);
    DeviceBuffer yd = nans(y_size), dxd = nans(x_size), grads = nans(int64_t(params.size()));
    auto f = [](const DeviceBuffer& d) { return static_cast<float*>(d.get()); };
    LayerBuffers<float> b{c.n, f(xd), f(yd), f(pd), f(grads), f(gd), f(dxd)};
    const Exec e{Device::CUDA, &ctx, true, 0, p};
    l.forward(e, b);
    l.backward(e, b);
    cuda::synchronize(ctx);
    return split(yd.download<float>(), dxd.download<float>(), grads.download<float>());
  }
};

void expect_close(const std::vector<float>& got, const std::vector<float>& ref, double tol, const std::string& what) {
  const gputest::DiffReport r = compare_values({got.begin(), got.end()}, {ref.begin(), ref.end()});
  if (std::getenv("CNN_GPU_COMPARE_VERBOSE"))  // the margin below each tolerance, as OpCheck prints it
    std::printf("  [compare] %-28s relative error %.3g (tolerance %.3g)\n", what.c_str(), r.relative, tol);
  EXPECT_EQ(r.non_finite, 0u) << what << ": " << r.non_finite << " values NaN/inf (never written?), first at "
                              << r.first_non_finite;
  EXPECT_LE(r.relative, tol) << what << ": relative error " << r.relative << ", max abs " << r.max_abs << " at "
                             << r.worst;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_F(ConvPolicyGpu, LayerMatchesTheCpuUnderTheSamePolicyOnEitherPath) {
  const auto on = context_with(nullptr), off = context_with("0");
  for (Precision p : {Precision::BF16, Precision::TF32}) {
    for (const LayerCase& c : kCases) {
      SCOPED_TRACE(std::string(c.name) + " " + to_string(p));
      LayerRun run(c, p);
      const ops::Conv2DShape s = run.shape();
      const bool bf16 = p == Precision::BF16;
      auto padded = s;
      padded.c_in = bf16 ? gpu::bf16_padded_channels(s.c_in) : gpu::tf32_padded_channels(s.c_in);
      const bool mma_y = bf16 ? gpu::bf16_forward_takes(padded) : gpu::tf32_forward_takes(padded);
      const bool mma_dx = bf16 ? gpu::bf16_backward_input_takes(s) : gpu::tf32_backward_input_takes(s);
      const bool mma_dw = bf16 && gpu::bf16_backward_params_takes(s);

      const Results ref = run.on_cpu(), fast = run.on_gpu(*on), today = run.on_gpu(*off);
      const bool gelu = std::string(c.activation) == "gelu";
      const double tol_y = bf16_tolerance(int64_t(s.c_in) * s.k_h * s.k_w);
      const double tol_dx = gelu ? 2e-3 : bf16_tolerance(int64_t(s.c_out) * s.k_h * s.k_w);
      const double tol_dw = gelu ? 2e-3 : bf16_tolerance(int64_t(s.n) * s.h_out * s.w_out);
      for (const Results* r : {&fast, &today}) {
        const std::string path = r == &fast ? "tensor cores" : "CNN_CUDA_CONV_MMA=0";
        expect_close(r->y, ref.y, tol_y, path + " y");
        expect_close(r->dx, ref.dx, tol_dx, path + " dx");
        expect_close(r->dw, ref.dw, tol_dw, path + " dW");
        if (c.use_bias) expect_close(r->dbias, ref.dbias, tol_dw, path + " dbias");
      }
      EXPECT_EQ(!same_bits(fast.y, today.y), mma_y) << "y: tensor-core path expected " << mma_y;
      EXPECT_EQ(!same_bits(fast.dx, today.dx), mma_dx) << "dx: tensor-core path expected " << mma_dx;
      EXPECT_EQ(!same_bits(fast.dw, today.dw), mma_dw) << "dW: tensor-core path expected " << mma_dw;
      if (!mma_dw) {
        EXPECT_TRUE(same_bits(fast.dbias, today.dbias));
      }
    }
  }
}

// The switch's fp32 path is today's exactly: a second context with CNN_CUDA_CONV_MMA=0 gives the
// same bits (the fp32 kernels are deterministic), and so does the first again.
TEST_F(ConvPolicyGpu, SwitchedOffIsReproducibleBitForBit) {
  const auto a = context_with("0"), b = context_with("0");
  LayerRun run(kCases[4], Precision::BF16);
  const Results first = run.on_gpu(*a), second = run.on_gpu(*b), again = run.on_gpu(*a);
  for (const Results* r : {&second, &again}) {
    EXPECT_TRUE(same_bits(r->y, first.y));
    EXPECT_TRUE(same_bits(r->dx, first.dx));
    EXPECT_TRUE(same_bits(r->dw, first.dw));
  }
}

TEST_F(ConvPolicyGpu, AnUnknownSwitchValueIsRefusedByName) {
  ScopedEnv env("CNN_CUDA_CONV_MMA", "on");
  const std::string e = error_of([] { cuda::destroy_context(cuda::create_context()); });
  EXPECT_CONTAINS(e, "CNN_CUDA_CONV_MMA must be '1'");
  EXPECT_CONTAINS(e, "not 'on'");
}

// A small model of the three kinds (a 3-channel first layer, a strided conv, a 12-channel conv
// whose gradients fall back) trains three SGD steps under each policy, the second captured into
// a CUDA graph and the third replayed, batch 5 and then predictions of batch 1: losses,
// parameters and predictions within the 1e-4 of the other whole-model GPU tests (a flip of one
// rounded value between the devices, see test_gpu_precision.cpp, stays far below it).
TEST_F(ConvPolicyGpu, SequentialTrainsAsOnTheCpuUnderEachPolicyWithEitherSwitch) {
  for (const char* mma : {static_cast<const char*>(nullptr), "0"}) {
    for (const char* precision : {"bf16", "tf32"}) {
      SCOPED_TRACE(std::string(precision) + (mma ? " CNN_CUDA_CONV_MMA=0" : ""));
      ScopedEnv env("CNN_CUDA_CONV_MMA", mma);  // read when to() makes the model's context
      CompileOptions o;
      o.optimizer = "sgd";
      o.learning_rate = 0.02f;
      o.loss = "scce";
      o.input_shape = {3, 13, 11};
      o.precision = precision;
      Sequential cpu({Conv2D(16, 3, 1, "same", "relu"), Conv2D(24, 3, 2, "same", "relu"),
                      Conv2D(12, 3, 1, "valid", "relu"), Conv2D(8, 1, 1, "valid", "gelu"), Flatten(),
                      Dense(4, "softmax")});
      cpu.compile(o);
      Sequential gpu = Sequential::from_json(cpu.to_json());
      gpu.set_weights(cpu.weights());
      gpu.to(Device::CUDA);
      const auto data = test::make_quadrant_data(5 * 3 + 1, 3, 13, 11, 4);
      for (int step = 0; step < 3; ++step) {
        const Tensor x = data.x.slice(step * 5, step * 5 + 5), y = data.y.slice(step * 5, step * 5 + 5);
        const double a = cpu.train_on_batch(x, y), b = gpu.train_on_batch(x, y);
        ASSERT_TRUE(std::isfinite(b)) << "step " << step;
        ASSERT_NEAR(b, a, 1e-4 * std::abs(a)) << "step " << step;
      }
      EXPECT_LE(relative(gpu.parameters().to_vector(), cpu.parameters().to_vector()), 1e-4);
      const Tensor one = data.x.slice(15, 16);
      EXPECT_LE(relative(gpu.predict(one).to_vector(), cpu.predict(one).to_vector()), 1e-4);
    }
  }
}

}  // namespace
}  // namespace cnn
