// Hand-computed values for every CPU op, so a mistake shared by forward and backward (which
// a gradient check cannot see) is still caught; plus every invalid op configuration.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "cnn/error.hpp"
#include "kernels/ops.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {
namespace cpu = ops::cpu;
using V = std::vector<double>;

V iota16() {
  V v(16);
  std::iota(v.begin(), v.end(), 1.0);  // 4x4 image holding 1..16 row by row
  return v;
}

TEST(KnownValues, Conv2DValid4x4With3x3Ones) {
  const auto s = ops::Conv2DShape::make(1, 1, 4, 4, 1, 3, 3, 1, 1, Padding::Valid);
  const V x = iota16(), w(9, 1.0), b{0.5};
  V y(4);
  cpu::conv2d_forward<double>(s, x.data(), w.data(), b.data(), {}, y.data());
  EXPECT_EQ(y, (V{54.5, 63.5, 90.5, 99.5}));
  // dL/dy = 1: each input pixel gets one per window that covers it.
  const V dy(4, 1.0);
  V dx(16), dw(9), db(1);
  cpu::conv2d_backward_input<double>(s, dy.data(), w.data(), dx.data());
  EXPECT_EQ(dx, (V{1, 2, 2, 1, 2, 4, 4, 2, 2, 4, 4, 2, 1, 2, 2, 1}));
  cpu::conv2d_backward_params<double>(s, x.data(), dy.data(), dw.data(), db.data());
  // dw[kh][kw] = sum of x over the 2x2 block starting at (kh, kw).
  EXPECT_EQ(dw, (V{14, 18, 22, 30, 34, 38, 46, 50, 54}));
  EXPECT_EQ(db, (V{4}));
}

TEST(KnownValues, Conv2DSameStride2PadsTheExtraRowAndColumnAtTheEnd) {
  // TensorFlow: out = ceil(4 / 2) = 2, total padding (2-1)*2 + 3 - 4 = 1 -> top/left 0, bottom/right 1.
  const auto s = ops::Conv2DShape::make(1, 1, 4, 4, 1, 3, 3, 2, 2, Padding::Same);
  EXPECT_EQ(s.h_out, 2);
  EXPECT_EQ(s.pad_top, 0);
  const V x = iota16(), w(9, 1.0);
  V y(4);
  cpu::conv2d_forward<double>(s, x.data(), w.data(), nullptr, {}, y.data());
  EXPECT_EQ(y, (V{54, 45, 72, 54}));
  // Stride 1 'same' with a 3x3 kernel pads one on each side.
  const auto s1 = ops::Conv2DShape::make(1, 1, 4, 4, 1, 3, 3, 1, 1, Padding::Same);
  V y1(16);
  cpu::conv2d_forward<double>(s1, x.data(), w.data(), nullptr, {}, y1.data());
  EXPECT_EQ(y1[0], 1 + 2 + 5 + 6);
  EXPECT_EQ(y1[5], 54);
}

TEST(KnownValues, Conv2DEvenKernelSamePadsOneBeforeAndOneAfter) {
  // k = 4, stride 1, in 5: total 3 -> 1 before, 2 after.
  const auto s = ops::Conv2DShape::make(1, 1, 5, 5, 1, 4, 4, 1, 1, Padding::Same);
  EXPECT_EQ(s.h_out, 5);
  EXPECT_EQ(s.pad_top, 1);
  EXPECT_EQ(s.pad_left, 1);
}

TEST(KnownValues, Conv2DMultiChannelWeightsAreFiltersByInputChannelsByKernel) {
  // 2 input channels (all 1 and all 2), 2 filters: weight[f][c] = f + c + 1 (1x1 kernels).
  const auto s = ops::Conv2DShape::make(1, 2, 2, 2, 2, 1, 1, 1, 1, Padding::Valid);
  const V x{1, 1, 1, 1, 2, 2, 2, 2}, w{1, 2, 2, 3};
  V y(8);
  cpu::conv2d_forward<double>(s, x.data(), w.data(), nullptr, {Activation::ReLU}, y.data());
  EXPECT_EQ(y, (V{5, 5, 5, 5, 8, 8, 8, 8}));
}

TEST(KnownValues, DenseWeightsAreUnitsByInputs) {
  const V x{1, 2}, w{1, 0, 0, 1, 1, 1}, b{0.5, -1, 0};
  V y(3);
  cpu::dense_forward<double>(1, 2, 3, x.data(), w.data(), b.data(), {}, y.data());
  EXPECT_EQ(y, (V{1.5, 1, 3}));
  cpu::dense_forward<double>(1, 2, 3, x.data(), w.data(), b.data(), {Activation::ReLU}, y.data());
  EXPECT_EQ(y, (V{1.5, 1, 3}));
  const V dy{1, 10, 100};
  V dx(2), dw(6), db(3);
  cpu::dense_backward_input<double>(1, 2, 3, dy.data(), w.data(), dx.data());
  EXPECT_EQ(dx, (V{101, 110}));
  cpu::dense_backward_params<double>(1, 2, 3, x.data(), dy.data(), dw.data(), db.data());
  EXPECT_EQ(dw, (V{1, 2, 10, 20, 100, 200}));
  EXPECT_EQ(db, dy);
}

TEST(KnownValues, MaxPoolPicksWindowMaximaAndRoutesGradientsThere) {
  const auto s = ops::Pool2DShape::make(1, 1, 4, 4, 2, 2, 2, 2, Padding::Valid);
  const V x = iota16();
  V y(4), dx(16);
  cpu::maxpool2d_forward<double>(s, x.data(), y.data());
  EXPECT_EQ(y, (V{6, 8, 14, 16}));
  const V dy{1, 2, 3, 4};
  cpu::maxpool2d_backward<double>(s, x.data(), dy.data(), dx.data());
  EXPECT_EQ(dx, (V{0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4}));
}

TEST(KnownValues, MaxPoolTiesSendTheWholeGradientToTheFirstMaximum) {
  const auto s = ops::Pool2DShape::make(1, 1, 2, 2, 2, 2, 2, 2, Padding::Valid);
  const V x{7, 7, 7, 7}, dy{1};
  V dx(4);
  cpu::maxpool2d_backward<double>(s, x.data(), dy.data(), dx.data());
  EXPECT_EQ(dx, (V{1, 0, 0, 0}));
}

TEST(KnownValues, AveragePoolSameDividesByTheInBoundsCount) {
  // 3x3 input, pool 2 stride 2 'same': out 2x2, the last row/column windows hold 2 or 1 pixels.
  const auto s = ops::Pool2DShape::make(1, 1, 3, 3, 2, 2, 2, 2, Padding::Same);
  const V x{1, 2, 3, 4, 5, 6, 7, 8, 9};
  V y(4), dx(9);
  cpu::avgpool2d_forward<double>(s, x.data(), y.data());
  EXPECT_EQ(y, (V{3, 4.5, 7.5, 9}));
  const V dy{4, 2, 2, 1};
  cpu::avgpool2d_backward<double>(s, dy.data(), dx.data());
  EXPECT_EQ(dx, (V{1, 1, 1, 1, 1, 1, 1, 1, 1}));
}

TEST(KnownValues, Activations) {
  const V x{-2, 0, 1};
  V y(3);
  cpu::activation_forward<double>({Activation::ReLU}, 3, x.data(), y.data());
  EXPECT_EQ(y, (V{0, 0, 1}));
  cpu::activation_forward<double>({Activation::LeakyReLU, 0.3f}, 3, x.data(), y.data());
  EXPECT_NEAR(y[0], -0.6, 1e-7);
  cpu::activation_forward<double>({Activation::Sigmoid}, 3, x.data(), y.data());
  EXPECT_NEAR(y[0], 1 / (1 + std::exp(2.0)), 1e-15);
  EXPECT_EQ(y[1], 0.5);
  cpu::activation_forward<double>({Activation::Tanh}, 3, x.data(), y.data());
  EXPECT_NEAR(y[2], std::tanh(1.0), 1e-15);
  cpu::activation_forward<double>({Activation::GELU}, 3, x.data(), y.data());
  EXPECT_NEAR(y[2], 0.8413447460685429, 1e-12);
  EXPECT_NEAR(y[0], -0.04550026389635842, 1e-12);
  const V big{1000, -1000};
  V s(2);
  cpu::activation_forward<double>({Activation::Sigmoid}, 2, big.data(), s.data());
  EXPECT_EQ(s, (V{1, 0}));
}

TEST(KnownValues, CopyWritesExactlyCountElementsAndAllowsInPlace) {
  const V src{1.5, -2.25, 3e300, -0.0};
  V dst{9, 9, 9, 9, 9};
  cpu::copy<double>(4, src.data(), dst.data());
  EXPECT_EQ(dst, (V{1.5, -2.25, 3e300, -0.0, 9}));
  EXPECT_TRUE(std::signbit(dst[3]));
  cpu::copy<double>(0, src.data(), dst.data() + 4);  // nothing to copy
  EXPECT_EQ(dst[4], 9);
  cpu::copy<double>(5, dst.data(), dst.data());  // in place: unchanged
  EXPECT_EQ(dst, (V{1.5, -2.25, 3e300, -0.0, 9}));
  const std::vector<float> f{0.1f, -7.0f, 1e-40f};  // a denormal survives too
  std::vector<float> g(3, 0.0f);
  cpu::copy<float>(3, f.data(), g.data());
  EXPECT_EQ(g, f);
}

TEST(KnownValues, SoftmaxIsStableForHugeLogits) {
  const V x{0, std::log(2.0), std::log(3.0), 1000, 1000, -1000};
  V y(6);
  cpu::softmax_forward<double>(2, 3, x.data(), y.data());
  EXPECT_NEAR(y[0], 1.0 / 6, 1e-15);
  EXPECT_NEAR(y[2], 0.5, 1e-15);
  EXPECT_NEAR(y[3], 0.5, 1e-15);
  EXPECT_EQ(y[5], 0.0);
}

TEST(KnownValues, SoftmaxCrossEntropyForLogitsOfPlusMinus1000) {
  const V z{1000, -1000, 0};
  const std::vector<int32_t> right{0}, wrong{1};
  V loss(1), g(3);
  cpu::softmax_cross_entropy<double>(1, 3, z.data(), ops::TargetKind::Labels, right.data(), nullptr, 0, loss.data(), g.data());
  EXPECT_EQ(loss[0], 0.0);
  EXPECT_EQ(g, (V{0, 0, 0}));
  cpu::softmax_cross_entropy<double>(1, 3, z.data(), ops::TargetKind::Labels, wrong.data(), nullptr, 0, loss.data(), g.data());
  EXPECT_EQ(loss[0], 2000.0);
  EXPECT_EQ(g, (V{1, -1, 0}));  // p - y
  // Label smoothing 0.3 over 3 classes: targets 0.1, 0.8, 0.1.
  cpu::softmax_cross_entropy<double>(1, 3, z.data(), ops::TargetKind::Labels, wrong.data(), nullptr, 0.3, loss.data(), g.data());
  EXPECT_NEAR(loss[0], 0.8 * 2000 + 0.1 * 1000, 1e-9);
  // Batch mean: two rows divide the gradient by 2.
  const V z2{0, 0, 0, 0};
  const std::vector<int32_t> l2{0, 1};
  V loss2(2), g2(4);
  cpu::softmax_cross_entropy<double>(2, 2, z2.data(), ops::TargetKind::Labels, l2.data(), nullptr, 0, loss2.data(), g2.data());
  EXPECT_NEAR(loss2[0], std::log(2.0), 1e-15);
  EXPECT_EQ(g2, (V{-0.25, 0.25, 0.25, -0.25}));
}

TEST(KnownValues, OtherLosses) {
  V loss(1), g(2);
  const V p{1, 2}, t{0, 0};
  cpu::mse_loss<double>(1, 2, p.data(), t.data(), loss.data(), g.data());
  EXPECT_EQ(loss[0], 2.5);
  EXPECT_EQ(g, (V{1, 2}));
  const V z{1000, -1000}, bt{0, 1};
  cpu::binary_cross_entropy_logits<double>(1, 2, z.data(), bt.data(), loss.data(), g.data());
  EXPECT_EQ(loss[0], 1000.0);
  EXPECT_EQ(g, (V{0.5, -0.5}));
  const V probs{0.5, 0.25}, bt2{1, 0};
  cpu::binary_cross_entropy<double>(1, 2, probs.data(), bt2.data(), loss.data(), g.data());
  EXPECT_NEAR(loss[0], (std::log(2.0) + std::log(4.0 / 3)) / 2, 1e-12);
  const V q{0.25, 0.75}, oh{0, 1};
  cpu::cross_entropy<double>(1, 2, q.data(), ops::TargetKind::Distribution, nullptr, oh.data(), 0, loss.data(), g.data());
  EXPECT_NEAR(loss[0], -std::log(0.75), 1e-12);
}

TEST(KnownValues, Metrics) {
  const V scores{0.1, 0.9, 0.8, 0.2, 0.3, 0.7}, loss{1, 2, 3};
  const std::vector<int32_t> labels{1, 1, 1};
  double acc[2] = {0, 0};
  cpu::accumulate_metrics<double>(3, 2, loss.data(), scores.data(), ops::TargetKind::Labels, labels.data(), nullptr, false, acc);
  EXPECT_EQ(acc[0], 6);
  EXPECT_EQ(acc[1], 2);
  const V logits{2, -1}, bt{1, 1};
  double b[2] = {0, 0};
  cpu::accumulate_metrics<double>(1, 2, loss.data(), logits.data(), ops::TargetKind::Binary, nullptr, bt.data(), true, b);
  EXPECT_EQ(b[1], 1);
}

// The loss and its metrics in one op: logits (0, 0) and (ln 3, 0) against labels 1 and 0 give
// row losses ln 2 and ln(4/3) (p = 3/4), one correct prediction (row 1's), both added to what
// the accumulator held.
TEST(KnownValues, SoftmaxCrossEntropyWithMetrics) {
  const V z{0, 0, std::log(3.0), 0};
  const std::vector<int32_t> labels{1, 0};
  V loss(2), g(4);
  double acc[2] = {1, 5};
  cpu::softmax_cross_entropy_with_metrics<double>(2, 2, z.data(), ops::TargetKind::Labels, labels.data(), nullptr, 0,
                                                  loss.data(), g.data(), acc);
  EXPECT_NEAR(loss[0], std::log(2.0), 1e-15);
  EXPECT_NEAR(loss[1], std::log(4.0 / 3.0), 1e-15);  // p(0) = 3 / 4
  EXPECT_NEAR(acc[0], 1 + std::log(2.0) + std::log(4.0 / 3.0), 1e-15);
  EXPECT_EQ(acc[1], 5 + 1);  // row 0's tie goes to class 0 (wrong), row 1's argmax 0 is right
  EXPECT_NEAR(g[2], (0.75 - 1) / 2, 1e-15);
  try {
    cpu::softmax_cross_entropy_with_metrics<double>(2, 2, z.data(), ops::TargetKind::Binary, nullptr, z.data(), 0,
                                                    loss.data(), g.data(), acc);
    ADD_FAILURE() << "binary targets were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("class targets only"), std::string::npos) << e.what();
  }
}

TEST(KnownValues, SgdMomentumNesterovAndWeightDecay) {
  V p{1}, v{0};
  const V g{0.5};
  ops::SgdConfig c{0.1f, 0.9f, false, 0, false};
  cpu::sgd_update<double>(1, p.data(), g.data(), v.data(), c);
  EXPECT_NEAR(p[0], 0.95, 1e-7);  // lr is a float: 0.1f
  cpu::sgd_update<double>(1, p.data(), g.data(), v.data(), c);
  EXPECT_NEAR(p[0], 0.855, 1e-7);  // v = 0.9 * 0.5 + 0.5
  V pn{1}, vn{0};
  c.nesterov = true;
  cpu::sgd_update<double>(1, pn.data(), g.data(), vn.data(), c);
  EXPECT_NEAR(pn[0], 1 - 0.1 * (0.5 + 0.9 * 0.5), 1e-7);
  V pw{2};
  cpu::sgd_update<double>(1, pw.data(), g.data(), nullptr, {0.1f, 0, false, 0.5f, false});  // g + wd p = 1.5
  EXPECT_NEAR(pw[0], 1.85, 1e-7);
  V pd{2};
  cpu::sgd_update<double>(1, pd.data(), g.data(), nullptr, {0.1f, 0, false, 0.5f, true});  // 2 (1 - 0.05) - 0.05
  EXPECT_NEAR(pd[0], 1.85, 1e-7);
}

TEST(KnownValues, AdamFirstStepMovesByTheLearningRate) {
  V p{1, 1}, m{0, 0}, v{0, 0};
  const V g{0.5, -2};
  cpu::adam_update<double>(2, p.data(), g.data(), m.data(), v.data(), {0.01f, 0.9f, 0.999f, 1e-7f, 0, true, 1});
  EXPECT_NEAR(p[0], 0.99, 1e-6);
  EXPECT_NEAR(p[1], 1.01, 1e-6);
}

using test::error_of;

TEST(InvalidConfigurations, RaiseErrorsNamingTheProblem) {
  EXPECT_NE(error_of([] { ops::Conv2DShape::make(1, 1, 4, 4, 1, 5, 5, 1, 1, Padding::Valid); })
                .find("kernel 5x5 is larger than the input 4x4 with 'valid' padding"),
            std::string::npos);
  EXPECT_NE(error_of([] { ops::Conv2DShape::make(1, 1, 4, 4, 1, 3, 3, 0, 1, Padding::Valid); }).find("strides 0x1"),
            std::string::npos);
  EXPECT_NE(error_of([] { ops::Conv2DShape::make(1, 0, 4, 4, 1, 3, 3, 1, 1, Padding::Valid); }).find("dimension <= 0"),
            std::string::npos);
  EXPECT_NE(error_of([] { ops::Pool2DShape::make(1, 1, 2, 2, 3, 3, 1, 1, Padding::Valid); }).find("pool 3x3 is larger"),
            std::string::npos);
  EXPECT_NE(error_of([] { ops::Pool2DShape::make(1, 1, 4, 4, 2, 2, 0, 2, Padding::Valid); }).find("strides 0x2"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_padding("full"); }).find("unknown padding 'full'; valid paddings: valid, same"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_activation("swish"); }).find("unknown activation 'swish'; valid activations"),
            std::string::npos);
  const V z{0, 0};
  const std::vector<int32_t> bad{2};
  V loss(1), g(2);
  EXPECT_NE(error_of([&] {
              cpu::softmax_cross_entropy<double>(1, 2, z.data(), ops::TargetKind::Labels, bad.data(), nullptr, 0, loss.data(),
                                                 g.data());
            }).find("label 2 at row 0 is out of range for 2 classes"),
            std::string::npos);
  EXPECT_NE(error_of([] { cpu::activation_forward<double>({Activation::Softmax}, 1, nullptr, nullptr); }).find("softmax"),
            std::string::npos);
}

}  // namespace
}  // namespace cnn
