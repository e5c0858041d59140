// The [bf16] tensor-core convolutions (conv2d_mma_bf16.cu): forward, input gradient and
// split-K weight gradient on mma.sync bf16, and the forward and input gradient on tf32, against
// the CPU reference with the same rounded operands (ops::cpu::*_bf16, *_tf32, in double); the
// layout conversions bit for bit; the shape rules; bit-reproducibility of the split-K reduction.
//
// Each GPU op runs the whole path a layer will: NCHW fp32 -> NHWC bf16 (nchw_to_nhwc_bf16, for
// weights too), the kernel into an NHWC fp32 buffer poisoned with NaN, NHWC -> NCHW into the
// OpCheck output (poisoned again), so an element no kernel writes is caught.
//
// Tolerance (bf16_tolerance): both sides multiply identical bf16 values, and a product of two
// bf16 values is exact in fp32, so the GPU's only error is its fp32 accumulation over the
// reduction length L (c_in k_h k_w forward, c_out k_h k_w backward input, the n h_out w_out
// pixels of one split for the weight gradient, then the splits in order). Worst case per
// element: |gpu - ref| <= L 2^-24 sum|a b| (plus 2^-24 |bias| and the activation's float
// rounding). For random-signed data the error grows like sqrt(L) 2^-24 relative to the
// result, and the tensor cores' accumulation may truncate instead of rounding (a bias of up to
// 2^-23 per mma step of 16 products); the tolerance allows 32 sqrt(L) 2^-24 normwise (at
// least 1e-5): 1.6e-5 for L = 72, 7.4e-5 for L = 2304, 4.9e-4 for L = 65536. A wrong index or
// a lost tile gives O(1); an operand rounded differently from the reference (truncated,
// say) gives ~2^-9 ~ 2e-3, above every tolerance here. tf32 (11 significant bits, products
// of two exact in fp32 too) takes the same tolerance; a tf32 rounding mismatch (~2^-12 ~ 2.4e-4)
// is above it for the reductions of these tests (L <= 6,400, tolerance <= 1.6e-4).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cnn/cnn.hpp"
#include "gpu_compare.hpp"
#include "kernels/cuda/context.cuh"
#include "kernels/formulas/precision.hpp"

namespace cnn {
namespace {
using gputest::ConvCase;
using gputest::shape_of;
using gputest::DeviceBuffer;
using gputest::GpuTest;
using gputest::OpCheck;
namespace gpu = ops::cuda;
namespace cpu = ops::cpu;

using gputest::bf16_tolerance;

// Odd pixel counts (batch 1, 7, 256; sizes that leave partial 128-pixel tiles), channels in
// {8, 16, 24, 64, 256} (partial 64-filter tiles, reductions that are not multiples of 32),
// 1x1, 3x3, 4x4 and 5x5, 'same' and 'valid', stride 1 and 2 (and 2 x 1: the input gradient's
// dilation per axis), and airbench's widest block.
const ConvCase kCases[] = {
    {"batch1_c8_k16_same", 1, 8, 9, 11, 16, 3, 3, 1, 1, Padding::Same},
    {"batch7_c16_k24_valid", 7, 16, 13, 10, 24, 3, 3, 1, 1, Padding::Valid},
    {"batch7_c24_k8_stride2_same", 7, 24, 15, 17, 8, 3, 3, 2, 2, Padding::Same},
    {"batch3_c8_k24_5x5_stride2_same", 3, 8, 16, 16, 24, 5, 5, 2, 2, Padding::Same},
    {"batch2_c64_k256_5x5_valid", 2, 64, 11, 9, 256, 5, 5, 1, 1, Padding::Valid},
    {"batch3_c16_k8_even_kernel_same", 3, 16, 9, 10, 8, 4, 4, 1, 1, Padding::Same},  // pads 1 before, 2 after
    {"batch2_c8_k16_4x3_stride2x1_same", 2, 8, 12, 11, 16, 4, 3, 2, 1, Padding::Same},
    {"batch7_c256_k16_1x1", 7, 256, 5, 5, 16, 1, 1, 1, 1, Padding::Valid},
    {"batch1_c256_k256_same", 1, 256, 8, 8, 256, 3, 3, 1, 1, Padding::Same},
    {"batch256_c64_k64_same", 256, 64, 8, 8, 64, 3, 3, 1, 1, Padding::Same},
    {"airbench_batch64_c64_k256_32x32", 64, 64, 32, 32, 256, 3, 3, 1, 1, Padding::Same},
};

// Few-channel first layers: c_in = 3 padded to 8 zero channels (airbench's 2x2 whitening
// 3 -> 24, a 3 -> 64 stem), through the public forward with the padded shape.
const ConvCase kFirstLayerCases[] = {
    {"whitening_c3_k24_2x2_valid", 7, 3, 32, 32, 24, 2, 2, 1, 1, Padding::Valid},
    {"stem_batch1_c3_k64_same", 1, 3, 17, 15, 64, 3, 3, 1, 1, Padding::Same},
    {"stem_batch256_c3_k16_stride2_same", 256, 3, 16, 16, 16, 3, 3, 2, 2, Padding::Same},
};

uint16_t* u16(const DeviceBuffer& b) { return static_cast<uint16_t*>(b.get()); }
float* f32(const DeviceBuffer& b) { return static_cast<float*>(b.get()); }

// A device buffer of `count` floats, all NaN.
DeviceBuffer nan_floats(int64_t count) {
  DeviceBuffer b(size_t(count) * sizeof(float));
  b.upload(std::vector<float>(size_t(count), std::numeric_limits<float>::quiet_NaN()));
  return b;
}
DeviceBuffer bf16_buffer(int64_t count) { return DeviceBuffer(size_t(count) * sizeof(uint16_t)); }

// dx through the bf16 layouts and kernel against the CPU reference on the same rounded operands.
void check_backward_input(cuda::Context& ctx, const ConvCase& c, uint64_t seed) {
  const auto s = shape_of(c);
  ASSERT_TRUE(gpu::bf16_backward_input_takes(s));
  DeviceBuffer dyh = bf16_buffer(s.y_size()), wh = bf16_buffer(s.w_size()), dxh = nan_floats(s.x_size());
  OpCheck op(ctx, seed);
  const int dy = op.input("dy", s.y_size()), w = op.input("w", s.w_size());
  const int dx = op.output("dx", s.x_size(), bf16_tolerance(int64_t(s.c_out) * s.k_h * s.k_w));
  op.run(
      [&](auto& d) {
        gpu::nchw_to_nhwc_bf16(ctx, s.n, s.c_out, s.h_out, s.w_out, s.c_out, d[dy], u16(dyh));
        gpu::nchw_to_nhwc_bf16(ctx, s.c_out, s.c_in, s.k_h, s.k_w, s.c_in, d[w], u16(wh));
        gpu::conv2d_backward_input_bf16(ctx, s, u16(dyh), u16(wh), f32(dxh));
        gpu::nhwc_to_nchw(ctx, s.n, s.c_in, s.h_in, s.w_in, f32(dxh), d[dx]);
      },
      [&](auto& h) { cpu::conv2d_backward_input_bf16<double>(s, h[dy], h[w], h[dx]); });
}

void check_forward(cuda::Context& ctx, const ConvCase& c, ops::ActivationSpec act, bool with_bias) {
  const auto s = shape_of(c);
  auto padded = s;
  padded.c_in = gpu::bf16_padded_channels(s.c_in);
  ASSERT_TRUE(gpu::bf16_forward_takes(padded));
  const int cp = padded.c_in;
  DeviceBuffer xh = bf16_buffer(padded.x_size()), wh = bf16_buffer(padded.w_size()), yh = nan_floats(s.y_size());
  OpCheck op(ctx, 41);
  const int x = op.input("x", s.x_size()), w = op.input("w", s.w_size()), b = op.input("bias", s.c_out);
  const int y = op.output("y", s.y_size(), bf16_tolerance(int64_t(s.c_in) * s.k_h * s.k_w));
  op.run(
      [&](auto& d) {
        gpu::nchw_to_nhwc_bf16(ctx, s.n, s.c_in, s.h_in, s.w_in, cp, d[x], u16(xh));
        gpu::nchw_to_nhwc_bf16(ctx, s.c_out, s.c_in, s.k_h, s.k_w, cp, d[w], u16(wh));
        gpu::conv2d_forward_bf16(ctx, padded, u16(xh), u16(wh), with_bias ? d[b] : nullptr, act, f32(yh));
        gpu::nhwc_to_nchw(ctx, s.n, s.c_out, s.h_out, s.w_out, f32(yh), d[y]);
      },
      [&](auto& h) { cpu::conv2d_forward_bf16<double>(s, h[x], h[w], with_bias ? h[b] : nullptr, act, h[y]); });
}

class MmaConvGpu : public GpuTest, public ::testing::WithParamInterface<ConvCase> {};

TEST_P(MmaConvGpu, ForwardWithBiasAndGelu) {
  {
    SCOPED_TRACE("linear with bias");
    check_forward(ctx(), GetParam(), {Activation::Linear, 0}, true);
  }
  {
    SCOPED_TRACE("GELU without bias");
    check_forward(ctx(), GetParam(), {Activation::GELU, 0}, false);
  }
}

TEST_P(MmaConvGpu, BackwardInput) {
  check_backward_input(ctx(), GetParam(), 43);
}

TEST_P(MmaConvGpu, BackwardParamsWithAndWithoutBias) {
  const auto s = shape_of(GetParam());
  ASSERT_TRUE(gpu::bf16_backward_params_takes(s));
  // The longest fp32 chain: all pixels when the reduction is not split (a bound for any split).
  const double tol = bf16_tolerance(int64_t(s.n) * s.h_out * s.w_out);
  for (bool with_bias : {true, false}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    DeviceBuffer xh = bf16_buffer(s.x_size()), dyh = bf16_buffer(s.y_size()), dwh = nan_floats(s.w_size());
    OpCheck op(ctx(), 47);
    const int x = op.input("x", s.x_size()), dy = op.input("dy", s.y_size());
    const int dw = op.output("dw", s.w_size(), tol), db = op.output("dbias", s.c_out, tol);
    op.run(
        [&](auto& d) {
          gpu::nchw_to_nhwc_bf16(ctx(), s.n, s.c_in, s.h_in, s.w_in, s.c_in, d[x], u16(xh));
          gpu::nchw_to_nhwc_bf16(ctx(), s.n, s.c_out, s.h_out, s.w_out, s.c_out, d[dy], u16(dyh));
          gpu::conv2d_backward_params_bf16(ctx(), s, u16(xh), u16(dyh), f32(dwh), with_bias ? d[db] : nullptr);
          gpu::nhwc_to_nchw(ctx(), s.c_out, s.c_in, s.k_h, s.k_w, f32(dwh), d[dw]);  // KRSC -> OIHW
        },
        [&](auto& h) {
          cpu::conv2d_backward_params_bf16<double>(s, h[x], h[dy], h[dw], h[db]);
          if (!with_bias) std::fill(h[db], h[db] + s.c_out, std::nan(""));  // must stay untouched
        });
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MmaConvGpu, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

// tf32: fp32 NHWC storage rounded to tf32 by nchw_to_nhwc_tf32 (channels padded to 4).
TEST_P(MmaConvGpu, Tf32ForwardAndBackwardInput) {
  const auto s = shape_of(GetParam());
  auto padded = s;
  padded.c_in = gpu::tf32_padded_channels(s.c_in);
  ASSERT_TRUE(gpu::tf32_forward_takes(padded));
  ASSERT_TRUE(gpu::tf32_backward_input_takes(s));
  const int cp = padded.c_in;
  DeviceBuffer xh = nan_floats(padded.x_size()), wh = nan_floats(padded.w_size()), yh = nan_floats(s.y_size());
  DeviceBuffer dyh = nan_floats(s.y_size()), wu = nan_floats(s.w_size()), dxh = nan_floats(s.x_size());
  OpCheck op(ctx(), 59);
  const int x = op.input("x", s.x_size()), w = op.input("w", s.w_size()), b = op.input("bias", s.c_out);
  const int dy = op.input("dy", s.y_size());
  const int y = op.output("y", s.y_size(), bf16_tolerance(int64_t(s.c_in) * s.k_h * s.k_w));
  const int dx = op.output("dx", s.x_size(), bf16_tolerance(int64_t(s.c_out) * s.k_h * s.k_w));
  const ops::ActivationSpec relu{Activation::ReLU, 0};
  op.run(
      [&](auto& d) {
        gpu::nchw_to_nhwc_tf32(ctx(), s.n, s.c_in, s.h_in, s.w_in, cp, d[x], f32(xh));
        gpu::nchw_to_nhwc_tf32(ctx(), s.c_out, s.c_in, s.k_h, s.k_w, cp, d[w], f32(wh));
        gpu::conv2d_forward_tf32(ctx(), padded, f32(xh), f32(wh), d[b], relu, f32(yh));
        gpu::nhwc_to_nchw(ctx(), s.n, s.c_out, s.h_out, s.w_out, f32(yh), d[y]);
        gpu::nchw_to_nhwc_tf32(ctx(), s.n, s.c_out, s.h_out, s.w_out, s.c_out, d[dy], f32(dyh));
        gpu::nchw_to_nhwc_tf32(ctx(), s.c_out, s.c_in, s.k_h, s.k_w, s.c_in, d[w], f32(wu));
        gpu::conv2d_backward_input_tf32(ctx(), s, f32(dyh), f32(wu), f32(dxh));
        gpu::nhwc_to_nchw(ctx(), s.n, s.c_in, s.h_in, s.w_in, f32(dxh), d[dx]);
      },
      [&](auto& h) {
        cpu::conv2d_forward_tf32<double>(s, h[x], h[w], h[b], relu, h[y]);
        cpu::conv2d_backward_input_tf32<double>(s, h[dy], h[w], h[dx]);
      });
}

class MmaConvFirstLayerGpu : public GpuTest, public ::testing::WithParamInterface<ConvCase> {};

TEST_P(MmaConvFirstLayerGpu, ForwardOnChannelsPaddedToEight) {
  for (Activation a : {Activation::Linear, Activation::ReLU, Activation::LeakyReLU, Activation::Sigmoid,
                       Activation::Tanh, Activation::GELU}) {
    SCOPED_TRACE(to_string(a));
    check_forward(ctx(), GetParam(), {a, 0.2f}, true);
  }
}

TEST_P(MmaConvFirstLayerGpu, Tf32ForwardOnChannelsPaddedToFour) {
  const auto s = shape_of(GetParam());
  auto padded = s;
  padded.c_in = gpu::tf32_padded_channels(s.c_in);
  ASSERT_TRUE(gpu::tf32_forward_takes(padded));
  DeviceBuffer xh = nan_floats(padded.x_size()), wh = nan_floats(padded.w_size()), yh = nan_floats(s.y_size());
  OpCheck op(ctx(), 61);
  const int x = op.input("x", s.x_size()), w = op.input("w", s.w_size()), b = op.input("bias", s.c_out);
  const int y = op.output("y", s.y_size(), bf16_tolerance(int64_t(s.c_in) * s.k_h * s.k_w));
  const ops::ActivationSpec gelu{Activation::GELU, 0};
  op.run(
      [&](auto& d) {
        gpu::nchw_to_nhwc_tf32(ctx(), s.n, s.c_in, s.h_in, s.w_in, padded.c_in, d[x], f32(xh));
        gpu::nchw_to_nhwc_tf32(ctx(), s.c_out, s.c_in, s.k_h, s.k_w, padded.c_in, d[w], f32(wh));
        gpu::conv2d_forward_tf32(ctx(), padded, f32(xh), f32(wh), d[b], gelu, f32(yh));
        gpu::nhwc_to_nchw(ctx(), s.n, s.c_out, s.h_out, s.w_out, f32(yh), d[y]);
      },
      [&](auto& h) { cpu::conv2d_forward_tf32<double>(s, h[x], h[w], h[b], gelu, h[y]); });
}

// The input gradient of a 3-channel layer needs no padding: its reduction runs over c_out.
TEST_P(MmaConvFirstLayerGpu, BackwardInputOfThreeChannels) {
  check_backward_input(ctx(), GetParam(), 53);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MmaConvFirstLayerGpu, ::testing::ValuesIn(kFirstLayerCases),
                         [](const auto& info) { return std::string(info.param.name); });

// The conversions are the CPU's, bit for bit (odd sizes, padding 3 -> 8 and 13 -> 16).
TEST_F(GpuTest, MmaLayoutConversionsMatchTheCpuBitForBit) {
  Rng rng(7);
  for (const auto [n, c, h, w, cp] : {std::array{2, 3, 5, 7, 8}, std::array{3, 13, 4, 9, 16}, std::array{1, 64, 3, 3, 64}}) {
    SCOPED_TRACE(std::to_string(c) + " channels padded to " + std::to_string(cp));
    std::vector<float> x(size_t(n) * c * h * w);
    for (auto& v : x) v = float(rng.uniform(-3, 3));
    DeviceBuffer xd(x.size() * sizeof(float)), yd = bf16_buffer(int64_t(n) * h * w * cp);
    xd.upload(x);
    gpu::nchw_to_nhwc_bf16(ctx(), n, c, h, w, cp, f32(xd), u16(yd));
    cuda::synchronize(ctx());
    std::vector<uint16_t> want(size_t(n) * h * w * cp);
    cpu::nchw_to_nhwc_bf16(n, c, h, w, cp, x.data(), want.data());
    EXPECT_EQ(yd.download<uint16_t>(), want);

    // x read as NHWC with c channels, back to NCHW.
    DeviceBuffer back = nan_floats(int64_t(x.size()));
    gpu::nhwc_to_nchw(ctx(), n, c, h, w, f32(xd), f32(back));
    cuda::synchronize(ctx());
    std::vector<float> want_back(x.size());
    cpu::nhwc_to_nchw<float>(n, c, h, w, x.data(), want_back.data());
    EXPECT_EQ(back.download<float>(), want_back);

    const int cp4 = gpu::tf32_padded_channels(c);
    DeviceBuffer td = nan_floats(int64_t(n) * h * w * cp4);
    gpu::nchw_to_nhwc_tf32(ctx(), n, c, h, w, cp4, f32(xd), f32(td));
    cuda::synchronize(ctx());
    std::vector<float> want_tf32(size_t(n) * h * w * cp4);
    cpu::nchw_to_nhwc_tf32(n, c, h, w, cp4, x.data(), want_tf32.data());
    EXPECT_EQ(td.download<float>(), want_tf32);
  }
}

// The split-K weight gradient is deterministic: two runs give the same bits.
TEST_F(GpuTest, MmaWeightGradientIsBitReproducible) {
  const auto s = ops::Conv2DShape::make(64, 64, 16, 16, 128, 3, 3, 1, 1, Padding::Same);
  Rng rng(9);
  std::vector<uint16_t> x(size_t(s.x_size())), dy(size_t(s.y_size()));
  for (auto& v : x) v = formulas::bf16_bits(float(rng.uniform(-1, 1)));
  for (auto& v : dy) v = formulas::bf16_bits(float(rng.uniform(-1, 1)));
  DeviceBuffer xd = bf16_buffer(s.x_size()), dyd = bf16_buffer(s.y_size());
  xd.upload(x);
  dyd.upload(dy);
  std::vector<std::vector<float>> runs;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer dw = nan_floats(s.w_size()), db = nan_floats(s.c_out);
    gpu::conv2d_backward_params_bf16(ctx(), s, u16(xd), u16(dyd), f32(dw), f32(db));
    cuda::synchronize(ctx());
    auto w = dw.download<float>();
    const auto b = db.download<float>();
    w.insert(w.end(), b.begin(), b.end());
    runs.push_back(std::move(w));
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST_F(GpuTest, MmaKernelsRefuseShapesOutsideTheirRules) {
  const auto c3 = ops::Conv2DShape::make(2, 3, 8, 8, 16, 3, 3, 1, 1, Padding::Same);
  EXPECT_THROW(gpu::conv2d_forward_bf16(ctx(), c3, nullptr, nullptr, nullptr, {Activation::Linear}, nullptr), Error);
  EXPECT_THROW(gpu::conv2d_backward_params_bf16(ctx(), c3, nullptr, nullptr, nullptr, nullptr), Error);
  const auto k12 = ops::Conv2DShape::make(2, 8, 8, 8, 12, 3, 3, 1, 1, Padding::Same);
  EXPECT_THROW(gpu::conv2d_backward_input_bf16(ctx(), k12, nullptr, nullptr, nullptr), Error);
  const auto ok = ops::Conv2DShape::make(2, 8, 8, 8, 16, 3, 3, 1, 1, Padding::Same);
  EXPECT_THROW(gpu::conv2d_forward_bf16(ctx(), ok, nullptr, nullptr, nullptr, {Activation::Softmax}, nullptr), Error);
}

// The rules, host-side (no device needed).
TEST(MmaConvRules, ChannelMultiplesOfEight) {
  const auto airbench = ops::Conv2DShape::make(512, 64, 32, 32, 256, 3, 3, 1, 1, Padding::Same);
  EXPECT_TRUE(gpu::bf16_forward_takes(airbench));
  EXPECT_TRUE(gpu::bf16_backward_input_takes(airbench));
  EXPECT_TRUE(gpu::bf16_backward_params_takes(airbench));
  const auto rgb = ops::Conv2DShape::make(512, 3, 32, 32, 24, 2, 2, 1, 1, Padding::Valid);
  EXPECT_FALSE(gpu::bf16_forward_takes(rgb));          // pad to bf16_padded_channels(3) = 8 first
  EXPECT_TRUE(gpu::bf16_backward_input_takes(rgb));    // reduces over the 24 filters
  EXPECT_FALSE(gpu::bf16_backward_params_takes(rgb));  // 3 channels of x
  auto rgb_padded = rgb;
  rgb_padded.c_in = gpu::bf16_padded_channels(rgb.c_in);
  EXPECT_TRUE(gpu::bf16_forward_takes(rgb_padded));
  const auto strided = ops::Conv2DShape::make(8, 16, 16, 16, 32, 3, 3, 2, 2, Padding::Same);
  EXPECT_TRUE(gpu::bf16_forward_takes(strided));
  EXPECT_TRUE(gpu::bf16_backward_input_takes(strided));  // dy read dilated by the stride
  EXPECT_TRUE(gpu::bf16_backward_params_takes(strided));
  const auto twelve = ops::Conv2DShape::make(8, 16, 16, 16, 12, 3, 3, 1, 1, Padding::Same);
  EXPECT_TRUE(gpu::bf16_forward_takes(twelve));           // any number of filters
  EXPECT_FALSE(gpu::bf16_backward_input_takes(twelve));   // dy's 12 channels
  EXPECT_FALSE(gpu::bf16_backward_params_takes(twelve));
  EXPECT_TRUE(gpu::tf32_backward_input_takes(twelve));    // tf32: multiples of 4
  EXPECT_FALSE(gpu::tf32_forward_takes(rgb));
  EXPECT_TRUE(gpu::tf32_forward_takes(twelve));
  // Past the kernels' 32-bit indices (4096 x 64 x 64 pixels x 256 channels) every rule refuses,
  // so a caller falls back instead of meeting the op's error.
  const auto huge = ops::Conv2DShape::make(4096, 256, 64, 64, 256, 3, 3, 1, 1, Padding::Same);
  EXPECT_FALSE(gpu::bf16_forward_takes(huge));
  EXPECT_FALSE(gpu::bf16_backward_input_takes(huge));
  EXPECT_FALSE(gpu::bf16_backward_params_takes(huge));
  EXPECT_FALSE(gpu::tf32_forward_takes(huge));
  EXPECT_FALSE(gpu::tf32_backward_input_takes(huge));
}

}  // namespace
}  // namespace cnn
