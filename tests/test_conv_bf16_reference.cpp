// The CPU side of the bf16 tensor-core convolutions (ops.hpp): the reference ops that round
// their product operands to bf16, and the NCHW <-> NHWC layout conversions with channel
// padding that the GPU kernels' layouts need (the GPU versions are compared bit for bit with
// these in tests/gpu/test_gpu_conv_mma.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "cnn/error.hpp"
#include "cnn/rng.hpp"
#include "kernels/formulas/precision.hpp"
#include "kernels/ops.hpp"
#include "op_test_util.hpp"

namespace cnn {
namespace {
namespace cpu = ops::cpu;
using V = std::vector<double>;

std::vector<float> random_floats(size_t count, Rng& rng) {
  std::vector<float> v(count);
  for (auto& x : v) x = float(rng.uniform(-2, 2));
  return v;
}

double dot(const V& a, const V& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ||got - exact|| / ||exact||.
double normwise_relative(const V& got, const V& exact) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - exact[i]) * (got[i] - exact[i]);
    den += exact[i] * exact[i];
  }
  return std::sqrt(num / den);
}

V rounded(const V& v) {
  V out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = formulas::round_to_bf16(float(v[i]));
  return out;
}

TEST(Bf16Layout, NchwToNhwcRoundsToNearestEvenAndZeroesPaddedChannels) {
  // One pixel, 3 channels padded to 8: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 (even: 1),
  // 1 + 3 2^-8 a tie between 1 + 2^-7 and 1 + 2^-6 (even: 1 + 2^-6), -3 is exact.
  const std::vector<float> x{1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -3.0f};
  std::vector<uint16_t> y(8, 0xffff);
  cpu::nchw_to_nhwc_bf16(1, 3, 1, 1, 8, x.data(), y.data());
  EXPECT_EQ(y, (std::vector<uint16_t>{0x3f80, 0x3f82, 0xc040, 0, 0, 0, 0, 0}));
}

TEST(Bf16Layout, NchwToNhwcPlacesEveryChannelAndRoundTrips) {
  Rng rng(3);
  const int n = 2, c = 3, h = 5, w = 7, cp = ops::cuda::bf16_padded_channels(c);
  ASSERT_EQ(cp, 8);
  const auto x = random_floats(size_t(n) * c * h * w, rng);
  std::vector<uint16_t> y(size_t(n) * h * w * cp);
  cpu::nchw_to_nhwc_bf16(n, c, h, w, cp, x.data(), y.data());
  // Back to NCHW with all 8 channels: the first 3 are x rounded, the other 5 zero.
  std::vector<float> decoded(y.size()), back(y.size());
  for (size_t i = 0; i < y.size(); ++i) decoded[i] = formulas::bf16_bits_to_float(y[i]);
  cpu::nhwc_to_nchw<float>(n, cp, h, w, decoded.data(), back.data());
  for (int img = 0; img < n; ++img)
    for (int ch = 0; ch < cp; ++ch)
      for (int p = 0; p < h * w; ++p) {
        const float got = back[(size_t(img) * cp + ch) * h * w + p];
        const float want = ch < c ? formulas::round_to_bf16(x[(size_t(img) * c + ch) * h * w + p]) : 0.f;
        ASSERT_EQ(got, want) << "image " << img << " channel " << ch << " pixel " << p;
      }
}

TEST(Bf16Layout, NhwcToNchwIsTheTranspose) {
  // x[n=1][h=1][w=2][c=3] = 0..5  ->  y[c][w] = x[w][c]
  const V x{0, 1, 2, 3, 4, 5};
  V y(6);
  cpu::nhwc_to_nchw<double>(1, 3, 1, 2, x.data(), y.data());
  EXPECT_EQ(y, (V{0, 3, 1, 4, 2, 5}));
}

TEST(Bf16Layout, BadSizesAreErrors) {
  std::vector<float> x(16);
  std::vector<uint16_t> y(64);
  EXPECT_THROW(cpu::nchw_to_nhwc_bf16(1, 8, 2, 1, 4, x.data(), y.data()), Error);  // padded below c
  EXPECT_THROW(cpu::nchw_to_nhwc_bf16(0, 8, 2, 1, 8, x.data(), y.data()), Error);
  EXPECT_THROW(cpu::nhwc_to_nchw<float>(1, 0, 2, 1, x.data(), x.data()), Error);
}

TEST(Bf16Reference, ForwardRoundsXAndWButNotTheBias) {
  // 1x1 convolution of one pixel: y = round(x) round(w) + bias. round(1 + 2^-9) = 1,
  // round(3 + 2^-8) = 3 (spacing 2^-6 there), the bias 2^-12 stays.
  const auto s = ops::Conv2DShape::make(1, 1, 1, 1, 1, 1, 1, 1, 1, Padding::Valid);
  const V x{1 + 0x1p-9}, w{3 + 0x1p-8}, b{0x1p-12};
  V y(1);
  cpu::conv2d_forward_bf16<double>(s, x.data(), w.data(), b.data(), {}, y.data());
  EXPECT_EQ(y[0], 3 + 0x1p-12);
  V dx(1), dw(1), db(1);
  cpu::conv2d_backward_input_bf16<double>(s, x.data(), w.data(), dx.data());  // dy = x
  EXPECT_EQ(dx[0], 3.0);
  cpu::conv2d_backward_params_bf16<double>(s, w.data(), x.data(), dw.data(), db.data());  // x = w, dy = x
  EXPECT_EQ(dw[0], 3.0);
  EXPECT_EQ(db[0], 1.0);  // the bias gradient sums the rounded dy, as the GPU's does
}

// The three ops see the same rounded operands, so they are exact adjoints of one bilinear map:
// <conv(rx, rw), rdy> = <rx, dgrad(dy, w)> = <rw, wgrad(x, dy)> (r = rounded to bf16), up to
// double rounding (~1e-15 relative); rounding any operand differently breaks it at ~1e-3.
// And the bf16 forward differs from the exact one by about bf16's 2^-9 relative rounding, not
// more (a wrong rounding position gives O(1)) and not less (the rounding happened).
TEST(Bf16Reference, ForwardAndBackwardAreAdjointsOnRoundedOperands) {
  Rng rng(11);
  const auto s = ops::Conv2DShape::make(3, 8, 9, 7, 16, 3, 3, 2, 1, Padding::Same);
  const V x = test::random_vector(size_t(s.x_size()), rng), w = test::random_vector(size_t(s.w_size()), rng);
  const V dy = test::random_vector(size_t(s.y_size()), rng);
  V y(size_t(s.y_size())), dx(size_t(s.x_size())), dw(size_t(s.w_size())), db(size_t(s.c_out));
  cpu::conv2d_forward_bf16<double>(s, x.data(), w.data(), nullptr, {}, y.data());
  cpu::conv2d_backward_input_bf16<double>(s, dy.data(), w.data(), dx.data());
  cpu::conv2d_backward_params_bf16<double>(s, x.data(), dy.data(), dw.data(), db.data());
  const double forward = dot(y, rounded(dy));
  EXPECT_NEAR(dot(rounded(x), dx), forward, 1e-12 * std::abs(forward));
  EXPECT_NEAR(dot(rounded(w), dw), forward, 1e-12 * std::abs(forward));
  double db_sum = 0, rdy_sum = 0;
  for (double v : db) db_sum += v;
  for (double v : rounded(dy)) rdy_sum += v;
  EXPECT_NEAR(db_sum, rdy_sum, 1e-12 * s.y_size());

  V exact(y.size());
  cpu::conv2d_forward<double>(s, x.data(), w.data(), nullptr, {}, exact.data());
  const double relative = normwise_relative(y, exact);
  EXPECT_GT(relative, 1e-4);
  EXPECT_LT(relative, 2 * 0x1p-8);
}

// Padding the input channels with zeros (the few-channel first layers' path) changes nothing.
TEST(Bf16Reference, ZeroChannelPaddingGivesTheSameForward) {
  Rng rng(5);
  const auto s = ops::Conv2DShape::make(2, 3, 6, 5, 4, 3, 3, 1, 1, Padding::Same);
  ops::Conv2DShape padded = s;
  padded.c_in = 8;
  const V x = test::random_vector(size_t(s.x_size()), rng), w = test::random_vector(size_t(s.w_size()), rng);
  V xp(size_t(padded.x_size()), 0.0), wp(size_t(padded.w_size()), 0.0);
  const int hw = s.h_in * s.w_in, taps = s.k_h * s.k_w;
  for (int img = 0; img < s.n; ++img)
    for (int ch = 0; ch < s.c_in; ++ch)
      for (int p = 0; p < hw; ++p) xp[(size_t(img) * 8 + ch) * hw + p] = x[(size_t(img) * s.c_in + ch) * hw + p];
  for (int co = 0; co < s.c_out; ++co)
    for (int ch = 0; ch < s.c_in; ++ch)
      for (int t = 0; t < taps; ++t) wp[(size_t(co) * 8 + ch) * taps + t] = w[(size_t(co) * s.c_in + ch) * taps + t];
  V y(size_t(s.y_size())), yp(size_t(s.y_size()));
  cpu::conv2d_forward_bf16<double>(s, x.data(), w.data(), nullptr, {}, y.data());
  cpu::conv2d_forward_bf16<double>(padded, xp.data(), wp.data(), nullptr, {}, yp.data());
  for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(yp[i], y[i], 1e-12) << i;
}

TEST(Tf32Layout, NchwToNhwcRoundsToNearestEvenAndZeroesPaddedChannels) {
  // tf32 keeps 10 mantissa bits: 1 + 2^-11 is a tie between 1 and 1 + 2^-10 (even: 1),
  // 1 + 3 2^-11 a tie between 1 + 2^-10 and 1 + 2^-9 (even: 1 + 2^-9); 0.1 is not exact.
  // Two pixels of 3 channels padded to 4.
  const std::vector<float> x{1.0f + 0x1p-11f, -2.5f, 1.0f + 3 * 0x1p-11f, 0.1f, 7.0f, -1.0f};  // [c][pixel]
  std::vector<float> y(8, -99.f);
  cpu::nchw_to_nhwc_tf32(1, 3, 1, 2, 4, x.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{1.0f, 1.0f + 0x1p-9f, 7.0f, 0.f, -2.5f, formulas::round_to_tf32(0.1f), -1.0f, 0.f}));
  EXPECT_NE(formulas::round_to_tf32(0.1f), 0.1f);
  EXPECT_EQ(ops::cuda::tf32_padded_channels(3), 4);
  EXPECT_THROW(cpu::nchw_to_nhwc_tf32(1, 3, 1, 2, 2, x.data(), y.data()), Error);
}

// As for bf16: forward and input gradient are adjoints on the tf32-rounded operands, and the
// tf32 forward differs from the exact one by about tf32's 2^-12 relative rounding.
TEST(Tf32Reference, ForwardAndInputGradientAreAdjointsOnRoundedOperands) {
  Rng rng(13);
  const auto s = ops::Conv2DShape::make(2, 4, 8, 9, 12, 3, 3, 2, 2, Padding::Same);
  const V x = test::random_vector(size_t(s.x_size()), rng), w = test::random_vector(size_t(s.w_size()), rng);
  const V dy = test::random_vector(size_t(s.y_size()), rng);
  V y(size_t(s.y_size())), dx(size_t(s.x_size()));
  cpu::conv2d_forward_tf32<double>(s, x.data(), w.data(), nullptr, {}, y.data());
  cpu::conv2d_backward_input_tf32<double>(s, dy.data(), w.data(), dx.data());
  const auto tf32 = [](const V& v) {
    V out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = formulas::round_to_tf32(float(v[i]));
    return out;
  };
  const double forward = dot(y, tf32(dy));
  EXPECT_NEAR(dot(tf32(x), dx), forward, 1e-12 * std::abs(forward));
  V exact(y.size());
  cpu::conv2d_forward<double>(s, x.data(), w.data(), nullptr, {}, exact.data());
  const double relative = normwise_relative(y, exact);
  EXPECT_GT(relative, 1e-5);
  EXPECT_LT(relative, 2 * 0x1p-11);
}

}  // namespace
}  // namespace cnn
