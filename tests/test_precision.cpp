// The precision policy (compile option "precision", types.hpp Precision; ops.hpp
// round_to_precision lists where it rounds): names parsed once with errors listing the valid
// ones (compile, model file, CLI); fp32 unchanged; under tf32/bf16 the conv and dense products
// read exactly the rounded operands (forward and backward, checked against the fp32 kernels
// run on explicitly rounded values, bit for bit); the master weights and saved weights stay
// fp32; training under the policy still learns, close to fp32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_runner.hpp"
#include "cnn/check.hpp"
#include "cnn/cnn.hpp"
#include "cnn/pictures.hpp"
#include "cnn/rng.hpp"
#include "kernels/formulas/precision.hpp"
#include "kernels/ops.hpp"
#include "model/runner.hpp"
#include "model/state.hpp"
#include "test_data_util.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {

namespace f = formulas;
using test::error_of;

float round_as(Precision p, float x) {
  return p == Precision::BF16 ? f::round_to_bf16(x) : p == Precision::TF32 ? f::round_to_tf32(x) : x;
}
std::vector<float> rounded(Precision p, std::vector<float> v) {
  for (float& x : v) x = round_as(p, x);
  return v;
}
std::vector<float> random_values(size_t n, uint64_t seed, double lo = -2, double hi = 2) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = float(rng.uniform(lo, hi));
  return v;
}
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// ---- names -------------------------------------------------------------------------------

TEST(PrecisionNames, ParseAndPrint) {
  for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) EXPECT_EQ(parse_precision(to_string(p)), p);
  EXPECT_EQ(to_string(Precision::BF16), "bf16");
  const std::string e = error_of([] { parse_precision("fp16", "compile"); });
  EXPECT_CONTAINS(e, "compile: unknown precision 'fp16'; valid precisions: fp32, tf32, bf16");
}

// CNN_CUDA_CONV_MMA (ops.hpp parse_conv_mma; context.cu reads it once per CUDA context): the
// tensor-core convolutions on unless "0"; anything else is refused by name.
TEST(PrecisionNames, ConvMmaSwitchParsesOnOffAndRefusesOtherValues) {
  EXPECT_TRUE(cuda::parse_conv_mma(nullptr));
  EXPECT_TRUE(cuda::parse_conv_mma(""));
  EXPECT_TRUE(cuda::parse_conv_mma("1"));
  EXPECT_FALSE(cuda::parse_conv_mma("0"));
  for (const char* bad : {"off", "false", "00", " 0", "yes"}) {
    const std::string e = error_of([&] { cuda::parse_conv_mma(bad); });
    EXPECT_CONTAINS(e, "CNN_CUDA_CONV_MMA must be '1'");
    EXPECT_CONTAINS(e, "or '0'");
    EXPECT_CONTAINS(e, std::string("not '") + bad + "'");
  }
}

CompileOptions small_options(const std::string& precision = "fp32") {
  CompileOptions o;
  o.optimizer = "sgd";
  o.loss = "scce";
  o.learning_rate = 0.05f;
  o.momentum = 0.9f;
  o.input_shape = {3, 8, 8};
  o.precision = precision;
  return o;
}

Sequential small_net() {
  return Sequential({Conv2D(6, 3, 1, "same", "relu"), MaxPooling2D(2), Conv2D(8, 3, 1, "valid", "gelu"), Flatten(),
                     Dense(4, "softmax")});
}

TEST(PrecisionNames, CompileRefusesAnUnknownNameAndKeepsTheParsedOne) {
  Sequential m = small_net();
  EXPECT_CONTAINS(error_of([&] { m.compile(small_options("half")); }),
                  "compile: unknown precision 'half'; valid precisions: fp32, tf32, bf16");
  m.compile(small_options("bf16"));
  EXPECT_EQ(m.precision(), Precision::BF16);
  EXPECT_EQ(m.compile_options().precision, "bf16");
  m.set_precision("tf32");
  EXPECT_EQ(m.precision(), Precision::TF32);
  EXPECT_EQ(m.compile_options().precision, "tf32");
  EXPECT_CONTAINS(error_of([&] { m.set_precision("BF16x"); }), "set_precision: unknown precision 'BF16x'");
  EXPECT_EQ(m.precision(), Precision::TF32);  // unchanged by the refused name
}

TEST(PrecisionNames, ModelFileReadsWritesAndRefusesIt) {
  Sequential m = small_net();
  m.compile(small_options());
  nlohmann::json j = m.to_json();
  // fp32 writes no key: models save exactly as before the policy existed.
  EXPECT_FALSE(j["compile"].contains("precision")) << j["compile"].dump();
  j["compile"]["precision"] = "bf16";
  Sequential b = Sequential::from_json(j);
  EXPECT_EQ(b.precision(), Precision::BF16);
  EXPECT_EQ(b.to_json()["compile"]["precision"], "bf16");
  j["compile"]["precision"] = "int8";
  EXPECT_CONTAINS(error_of([&] { Sequential::from_json(j); }), "unknown precision 'int8'; valid precisions: fp32, tf32, bf16");
  j["compile"]["precision"] = 16;
  EXPECT_CONTAINS(error_of([&] { Sequential::from_json(j); }), "\"compile\" has a value of the wrong type");
  j["compile"].erase("precision");
  j["compile"]["precison"] = "bf16";  // misspelt: the valid keys are listed
  EXPECT_CONTAINS(error_of([&] { Sequential::from_json(j); }), "seed, precision");
}

// ---- the rounding op -----------------------------------------------------------------------

TEST(PrecisionRounding, CpuOpIsTheFormulaElementByElementAndWorksInPlace) {
  std::vector<float> x = random_values(40000, 7);  // more than one 16k block
  const float special[] = {0.0f, -0.0f, 1.0f, 1.00390625f /* bf16 tie */, 1.0f + 0x1p-9f, 1.0f + 3 * 0x1p-9f,
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::denorm_min(), 1e-40f, -3.0e38f};
  std::copy(std::begin(special), std::end(special), x.begin());
  for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) {
    std::vector<float> y(x.size(), -1.0f);
    ops::cpu::round_to_precision(p, int64_t(x.size()), x.data(), y.data());
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_TRUE(same_bits(y[i], round_as(p, x[i])) || (std::isnan(y[i]) && std::isnan(x[i])))
          << to_string(p) << " element " << i << ": " << x[i] << " -> " << y[i];
    std::vector<float> z = x;
    ops::cpu::round_to_precision(p, int64_t(z.size()), z.data(), z.data());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_TRUE(same_bits(z[i], y[i]) || std::isnan(z[i])) << i;
  }
  // The tie 1 + 2^-8 (halfway between bf16 neighbours 1 and 1 + 2^-7) goes to the even one, 1;
  // 1 + 3 * 2^-9 rounds up; max float is past bf16's largest finite and becomes infinity.
  EXPECT_EQ(f::round_to_bf16(1.00390625f), 1.0f);
  EXPECT_EQ(f::round_to_bf16(1.0f + 3 * 0x1p-9f), 1.0f + 0x1p-7f);
  EXPECT_EQ(f::round_to_bf16(std::numeric_limits<float>::max()), std::numeric_limits<float>::infinity());
}

// ---- where the policy rounds: exactly the product operands ---------------------------------

// One forward, loss and backward of `m` on (x, targets) through the model's own runner:
// every layer's output, the loss gradient dL/d(output), the parameter gradients.
struct Step {
  std::vector<std::vector<float>> outputs;
  std::vector<float> loss_grad, grads;
};
Step run_step(Sequential& m, const std::vector<float>& x, const std::vector<float>& targets, int n) {
  Sequential::State& s = m.state();
  Runner<float> runner(m);
  runner.plan(n);
  std::copy(x.begin(), x.end(), runner.arena().input.data());
  std::copy(targets.begin(), targets.end(), runner.arena().targets.data());
  runner.forward(n, true);
  runner.loss_and_gradient(s.target_kind(), n);
  Step st;
  for (size_t i = 0; i < m.size(); ++i) {
    const float* a = runner.arena().act(i);
    st.outputs.emplace_back(a, a + n * s.out_size[i]);
  }
  const float* g = runner.arena().grad_a.data();
  st.loss_grad.assign(g, g + n * s.output_size());
  runner.backward(n);
  st.grads = s.grads.to_vector();
  return st;
}
std::vector<float> slice(const std::vector<float>& v, int64_t at, int64_t count) {
  return std::vector<float>(v.begin() + at, v.begin() + at + count);
}

CompileOptions mse_options(Shape input, Precision p) {
  CompileOptions o;
  o.loss = "mse";
  o.input_shape = std::move(input);
  o.precision = to_string(p);
  return o;
}

// Conv2D (odd sizes, stride 2, GELU: the pre-activation path) then Flatten, mean squared error:
// the conv's forward is conv2d_forward(round(x), round(W)) + b in fp32, its gradient dz =
// act'(z) dL/dy rounded, dW/db = conv2d_backward_params(round(x), dz), all bit for bit.
TEST(PrecisionPolicy, ConvReadsRoundedActivationsWeightsAndGradientsExactly) {
  for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) {
    Sequential m({Conv2D(5, 3, 2, "same", "gelu"), Flatten()});
    m.compile(mse_options({3, 7, 9}, p));
    const int n = 3;
    const auto x = random_values(size_t(n) * 3 * 7 * 9, 11, 0, 1);
    const int64_t outs = m.state().output_size();
    const auto targets = random_values(size_t(n * outs), 12, 0, 1);
    const Step st = run_step(m, x, targets, n);

    const auto s = ops::Conv2DShape::make(n, 3, 7, 9, 5, 3, 3, 2, 2, Padding::Same);
    const std::vector<float> params = m.parameters().to_vector();
    const auto w = slice(params, 0, s.w_size()), bias = slice(params, s.w_size(), 5);
    const auto xr = rounded(p, x), wr = rounded(p, w);
    std::vector<float> z(size_t(s.y_size())), y(z.size());
    ops::cpu::conv2d_forward<float>(s, xr.data(), wr.data(), bias.data(), ActivationSpec{}, z.data());
    ops::cpu::activation_forward<float>(ActivationSpec{Activation::GELU}, s.y_size(), z.data(), y.data());
    EXPECT_EQ(st.outputs[0], y) << to_string(p);

    std::vector<float> dz(z.size());
    ops::cpu::activation_backward<float>(ActivationSpec{Activation::GELU}, s.y_size(), z.data(), y.data(),
                                         st.loss_grad.data(), dz.data());
    dz = rounded(p, dz);
    std::vector<float> dw(w.size()), db(5);
    ops::cpu::conv2d_backward_params<float>(s, xr.data(), dz.data(), dw.data(), db.data());
    EXPECT_EQ(slice(st.grads, 0, s.w_size()), dw) << to_string(p);
    EXPECT_EQ(slice(st.grads, s.w_size(), 5), db) << to_string(p);

    // The test can fail: the unrounded products differ from the rounded ones.
    if (p != Precision::FP32) {
      std::vector<float> z32(z.size());
      ops::cpu::conv2d_forward<float>(s, x.data(), w.data(), bias.data(), ActivationSpec{}, z32.data());
      EXPECT_NE(z32, z) << to_string(p);
    }
  }
}

// Two Dense layers (the second's input gradient feeds the first's), the second scaled: the
// scale applies in fp32 after the product and before dz is rounded.
TEST(PrecisionPolicy, DenseReadsRoundedOperandsExactlyIncludingTheInputGradient) {
  for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) {
    Sequential m({Dense(6, "tanh"), Dense({.units = 3, .activation = "linear", .scale = 0.5f})});
    m.compile(mse_options({7}, p));
    const int n = 5;
    const auto x = random_values(size_t(n) * 7, 21);
    const auto targets = random_values(size_t(n) * 3, 22);
    const Step st = run_step(m, x, targets, n);
    const std::vector<float> params = m.parameters().to_vector();
    const auto w0 = slice(params, 0, 42), b0 = slice(params, 42, 6), w1 = slice(params, 48, 18),
               b1 = slice(params, 66, 3);

    const auto xr = rounded(p, x), w0r = rounded(p, w0), w1r = rounded(p, w1);
    std::vector<float> y0(size_t(n) * 6), y1(size_t(n) * 3);
    ops::cpu::dense_forward<float>(n, 7, 6, xr.data(), w0r.data(), b0.data(), ActivationSpec{Activation::Tanh},
                                   y0.data());
    EXPECT_EQ(st.outputs[0], y0) << to_string(p);
    const auto y0r = rounded(p, y0);
    ops::cpu::dense_forward<float>(n, 6, 3, y0r.data(), w1r.data(), b1.data(), ActivationSpec{}, y1.data());
    for (float& v : y1) v *= 0.5f;
    EXPECT_EQ(st.outputs[1], y1) << to_string(p);

    // Backward: layer 1's dz = round(0.5 dL/dy), its input gradient from round(W1); layer 0's
    // dz = round(tanh'(y0) dx1), its weight gradient from round(x).
    std::vector<float> dz1 = st.loss_grad;
    for (float& v : dz1) v *= 0.5f;
    dz1 = rounded(p, dz1);
    std::vector<float> dw1(18), db1(3), dx1(size_t(n) * 6);
    ops::cpu::dense_backward_params<float>(n, 6, 3, y0r.data(), dz1.data(), dw1.data(), db1.data());
    ops::cpu::dense_backward_input<float>(n, 6, 3, dz1.data(), w1r.data(), dx1.data());
    EXPECT_EQ(slice(st.grads, 48, 18), dw1) << to_string(p);
    EXPECT_EQ(slice(st.grads, 66, 3), db1) << to_string(p);
    std::vector<float> dz0(dx1.size()), dw0(42), db0(6);
    ops::cpu::activation_backward<float>(ActivationSpec{Activation::Tanh}, int64_t(dz0.size()), nullptr, y0.data(),
                                         dx1.data(), dz0.data());
    dz0 = rounded(p, dz0);
    ops::cpu::dense_backward_params<float>(n, 7, 6, xr.data(), dz0.data(), dw0.data(), db0.data());
    EXPECT_EQ(slice(st.grads, 0, 42), dw0) << to_string(p);
    EXPECT_EQ(slice(st.grads, 42, 6), db0) << to_string(p);
  }
}

// ---- fp32 unchanged; master and saved weights fp32 -----------------------------------------

std::vector<float> train_few_steps(const std::function<void(Sequential&)>& set_policy, const CompileOptions& o) {
  Sequential m = small_net();
  m.compile(o);
  set_policy(m);
  const auto data = test::make_quadrant_data(24, 3, 8, 8, 5);
  FitOptions fo;
  fo.epochs = 2;
  fo.batch_size = 8;
  fo.verbose = 0;
  m.fit(data.x, data.y, fo);
  return m.parameters().to_vector();
}

TEST(PrecisionPolicy, Fp32IsTheDefaultAndTrainsBitForBitAsWithoutTheOption) {
  CompileOptions absent = small_options();
  absent.precision = CompileOptions{}.precision;  // the default
  EXPECT_EQ(absent.precision, "fp32");
  const auto none = [](Sequential&) {};
  const auto a = train_few_steps(none, absent);
  EXPECT_EQ(train_few_steps(none, small_options("fp32")), a);
  // Switched to bf16 and back: fp32 again, bit for bit; bf16 itself trains different weights.
  EXPECT_EQ(train_few_steps([](Sequential& m) {
    m.set_precision("bf16");
    m.set_precision("fp32");
  }, absent), a);
  EXPECT_NE(train_few_steps(none, small_options("bf16")), a);
}

// Share of values that a rounding to bf16 would change: ~1 for fp32 master weights (a bf16
// value has 16 zero low bits), 0 for values that are bf16 already.
double share_not_bf16(const std::vector<float>& v) {
  int64_t changed = 0;
  for (float x : v) changed += !same_bits(x, f::round_to_bf16(x));
  return double(changed) / double(v.size());
}

TEST(PrecisionPolicy, MasterWeightsAndSavedWeightsStayFp32AndThePolicyIsSaved) {
  Sequential m = small_net();
  m.compile(small_options("bf16"));
  const auto data = test::make_quadrant_data(24, 3, 8, 8, 5);
  FitOptions fo;
  fo.epochs = 2;
  fo.batch_size = 8;
  fo.verbose = 0;
  m.fit(data.x, data.y, fo);
  std::vector<float> trained;  // the weights proper (biases start at 0, BN-free net: all move)
  for (const auto& [name, t] : m.weights())
    if (name.find("weight") != std::string::npos)
      for (float v : t.to_vector()) trained.push_back(v);
  EXPECT_GT(share_not_bf16(trained), 0.9) << "master weights look rounded to bf16";

  const std::string path = testing::TempDir() + "/precision_bf16.safetensors";
  m.save(path);
  Sequential loaded = Sequential::load(path);
  EXPECT_EQ(loaded.precision(), Precision::BF16);
  EXPECT_EQ(loaded.parameters().to_vector(), m.parameters().to_vector());  // fp32, bit for bit
  EXPECT_EQ(loaded.predict(data.x).to_vector(), m.predict(data.x).to_vector());
}

// ---- training under the policy --------------------------------------------------------------

// 6 epochs of the small net on 64 quadrant images (SGD 0.01, momentum 0.9, batches of 8). bf16
// rounds each product operand by at most 2^-8 relative, tf32 by 2^-11: far below the gradient
// noise of batches of 8, so the runs learn alike; once the first rounding differs, the
// trajectories part chaotically, so the gap is not proportional to the unit (tf32's came out
// larger). Measured here: final losses 0.17% (bf16) and 0.41% (tf32) from fp32's; allowed 5%,
// room for another instruction set's summation order. Each must also cut its first-epoch loss
// at least in half (all three go from 1.36 to 0.0024).
TEST(PrecisionPolicy, Bf16AndTf32TrainingLearnsAndLandsNearFp32) {
  const auto data = test::make_quadrant_data(64, 3, 8, 8, 9);
  auto train = [&](const std::string& precision) {
    Sequential m = small_net();
    CompileOptions o = small_options(precision);
    o.learning_rate = 0.01f;
    m.compile(o);
    FitOptions fo;
    fo.epochs = 6;
    fo.batch_size = 8;
    fo.verbose = 0;
    return m.fit(data.x, data.y, fo);
  };
  const History h32 = train("fp32");
  for (const auto& [precision, tolerance] : {std::pair<std::string, double>{"bf16", 0.05}, {"tf32", 0.05}}) {
    const History h = train(precision);
    EXPECT_LT(h.loss.back(), 0.5 * h.loss.front()) << precision;
    EXPECT_NEAR(h.loss.back(), h32.loss.back(), tolerance * h32.loss.back()) << precision;
    EXPECT_NE(h.loss.back(), h32.loss.back()) << precision << ": the policy changed nothing";
    std::printf("[ precision ] final loss %s %.6f, fp32 %.6f (first epoch %.4f, %.4f), relative %.2e\n",
                precision.c_str(), h.loss.back(), h32.loss.back(), h.loss.front(), h32.loss.front(),
                std::abs(h.loss.back() - h32.loss.back()) / h32.loss.back());
  }
}

// Rounding is not differentiable: gradcheck checks, in double, the fp32 math whose operands
// the policy rounds, and passes for a bf16 model as for fp32.
TEST(PrecisionPolicy, GradcheckIgnoresThePolicy) {
  Sequential m = small_net();
  m.compile(small_options("bf16"));
  const CheckReport r = gradcheck(m);
  EXPECT_TRUE(r.passed()) << r.table();
}

// ---- the command line -----------------------------------------------------------------------

using namespace cli_test;
const std::string kModels = CNN_SOURCE_DIR "/models/";

TEST(PrecisionCli, FlagIsParsedOnEverySubcommandThatCompiles) {
  for (const char* sub : {"train", "check", "bench --batch-size 2", "eval"}) {
    const Result r = cnn(std::string(sub) + " --model " + quoted(kModels + "lenet5.json") + " --precision fp16");
    EXPECT_EQ(r.code, 2) << sub << "\n" << show(r);
    EXPECT_CONTAINS(r.err, "--precision");
  }
  // Accepted by check; without a GPU (CPU-only build) it then exits 3 saying so.
  if (!cuda_available()) {
    const Result r = cnn("check --model " + quoted(kModels + "lenet5.json") + " --precision bf16");
    EXPECT_EQ(r.code, 3) << show(r);
    EXPECT_CONTAINS(r.err, "no GPU to compare against");
  }
  const Result r = cnn("bench --model " + quoted(kModels + "lenet5.json") +
                       " --batch-size 2 --steps 1 --warmup 0 --repeats 1 --no-profile --json --precision bf16");
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(nlohmann::json::parse(r.out)["precision"], "bf16") << r.out;
}

TEST(PrecisionCli, TrainSavesThePolicyWithFp32Weights) {
  const std::filesystem::path model = scratch() / "bf16_model.json";
  nlohmann::json j = nlohmann::json::parse(read_text(kModels + "lenet5.json"));
  j["compile"]["precision"] = "tf32";  // the file's policy, overridden by the flag
  std::ofstream(model) << j.dump();
  const std::filesystem::path images = scratch() / "precision_images";
  const auto data = test::make_quadrant_data(8, 3, 32, 32, 3);
  for (int i = 0; i < 8; ++i) {
    const char* classes[] = {"c0", "c1", "c2", "c3"};
    const std::filesystem::path dir = images / (i < 6 ? "train" : "test") / classes[int(data.y.at({i}))];
    std::filesystem::create_directories(dir);
    Image img(32, 32);
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) {
        const auto v = uint8_t(255 * data.x.at({i, 0, y, x}));
        img.set(x, y, Color{v, v, v});
      }
    save_png(img, (dir / (std::to_string(i) + ".png")).string());
  }
  const std::string saved = (scratch() / "bf16_trained.safetensors").string();
  const Result r = cnn("train --model " + quoted(model.string()) + " --data " + quoted(images.string()) +
                       " --epochs 1 --batch-size 4 --validation-split 0 --verbose 0 --precision bf16 --save " +
                       quoted(saved));
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_CONTAINS(r.out, "on cpu, precision bf16");
  Sequential m = Sequential::load(saved);
  EXPECT_EQ(m.precision(), Precision::BF16);
  EXPECT_GT(share_not_bf16(m.parameters().to_vector()), 0.5);
}

}  // namespace
}  // namespace cnn
