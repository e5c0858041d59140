// The airbench94 layers in models: BatchNormalization, Dropout, GlobalAveragePooling2D,
// GlobalMaxPooling2D and Dense's output scale. Whole-model gradient checks, running
// statistics after training, configs and files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "cnn/rng.hpp"

namespace cnn {
namespace {

std::map<std::string, Tensor> weight_map(const Sequential& m) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : m.weights()) out.emplace(name, t);
  return out;
}

Tensor random_tensor(Shape shape, uint64_t seed, double lo = -1, double hi = 1) {
  Rng rng(seed);
  std::vector<float> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = float(rng.uniform(lo, hi));
  return Tensor::from_vector(std::move(shape), v);
}

// ---- Whole-model gradient checks (CPU, double, training mode) -------------------------------

TEST(BatchNormDropoutPoolingGradcheck, ConvBatchNormDropoutGlobalAverageScaledDense) {
  // No conv bias in front of a BatchNormalization: its gradient is exactly 0 (the
  // normalisation removes any per-channel constant), which no relative error can check.
  Sequential m({Conv2D(Conv2DOptions{.filters = 4, .kernel_size = 3, .padding = "same", .use_bias = false}),
                BatchNormalization(),
                ActivationLayer("gelu"), Dropout(0.3f), GlobalAveragePooling2D(),
                Dense(DenseOptions{.units = 3, .use_bias = false, .scale = 1.0f / 9})});
  CompileOptions o;
  o.loss = "scce";
  o.from_logits = true;
  o.input_shape = {2, 6, 5};
  m.compile(o);
  GradcheckOptions g;
  g.batch_size = 3;
  const CheckReport r = gradcheck(m, g);
  EXPECT_TRUE(r.passed()) << r.table();
  EXPECT_EQ(r.checked_rows(), 6u + 1 + 4 + 1) << r.table();  // 6 input grads, conv and dense weights, BN's 4
  // Every row of the BatchNormalization layer is there: input, gamma, beta and the running statistics (0).
  int bn_rows = 0;
  for (const auto& row : r.rows) bn_rows += row.layer_type == "BatchNormalization";
  EXPECT_EQ(bn_rows, 5) << r.table();
}

TEST(BatchNormDropoutPoolingGradcheck, FrozenScaleBatchNormGlobalMaxAndFeatureBatchNorm) {
  Sequential m({Conv2D(Conv2DOptions{.filters = 3, .kernel_size = 2, .use_bias = false}),
                BatchNormalization(BatchNormOptions{.momentum = 0.4f, .epsilon = 1e-12f, .scale = false}),
                GlobalMaxPooling2D(), Dense(DenseOptions{.units = 5, .activation = "tanh", .scale = 0.5f}),
                BatchNormalization(BatchNormOptions{.center = false}), Dropout(0.5f), Dense(3, "softmax")});
  CompileOptions o;
  o.loss = "cce";
  o.input_shape = {2, 5, 4};
  m.compile(o);
  GradcheckOptions g;
  g.batch_size = 4;
  const CheckReport r = gradcheck(m, g);
  EXPECT_TRUE(r.passed()) << r.table();
  // 7 input grads, the conv weight, 2 x 2 for the dense layers, 2 x 4 for the BatchNormalizations.
  EXPECT_EQ(r.checked_rows(), 7u + 1 + 2 * 2 + 2 * 4) << r.table();
}

// (A global AVERAGE right after a batch-of-one BatchNormalization would be beta exactly, with
// zero gradient everywhere below; the max keeps the model's gradients non-trivial.)
TEST(BatchNormDropoutPoolingGradcheck, BatchOfOneNormalisesOverThePlane) {
  Sequential m({BatchNormalization(), Conv2D(Conv2DOptions{.filters = 2, .padding = "same", .activation = "tanh",
                                                         .use_bias = false}),
                BatchNormalization(), GlobalMaxPooling2D(), Dense(DenseOptions{.units = 2, .scale = -2.0f})});
  CompileOptions o;
  o.loss = "mse";
  o.input_shape = {3, 5, 5};
  m.compile(o);
  GradcheckOptions g;
  g.batch_size = 1;
  const CheckReport r = gradcheck(m, g);
  EXPECT_TRUE(r.passed()) << r.table();
  // 5 input grads, the conv weight, the dense weight and bias, 2 x 4 for the BatchNormalizations.
  EXPECT_EQ(r.checked_rows(), 5u + 1 + 2 + 2 * 4) << r.table();
}

// ---- BatchNormalization in a model ----------------------------------------------------------------

Sequential small_bn_model(BatchNormOptions bn) {
  Sequential m({BatchNormalization(bn), Dense(2, "softmax")});
  CompileOptions o;
  o.optimizer = "sgd";
  o.loss = "scce";
  o.learning_rate = 0.1f;
  o.input_shape = {3};
  m.compile(o);
  return m;
}

TEST(BatchNormLayer, TrainingUpdatesRunningStatisticsAndInferenceUsesThem) {
  Sequential m = small_bn_model({});
  const int n = 8, steps = 3;
  const Tensor x = random_tensor({n, 3}, 5, -2, 4);
  const Tensor y = Tensor::from_vector({n}, {0, 1, 1, 0, 1, 0, 0, 1});
  for (int s = 0; s < steps; ++s) m.train_on_batch(x, y);

  // The layer sees the model input itself, so the batch statistics are known.
  const std::vector<float> xv = x.to_vector();
  auto w = weight_map(m);
  const std::vector<float> rm = w.at("layers.0.batchnormalization.running_mean").to_vector();
  const std::vector<float> rv = w.at("layers.0.batchnormalization.running_var").to_vector();
  const std::vector<float> gamma = w.at("layers.0.batchnormalization.weight").to_vector();
  const std::vector<float> beta = w.at("layers.0.batchnormalization.bias").to_vector();
  const double keep = std::pow(0.9, steps);  // default momentum 0.1 (PyTorch's convention)
  for (int k = 0; k < 3; ++k) {
    double mean = 0, sq = 0;
    for (int i = 0; i < n; ++i) mean += xv[size_t(i * 3 + k)];
    mean /= n;
    for (int i = 0; i < n; ++i) sq += (xv[size_t(i * 3 + k)] - mean) * (xv[size_t(i * 3 + k)] - mean);
    EXPECT_NEAR(rm[size_t(k)], (1 - keep) * mean, 1e-5) << k;
    EXPECT_NEAR(rv[size_t(k)], keep * 1.0 + (1 - keep) * sq / (n - 1), 1e-5) << k;  // unbiased variance
    EXPECT_NE(beta[size_t(k)], 0.0f) << "beta trains";
  }
  // Inference: the running statistics, not the batch's.
  const std::vector<float> out = m.layer_outputs(x)[0].to_vector();
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < 3; ++k) {
      const size_t j = size_t(i * 3 + k);
      const double want = gamma[size_t(k)] * (xv[j] - rm[size_t(k)]) / std::sqrt(rv[size_t(k)] + 1e-5) + beta[size_t(k)];
      EXPECT_NEAR(out[j], want, 1e-5) << i << "," << k;
    }
}

TEST(BatchNormLayer, FrozenScaleAndShiftStayPutAndAreNotTrainable) {
  Sequential m = small_bn_model({.scale = false, .center = false});
  const auto specs = m.layer(0).param_specs();
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_EQ(specs[0].name, "weight");
  EXPECT_EQ(specs[1].name, "bias");
  EXPECT_EQ(specs[2].name, "running_mean");
  EXPECT_EQ(specs[3].name, "running_var");
  for (const auto& p : specs) EXPECT_FALSE(p.trainable) << p.name;
  const Tensor x = random_tensor({6, 3}, 6);
  const Tensor y = Tensor::from_vector({6}, {0, 1, 1, 0, 1, 0});
  for (int s = 0; s < 3; ++s) m.train_on_batch(x, y);
  auto w = weight_map(m);
  for (float v : w.at("layers.0.batchnormalization.weight").to_vector()) EXPECT_EQ(v, 1.0f);
  for (float v : w.at("layers.0.batchnormalization.bias").to_vector()) EXPECT_EQ(v, 0.0f);
  for (float v : w.at("layers.0.batchnormalization.running_mean").to_vector()) EXPECT_NE(v, 0.0f);
}

TEST(BatchNormLayer, MomentumFollowsPyTorchAndKerasMomentumIsConverted) {
  auto layer = layer_from_config({{"type", "BatchNormalization"}, {"keras_momentum", 0.6}, {"epsilon", 1e-12}});
  const auto& bn = dynamic_cast<const BatchNormalization&>(*layer);
  EXPECT_FLOAT_EQ(bn.options().momentum, 0.4f);
  EXPECT_FLOAT_EQ(bn.options().epsilon, 1e-12f);
  EXPECT_EQ(layer->config()["momentum"].get<float>(), bn.options().momentum);
  EXPECT_THROW(layer_from_config({{"type", "BatchNormalization"}, {"momentum", 0.1}, {"keras_momentum", 0.9}}), Error);
  EXPECT_THROW(layer_from_config({{"type", "BatchNormalization"}, {"axis", 1}}), Error);
  EXPECT_THROW(BatchNormalization(BatchNormOptions{.momentum = 1.5f}), Error);
  EXPECT_THROW(BatchNormalization(BatchNormOptions{.epsilon = 0.0f}), Error);

  // One training step with momentum 0.4 from (0, 1): running = 0.4 batch (+ 0.6 for the variance).
  Sequential m = small_bn_model({.momentum = 0.4f});
  const Tensor x = Tensor::from_vector({2, 3}, {1, 2, 3, 3, 6, 9});
  m.train_on_batch(x, Tensor::from_vector({2}, {0, 1}));
  auto w = weight_map(m);
  const auto rm = w.at("layers.0.batchnormalization.running_mean").to_vector();
  const auto rv = w.at("layers.0.batchnormalization.running_var").to_vector();
  EXPECT_FLOAT_EQ(rm[0], 0.4f * 2);
  EXPECT_FLOAT_EQ(rm[2], 0.4f * 6);
  EXPECT_FLOAT_EQ(rv[0], 0.6f + 0.4f * 2);   // unbiased variance of {1, 3} is 2
  EXPECT_FLOAT_EQ(rv[2], 0.6f + 0.4f * 18);  // of {3, 9}: 18
}

TEST(BatchNormLayer, ANonTrainableLayerRunsInInferenceModeEvenWhileTraining) {
  BatchNormalization bn;
  bn.trainable = false;
  bn.build({2});
  std::vector<float> params{1, 1, 0, 0, 0.5f, -1, 4, 9};  // gamma, beta, running mean, running var
  const std::vector<float> x{1.5f, 2, 0.5f, -4};
  std::vector<float> y(4);
  LayerBuffers<float> b;
  b.n = 2;
  b.x = x.data();
  b.y = y.data();
  b.params = params.data();
  bn.forward(Exec{Device::CPU, nullptr, true, 0}, b);
  EXPECT_EQ(params, (std::vector<float>{1, 1, 0, 0, 0.5f, -1, 4, 9}));  // running statistics untouched
  EXPECT_NEAR(y[0], (1.5 - 0.5) / std::sqrt(4 + 1e-5), 1e-6);
  EXPECT_NEAR(y[1], (2 + 1) / std::sqrt(9 + 1e-5), 1e-6);
}

TEST(BatchNormLayer, SaveAndLoadKeepTheRunningStatistics) {
  Sequential m({Conv2D(3, 3, 1, "same"), BatchNormalization({.momentum = 0.4f, .epsilon = 1e-12f, .scale = false}),
                ActivationLayer("gelu"), GlobalMaxPooling2D(), Dropout(0.2f),
                Dense(DenseOptions{.units = 4, .use_bias = false, .scale = 1.0f / 9})});
  CompileOptions o;
  o.loss = "scce";
  o.from_logits = true;
  o.input_shape = {2, 6, 6};
  m.compile(o);
  const Tensor x = random_tensor({5, 2, 6, 6}, 9);
  const Tensor y = Tensor::from_vector({5}, {0, 1, 2, 3, 0});
  for (int s = 0; s < 2; ++s) m.train_on_batch(x, y);
  const auto path = std::filesystem::temp_directory_path() / ("cnn_layers_test_" + std::to_string(::getpid()) + ".safetensors");
  m.save(path.string());
  Sequential loaded = Sequential::load(path.string());
  std::filesystem::remove(path);
  EXPECT_EQ(loaded.to_json()["layers"].dump(), m.to_json()["layers"].dump());
  auto a = weight_map(m), b = weight_map(loaded);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_TRUE(a.count("layers.1.batchnormalization.running_var"));
  for (auto& [name, t] : a) EXPECT_EQ(t.to_vector(), b.at(name).to_vector()) << name;
  EXPECT_NE(a.at("layers.1.batchnormalization.running_var").to_vector(), std::vector<float>(3, 1.0f));
  EXPECT_EQ(m.predict(x).to_vector(), loaded.predict(x).to_vector());
}

// ---- Dropout, global pooling, Dense's scale -------------------------------------------------------

TEST(DropoutLayer, IdentityInInferenceAndAFixedMaskPerSeedInTraining) {
  Dropout d(0.5f);
  d.build({4, 5});
  std::vector<float> x(60), a(60), b(60), c(60);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i) + 1;
  auto run = [&](bool training, uint64_t seed, std::vector<float>& y) {
    LayerBuffers<float> buf;
    buf.n = 3;
    buf.x = x.data();
    buf.y = y.data();
    d.forward(Exec{Device::CPU, nullptr, training, seed}, buf);
  };
  run(false, 1, a);
  EXPECT_EQ(a, x);
  run(true, 1, a);
  run(true, 1, b);
  run(true, 2, c);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  int zeros = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == 0) ++zeros;
    else EXPECT_EQ(a[i], 2 * x[i]);
  }
  EXPECT_GT(zeros, 10);
  EXPECT_LT(zeros, 50);
  // Backward: the same mask from the same seed.
  std::vector<float> dy(60, 1.0f), dx(60);
  LayerBuffers<float> buf;
  buf.n = 3;
  buf.x = x.data();
  buf.y = a.data();
  buf.dy = dy.data();
  buf.dx = dx.data();
  d.backward(Exec{Device::CPU, nullptr, true, 1}, buf);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(dx[i], a[i] == 0 ? 0.0f : 2.0f) << i;
}

TEST(GlobalPoolingLayers, ShapesAndValues) {
  Sequential m({GlobalAveragePooling2D()});
  Sequential n({GlobalMaxPooling2D()});
  // A model needs a flat output; both layers give [C].
  for (Sequential* s : {&m, &n}) s->compile("sgd", "mse", 0.01f, {2, 2, 3});
  EXPECT_EQ(m.layer(0).output_shape(), (Shape{2}));
  const Tensor x = Tensor::from_vector({1, 2, 2, 3}, {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6});
  EXPECT_EQ(m.predict(x).to_vector(), (std::vector<float>{3.5f, -3.5f}));
  EXPECT_EQ(n.predict(x).to_vector(), (std::vector<float>{6, -1}));
  EXPECT_THROW(Sequential({Flatten(), GlobalMaxPooling2D(), Dense(2)}).compile("sgd", "mse", 0.01f, {2, 2, 3}), Error);
}

TEST(DenseScale, OutputIsTheScaledProductBeforeTheActivation) {
  for (const char* act : {"linear", "relu", "gelu", "softmax"}) {
    SCOPED_TRACE(act);
    Sequential plain({Flatten(), Dense(DenseOptions{.units = 4, .activation = act})});
    Sequential scaled({Flatten(), Dense(DenseOptions{.units = 4, .activation = act, .scale = 0.25f})});
    Sequential reference({Flatten(), Dense(DenseOptions{.units = 4, .activation = "linear"})});
    for (Sequential* s : {&plain, &scaled, &reference}) s->compile("sgd", "mse", 0.01f, {6});
    scaled.set_weights(plain.weights());
    reference.set_weights(plain.weights());
    const Tensor x = random_tensor({3, 6}, 21);
    const auto z = reference.layer_outputs(x)[1].to_vector();
    const auto got = scaled.layer_outputs(x)[1].to_vector();
    for (int r = 0; r < 3; ++r) {
      double sum = 0;
      for (int j = 0; j < 4; ++j) sum += std::exp(0.25 * z[size_t(r * 4 + j)]);
      for (int j = 0; j < 4; ++j) {
        const double s = 0.25 * z[size_t(r * 4 + j)];
        const std::string a = act;
        const double want = a == "linear" ? s : a == "relu" ? std::max(s, 0.0)
                            : a == "gelu" ? 0.5 * s * (1 + std::erf(s / std::sqrt(2.0)))
                                          : std::exp(s) / sum;
        EXPECT_NEAR(got[size_t(r * 4 + j)], want, 1e-6);
      }
    }
  }
}

TEST(DenseScale, ConfigRoundTripAndValidation) {
  Dense d(DenseOptions{.units = 10, .use_bias = false, .scale = 1.0f / 9});
  const auto c = d.config();
  EXPECT_FLOAT_EQ(c["scale"].get<float>(), 1.0f / 9);
  auto back = layer_from_config(c);
  EXPECT_EQ(back->config(), c);
  EXPECT_FALSE(Dense(10).config().contains("scale"));  // unchanged files for unscaled layers
  EXPECT_THROW(Dense(DenseOptions{.units = 2, .scale = 0.0f}), Error);
  EXPECT_THROW(layer_from_config({{"type", "Dense"}, {"units", 2}, {"scale", "big"}}), Error);
}

TEST(BatchNormDropoutPoolingConfig, EveryNewLayerRoundTripsThroughJson) {
  Sequential m({Conv2D(4, 3, 1, "same"), BatchNormalization({.momentum = 0.4f, .epsilon = 1e-12f, .scale = false}),
                Dropout(0.25f), GlobalAveragePooling2D(), BatchNormalization(), Dense(3, "softmax")});
  m.compile("sgd", "cce", 0.01f, {3, 8, 8});
  Sequential back = Sequential::from_json(m.to_json());
  EXPECT_EQ(back.to_json().dump(), m.to_json().dump());
  Sequential gmax({GlobalMaxPooling2D(), Dense(2, "softmax")});
  gmax.compile("sgd", "cce", 0.01f, {3, 4, 4});
  EXPECT_EQ(Sequential::from_json(gmax.to_json()).to_json().dump(), gmax.to_json().dump());
  EXPECT_EQ(back.count_params(), m.count_params());
  EXPECT_THROW(layer_from_config({{"type", "Dropout"}}), Error);
  EXPECT_THROW(layer_from_config({{"type", "Dropout"}, {"rate", 1.0}}), Error);
  EXPECT_THROW(layer_from_config({{"type", "GlobalMaxPooling2D"}, {"keepdims", true}}), Error);
}

}  // namespace
}  // namespace cnn
