// Sequential: the seed's LeNet-5 listing, compile-time errors, training, determinism,
// save/load, callbacks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "kernels/ops.hpp"
#include "model/runner.hpp"
#include "model/state.hpp"
#include "test_data_util.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {

// The seed's listing, with only C++ syntax changes.
Sequential seed_lenet5() {
  return Sequential({
      Conv2D(6, 5, 1, "valid", "relu"),
      AveragePooling2D(2, 2),
      Conv2D(16, 5, 1, "valid", "relu"),
      AveragePooling2D(2, 2),
      Flatten(),
      Dense(120, "relu"),
      Dense(84, "relu"),
      Dense(10, "softmax"),
  });
}

TEST(Sequential, SeedLeNet5CompilesAndReportsKerasParameterCounts) {
  Sequential model = seed_lenet5();
  model.compile("sgd", "cce", 0.01, {1, 32, 32});
  EXPECT_EQ(model.count_params(), 156 + 2416 + 48120 + 10164 + 850);
  EXPECT_EQ(model.layer(0).output_shape(), (Shape{6, 28, 28}));
  EXPECT_EQ(model.layer(3).output_shape(), (Shape{16, 5, 5}));
  EXPECT_EQ(model.layer(4).output_shape(), (Shape{400}));
  const std::string table = model.summary_string();
  EXPECT_NE(table.find("conv2d (Conv2D)"), std::string::npos) << table;
  EXPECT_NE(table.find("conv2d_1 (Conv2D)"), std::string::npos) << table;
  EXPECT_NE(table.find("average_pooling2d (AveragePooling2D)"), std::string::npos) << table;
  EXPECT_NE(table.find("(None, 6, 28, 28)"), std::string::npos) << table;
  EXPECT_NE(table.find("Total params: 61,706"), std::string::npos) << table;
  EXPECT_NE(table.find("Trainable params: 61,706"), std::string::npos) << table;
}

TEST(Sequential, SeedLeNet5TrainsWithTheSeedsFitCall) {
  const auto data = test::make_quadrant_data(120, 1, 32, 32, 7);
  Sequential model = seed_lenet5();
  model.compile("sgd", "cce", 0.01, {1, 32, 32});
  // A fixed subset of the training images, evaluated before and after: the listing learns.
  const Tensor subset_x = data.x.slice(0, 60), subset_y = to_categorical(data.y.slice(0, 60), 10);
  const Evaluation before = model.evaluate(subset_x, subset_y);
  History h = model.fit(data.x, to_categorical(data.y, 10), 2);  // the seed's fit(x, y, epochs)
  ASSERT_EQ(h.epochs(), 2);
  EXPECT_TRUE(std::isfinite(h.loss[1]));
  const Evaluation after = model.evaluate(subset_x, subset_y);
  EXPECT_LT(after.loss, before.loss);
  EXPECT_GE(after.accuracy, before.accuracy + 0.1) << "before " << before.accuracy << ", after " << after.accuracy;
  EXPECT_LT(h.loss.back(), h.loss.front());
  EXPECT_GT(h.accuracy.back(), h.accuracy.front());
}

TEST(Sequential, ImpossibleArchitectureFailsAtCompileNamingTheLayer) {
  Sequential model({Conv2D(6, 5), MaxPooling2D(2), Conv2D(16, 5), Flatten(), Dense(10, "softmax")});
  try {
    model.compile("sgd", "cce", 0.01, {1, 8, 8});
    FAIL() << "compile accepted a 5x5 kernel on a 2x2 input";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("layer 2 (Conv2D)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[6, 2, 2]"), std::string::npos) << msg;
  }
}

TEST(Sequential, BadNamesAndOptionsRaiseErrorsListingTheValidOnes) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([] { Conv2D(6, 5, 1, "valid", "rellu"); }).find("valid activations: linear, relu"), std::string::npos);
  EXPECT_NE(message([] { Conv2D(6, 5, 1, "full", "relu"); }).find("valid paddings: valid, same"), std::string::npos);
  EXPECT_NE(message([] { Conv2D(6, 5, 0); }).find("strides must be positive"), std::string::npos);
  EXPECT_NE(message([] { Dense(0); }).find("units must be positive"), std::string::npos);
  EXPECT_NE(message([] { MaxPooling2D(2, 2, "middle"); }).find("valid paddings"), std::string::npos);
  Sequential m({Flatten(), Dense(3, "softmax")});
  EXPECT_NE(message([&] { m.compile("sgdd", "cce", 0.1f, {4}); }).find("valid optimizers: sgd, adam"), std::string::npos);
  EXPECT_NE(message([&] { m.compile("sgd", "hinge", 0.1f, {4}); }).find("valid losses: cce"), std::string::npos);
  EXPECT_NE(message([&] { m.compile("sgd", "cce", -1.0f, {4}); }).find("learning_rate must be > 0"), std::string::npos);
  EXPECT_NE(message([&] { m.compile("sgd", "cce", 0.1f, {0, 3}); }).find("dimension <= 0"), std::string::npos);
  Sequential linear_ce({Flatten(), Dense(3)});
  EXPECT_NE(message([&] { linear_ce.compile("sgd", "cce", 0.1f, {4}); }).find("from_logits"), std::string::npos);
}

TEST(Sequential, FitRejectsMismatchedDataWithClearMessages) {
  Sequential m({Flatten(), Dense(3, "softmax")});
  m.compile("sgd", "scce", 0.1f, {2, 2});
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const Tensor x({5, 2, 2});
  EXPECT_NE(message([&] { m.fit(Tensor({5, 3, 2}), Tensor({5}), 1); }).find("expects [N, 2, 2]"), std::string::npos);
  EXPECT_NE(message([&] { m.fit(x, Tensor({4}), 1); }).find("y has 4 rows but x has 5"), std::string::npos);
  EXPECT_NE(message([&] { m.fit(x, Tensor::full({5}, 3.0f), 1); }).find("label 3 at row 0"), std::string::npos);
  EXPECT_NE(message([&] { m.fit(x, Tensor::full({5}, 0.5f), 1); }).find("not a class index"), std::string::npos);
}

TEST(Sequential, LearnsASmallDataSetToAStatedAccuracy) {
  const auto train = test::make_quadrant_data(400, 3, 16, 16, 1);
  Sequential model({Conv2D(8, 3, 1, "same", "relu"), MaxPooling2D(2), Conv2D(8, 3, 1, "valid", "relu"),
                    Flatten(), Dense(16, "relu"), Dense(4, "softmax")});
  CompileOptions o;
  o.optimizer = "adam";
  o.loss = "scce";
  o.learning_rate = 0.01f;
  o.input_shape = {3, 16, 16};
  model.compile(o);
  FitOptions f;
  f.epochs = 8;
  f.batch_size = 32;
  f.verbose = 0;
  f.validation_split = 0.25f;
  History h = model.fit(train.x, train.y, f);
  EXPECT_GE(h.val_accuracy.back(), 0.95) << "val accuracy " << h.val_accuracy.back();
  EXPECT_LT(h.loss.back(), h.loss.front());
}

// PyTorch's default weight initialisation and airbench's identity filters (torch_uniform,
// torch_uniform_dirac): U(+-1/sqrt(fan_in)); the dirac filters 0..min(c_out, c_in) - 1 are
// 1 at their own channel's centre tap and 0 elsewhere, the others keep their uniform draws.
TEST(Sequential, TorchUniformAndDiracInitialisers) {
  Conv2DOptions conv{.filters = 6, .kernel_size = 3, .padding = "same", .use_bias = false,
                     .kernel_initializer = "torch_uniform_dirac"};
  DenseOptions dense{.units = 5, .activation = "softmax", .kernel_initializer = "torch_uniform"};
  Conv2DOptions wide = conv;  // more inputs than filters: every filter is an identity
  wide.filters = 3;
  Sequential m({Conv2D(conv), Conv2D(wide), Flatten(), Dense(dense)});
  CompileOptions o;
  o.loss = "scce";
  o.input_shape = {4, 5, 5};
  m.compile(o);
  std::map<std::string, std::vector<float>> w;
  for (const auto& [name, t] : m.weights()) w[name] = t.to_vector();
  const std::vector<float>& c0 = w.at("layers.0.conv2d.weight");  // [6, 4, 3, 3]
  ASSERT_EQ(c0.size(), 6u * 4 * 9);
  for (int f = 0; f < 4; ++f)
    for (int c = 0; c < 4; ++c)
      for (int t = 0; t < 9; ++t)
        ASSERT_EQ(c0[size_t((f * 4 + c) * 9 + t)], f == c && t == 4 ? 1.f : 0.f) << f << " " << c << " " << t;
  const float limit0 = 1.f / std::sqrt(36.f);
  int nonzero = 0;
  for (size_t i = 4 * 36; i < c0.size(); ++i) {
    ASSERT_LE(std::fabs(c0[i]), limit0);
    nonzero += c0[i] != 0.f;
  }
  EXPECT_EQ(nonzero, 2 * 36);  // filters 4 and 5: uniform draws
  const std::vector<float>& c1 = w.at("layers.1.conv2d.weight");  // [3, 6, 3, 3]
  for (int f = 0; f < 3; ++f)
    for (int c = 0; c < 6; ++c)
      for (int t = 0; t < 9; ++t) ASSERT_EQ(c1[size_t((f * 6 + c) * 9 + t)], f == c && t == 4 ? 1.f : 0.f);
  const std::vector<float>& d = w.at("layers.3.dense.weight");  // [5, 75]
  float biggest = 0;
  for (float v : d) biggest = std::max(biggest, std::fabs(v));
  EXPECT_LE(biggest, 1.f / std::sqrt(75.f));
  EXPECT_GT(biggest, 0.8f / std::sqrt(75.f));  // the draws fill the range, not a smaller one
  EXPECT_EQ(Sequential::from_json(m.to_json()).to_json()["layers"][0]["kernel_initializer"], "torch_uniform_dirac");
}

TEST(Sequential, TwoRunsWithOneSeedGiveIdenticalWeights) {
  const auto data = test::make_quadrant_data(64, 1, 12, 12, 3);
  std::vector<float> initial;
  auto run = [&] {
    Sequential m({Conv2D(4, 3, 2, "same", "tanh"), Flatten(), Dense(4, "softmax")});
    CompileOptions o;
    o.loss = "scce";
    o.momentum = 0.9f;
    o.input_shape = {1, 12, 12};
    m.compile(o);
    initial = m.parameters().to_vector();
    FitOptions f;
    f.epochs = 2;
    f.batch_size = 8;
    f.verbose = 0;
    m.fit(data.x, data.y, f);
    return m.parameters().to_vector();
  };
  const std::vector<float> first = run(), second = run();
  EXPECT_EQ(first, second);
  // Training moved the weights: identical runs that changed nothing would prove nothing.
  ASSERT_EQ(initial.size(), first.size());
  size_t moved = 0;
  for (size_t i = 0; i < first.size(); ++i) moved += first[i] != initial[i];
  EXPECT_EQ(moved, first.size()) << moved << " of " << first.size() << " parameters moved";
}

// Flatten in a training step shares its input's buffer and is skipped (no copy forward or
// backward); an arena that keeps every layer's input gradient (the checkers') copies. The
// gradients come out bit for bit the same either way.
// One CPU training step's parameter gradients (labels r % 3) through a checker-style runner on
// its own arena: the training step's (keep false) or the checkers' (keep true, every layer's
// input gradient kept and every layer run whole). `inspect` sees the arena after the step.
std::vector<float> step_gradients(Sequential& m, const Tensor& x, int n, bool keep,
                                  const std::function<void(Arena<float>&)>& inspect = {}) {
  std::vector<float> params = m.parameters().to_vector(), grads(params.size());
  Arena<float> arena;
  arena.keep_input_grads = keep;
  Runner<float> runner(m, arena, Device::CPU, params.data(), grads.data());
  runner.plan(n);
  for (int r = 0; r < n; ++r) arena.labels.data()[r] = r % 3;
  runner.forward(n, true, 0, x.data());
  runner.loss_and_gradient(ops::TargetKind::Labels, n);
  runner.backward(n);
  if (inspect) inspect(arena);
  return grads;
}

TEST(Sequential, FlattenSharesItsInputsBufferInTheTrainingStep) {
  Sequential m({Conv2D(4, 3, 1, "same", "relu"), MaxPooling2D(2), Flatten(), Dense(5, "relu"), Dense(3, "softmax")});
  m.compile("sgd", "scce", 0.1f, {2, 6, 6});
  const int n = 4;
  const auto data = test::make_quadrant_data(n, 2, 6, 6, 3);
  auto gradients = [&](bool keep) {
    return step_gradients(m, data.x, n, keep, [&](Arena<float>& arena) {
      EXPECT_EQ(arena.act(2) == arena.act(1), !keep) << "keep_input_grads " << keep;
      EXPECT_NE(arena.act(3), arena.act(2));
      EXPECT_EQ(std::vector<float>(arena.act(2), arena.act(2) + n * 36),
                std::vector<float>(arena.act(1), arena.act(1) + n * 36));
    });
  };
  const std::vector<float> shared = gradients(false), copied = gradients(true);
  EXPECT_EQ(shared, copied);
  EXPECT_GT(*std::max_element(shared.begin(), shared.end()), 0.0f);
  // layer_outputs still reports Flatten's output.
  const std::vector<Tensor> outs = m.layer_outputs(data.x);
  EXPECT_EQ(outs[2].to_vector(), outs[1].to_vector());
  EXPECT_EQ(outs[2].shape(), (Shape{n, 36}));
}

// A training step folds the gradient of a conv's ReLU, leaky ReLU, sigmoid or tanh into the
// pooling layer above it (one pass fewer; on the GPU one kernel fewer): the gradients are bit
// for bit those of the checkers' arena, which runs every layer whole. GELU's gradient needs
// the pre-activation, so it is not folded.
TEST(Sequential, ConvActivationGradientFoldedIntoThePoolingAboveIt) {
  for (const char* act : {"relu", "leaky_relu", "sigmoid", "tanh", "gelu"})
    for (const bool max_pool : {true, false}) {
      SCOPED_TRACE(std::string(act) + (max_pool ? " max" : " average"));
      auto pool = [&]() -> std::shared_ptr<Layer> {
        if (max_pool) return std::make_shared<MaxPooling2D>(2);
        return std::make_shared<AveragePooling2D>(2);
      };
      Sequential m({Conv2D(3, 3, 1, "same", act), pool(), Conv2D(4, 3, 1, "same", act), pool(), Flatten(),
                    Dense(3, "softmax")});
      m.compile("sgd", "scce", 0.1f, {2, 8, 8});
      EXPECT_EQ(m.state().activation_below[1].kind == Activation::Linear, std::string(act) == "gelu");
      EXPECT_EQ(m.state().activation_below[2].kind, Activation::Linear);
      const int n = 3;
      const auto data = test::make_quadrant_data(n, 2, 8, 8, 4);
      const std::vector<float> folded = step_gradients(m, data.x, n, false), whole = step_gradients(m, data.x, n, true);
      EXPECT_EQ(folded, whole);
      EXPECT_GT(*std::max_element(folded.begin(), folded.end()), 0.0f);
    }
}

// The GPU's fp32 step runs consecutive small Dense layers forward as one kernel: which runs
// qualify (scale 1, widths <= kDenseChainMaxWidth, an activation the chain applies: not GELU,
// whose gradient needs the pre-activation, nor softmax; the last layer's fused softmax is
// linear logits), cut at kDenseChainMaxLayers.
TEST(Sequential, DenseChainsArePlannedForRunsOfSmallDenseLayers) {
  Sequential lenet = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/lenet5.json");
  EXPECT_EQ(lenet.state().dense_chain, (std::vector<int>{0, 0, 0, 0, 0, 3, 0, 0}));
  auto plan = [](std::initializer_list<AnyLayer> layers, int in = 16) {
    Sequential m(layers);
    m.compile("sgd", "mse", 0.1f, {in});
    return m.state().dense_chain;
  };
  EXPECT_EQ(plan({Dense(8, "relu"), Dense(8, "gelu"), Dense(4, "tanh"), Dense(2)}), (std::vector<int>{0, 0, 2, 0}));
  EXPECT_EQ(plan({Dense(8, "relu"), Dense({.units = 8, .scale = 0.5f}), Dense(4), Dense(2)}),
            (std::vector<int>{0, 0, 2, 0}));
  EXPECT_EQ(plan({Dense(8, "relu"), Dense(4, "sigmoid")}, 600), (std::vector<int>{0, 0}));  // 600 inputs: too wide
  EXPECT_EQ(plan({Dense(8), Dense(8), Dense(8), Dense(8), Dense(8), Dense(8)}),
            (std::vector<int>{4, 0, 0, 0, 2, 0}));
  EXPECT_EQ(plan({Dense(8, "softmax"), Dense(4)}), (std::vector<int>{0, 0}));
}

TEST(Sequential, SaveLoadPredictIsBitIdentical) {
  const auto data = test::make_quadrant_data(32, 3, 8, 8, 5);
  Sequential m({Conv2D(4, 3, 1, "same", "leaky_relu"), AveragePooling2D(2), Flatten(), Dense(4, "softmax")});
  m.compile("adam", "scce", 0.01f, {3, 8, 8});
  FitOptions f;
  f.epochs = 1;
  f.verbose = 0;
  m.fit(data.x, data.y, f);
  const std::string path = testing::TempDir() + "/model.safetensors";
  m.save(path);
  Sequential loaded = Sequential::load(path);
  EXPECT_EQ(loaded.to_json().dump(), m.to_json().dump());
  EXPECT_EQ(loaded.predict(data.x).to_vector(), m.predict(data.x).to_vector());
}

}  // namespace
}  // namespace cnn

namespace cnn {
namespace {

std::string fit_error(Sequential& m, const Tensor& x, const Tensor& y, FitOptions f) {
  try {
    m.fit(x, y, f);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(NanGuard, ANanInTheDataStopsFitNamingEpochStepAndSource) {
  auto data = test::make_quadrant_data(64, 1, 8, 8, 2);
  data.x.at({37, 0, 3, 3}) = std::nanf("");
  Sequential m({Conv2D(2, 3), Flatten(), Dense(4, "softmax")});
  m.compile("sgd", "scce", 0.1f, {1, 8, 8});
  const std::string ckpt = testing::TempDir() + "/nan_guard.ckpt";
  FitOptions f;
  f.epochs = 2;
  f.batch_size = 16;
  f.shuffle = false;
  f.verbose = 0;
  f.checkpoint_path = ckpt;
  const std::string msg = fit_error(m, data.x, data.y, f);
  EXPECT_NE(msg.find("epoch 1, step 3"), std::string::npos) << msg;  // row 37 is in the third batch of 16
  EXPECT_NE(msg.find("input batch holds NaN/Inf"), std::string::npos) << msg;
  for (float v : m.parameters().to_vector()) ASSERT_TRUE(std::isfinite(v)) << "a NaN reached the weights";
}

// Weights poisoned after epoch 1's checkpoint: epoch 2 stops with the guard's error, and the
// checkpoint on disk is still epoch 1's, loadable and finite.
TEST(NanGuard, TheLastGoodCheckpointSurvivesANonFiniteEpoch) {
  const auto data = test::make_quadrant_data(64, 1, 8, 8, 6);
  Sequential m({Conv2D(2, 3), Flatten(), Dense(4, "softmax")});
  m.compile("sgd", "scce", 0.1f, {1, 8, 8});
  const std::string ckpt = testing::TempDir() + "/nan_guard_survives.ckpt";
  std::filesystem::remove(ckpt);
  FitOptions f;
  f.epochs = 3;
  f.batch_size = 16;
  f.verbose = 0;
  f.checkpoint_path = ckpt;
  f.callbacks.push_back(lambda_callback({.on_epoch_end = [](Sequential& model, const EpochLogs& logs) {
    if (logs.epoch != 0) return;
    auto w = model.weights();
    for (auto& [name, t] : w) t.data()[0] = std::numeric_limits<float>::infinity();
    model.set_weights(w);
  }}));
  const std::string msg = fit_error(m, data.x, data.y, f);
  EXPECT_NE(msg.find("epoch 2"), std::string::npos) << msg;
  TrainingProgress progress;
  Sequential saved = Sequential::load_checkpoint(ckpt, &progress);
  EXPECT_EQ(progress.epoch, 1);
  for (float v : saved.parameters().to_vector()) ASSERT_TRUE(std::isfinite(v));
}

TEST(NanGuard, DivergenceNamesTheFirstLayerThatWentNonFinite) {
  const auto data = test::make_quadrant_data(64, 1, 8, 8, 4);
  Sequential m({Conv2D(4, 3, 1, "valid", "relu"), Flatten(), Dense(16, "relu"), Dense(4, "softmax")});
  m.compile("sgd", "scce", 1e12f, {1, 8, 8});  // a learning rate that must blow up
  FitOptions f;
  f.epochs = 3;
  f.batch_size = 16;
  f.shuffle = false;  // step s of any epoch trains on rows [16 (s - 1), 16 s)
  f.verbose = 0;
  const std::string msg = fit_error(m, data.x, data.y, f);
  EXPECT_NE(msg.find("training diverged in epoch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layer "), std::string::npos) << msg;
  EXPECT_NE(msg.find("Lower the learning rate"), std::string::npos) << msg;
  // The guard stops before the update, so the weights are still those the failing step started
  // from: its batch, run forward here layer by layer, shows which output went non-finite first.
  int epoch = 0, step = 0;
  ASSERT_EQ(std::sscanf(msg.c_str(), "fit: training diverged in epoch %d, step %d", &epoch, &step), 2) << msg;
  ASSERT_TRUE(step >= 1 && step <= 4) << msg;
  const std::vector<Tensor> outs = m.layer_outputs(data.x.slice(16 * (step - 1), 16 * step));
  size_t first = outs.size();
  for (size_t i = 0; i < outs.size() && first == outs.size(); ++i)
    for (float v : outs[i].to_vector())
      if (!std::isfinite(v)) first = i;
  ASSERT_LT(first, outs.size()) << "the failing batch runs finite through every layer; message: " << msg;
  EXPECT_NE(msg.find("the output of layer " + std::to_string(first) + " (" + m.layer(first).type() + ")"),
            std::string::npos)
      << msg;
}

}  // namespace
}  // namespace cnn

namespace cnn {
namespace {

TEST(LRSchedule, FactorsFollowTheDocumentedFormulas) {
  LRSchedule one;
  one.kind = "onecycle";
  one.warmup = 0.25f;
  one.start_factor = 0.2f;
  one.end_factor = 0.0f;
  EXPECT_NEAR(one.factor(0, 0), 0.2, 1e-7);
  EXPECT_NEAR(one.factor(0.125, 0), 0.6, 1e-7);
  EXPECT_NEAR(one.factor(0.25, 0), 1.0, 1e-7);
  EXPECT_NEAR(one.factor(0.625, 0), 0.5, 1e-7);
  EXPECT_NEAR(one.factor(1, 0), 0.0, 1e-7);
  LRSchedule cosine;
  cosine.kind = "cosine";
  cosine.min_factor = 0.1f;
  EXPECT_NEAR(cosine.factor(0, 0), 1.0, 1e-7);
  EXPECT_NEAR(cosine.factor(0.5, 0), 0.55, 1e-7);
  EXPECT_NEAR(cosine.factor(1, 0), 0.1, 1e-7);
  LRSchedule step;
  step.kind = "step";
  step.step_epochs = 2;
  step.gamma = 0.5f;
  EXPECT_EQ(step.factor(0.9, 1), 1.0);
  EXPECT_EQ(step.factor(0.9, 5), 0.25);
}

TEST(LRSchedule, FitAppliesItAndRecordsTheRatePerEpoch) {
  const auto data = test::make_quadrant_data(32, 1, 8, 8, 6);
  Sequential m({Flatten(), Dense(4, "softmax")});
  m.compile("sgd", "scce", 0.1f, {1, 8, 8});
  FitOptions f;
  f.epochs = 4;
  f.verbose = 0;
  f.lr_schedule.kind = "step";
  f.lr_schedule.step_epochs = 1;
  f.lr_schedule.gamma = 0.5f;
  const History h = m.fit(data.x, data.y, f);
  EXPECT_EQ(h.learning_rate, (std::vector<double>{double(0.1f), double(0.1f) * 0.5, double(0.1f) * 0.25, double(0.1f) * 0.125}));
  f.lr_schedule.kind = "sawtooth";
  EXPECT_NE(fit_error(m, data.x, data.y, f).find("valid schedules: constant, step, cosine, onecycle"), std::string::npos);
}

}  // namespace
}  // namespace cnn

namespace cnn {
namespace {

// Records the parameters after every optimizer step.
struct Recorder : Callback {
  std::vector<std::vector<float>> steps;
  void on_step_end(Sequential& m, int64_t) override { steps.push_back(m.parameters().to_vector()); }
};

TEST(WeightAveraging, EmaAndLookaheadFollowTheirFormulas) {
  const auto data = test::make_quadrant_data(48, 1, 6, 6, 9);
  for (const std::string method : {"ema", "lookahead", "lookahead decaying"}) {
    SCOPED_TRACE(method);
    const bool decaying = method == "lookahead decaying";
    Sequential m({Flatten(), Dense(4, "softmax")});
    m.compile("sgd", "scce", 0.5f, {1, 6, 6});
    const std::vector<float> initial = m.parameters().to_vector();
    auto recorder = std::make_shared<Recorder>();
    WeightAveragingOptions w;
    w.method = decaying ? "lookahead" : method;
    w.decay = 0.8f;
    w.every = 2;
    w.alpha = 0.5f;
    if (decaying) {  // alpha_t = 0.5 (1 - 0.6 p^2), p = steps done / 6
      w.alpha_decay = 0.6f;
      w.alpha_decay_power = 2;
    }
    FitOptions f;
    f.epochs = 2;
    f.batch_size = 16;
    f.verbose = 0;
    f.callbacks = {recorder, weight_averaging(w)};
    m.fit(data.x, data.y, f);
    ASSERT_EQ(recorder->steps.size(), 6u);
    std::vector<float> expected = initial;
    if (method == "ema") {
      for (const auto& p : recorder->steps)
        for (size_t i = 0; i < p.size(); ++i) expected[i] += 0.2f * (p[i] - expected[i]);
      const std::vector<float> got = m.parameters().to_vector();
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], expected[i], 1e-6) << i;
    } else {
      // The recorder sees the fast weights before the reset; the final weights are the slow ones.
      for (size_t k = 0; k < recorder->steps.size(); ++k) {
        if ((k + 1) % 2 != 0) continue;
        const double p = double(k + 1) / 6;
        const float alpha = decaying ? float(0.5 * (1 - double(0.6f) * p * p)) : 0.5f;
        for (size_t i = 0; i < expected.size(); ++i) expected[i] += alpha * (recorder->steps[k][i] - expected[i]);
      }
      const std::vector<float> got = m.parameters().to_vector();
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], expected[i], 1e-6) << i;
    }
  }
}

}  // namespace
}  // namespace cnn

namespace cnn {
namespace {

std::vector<float> train_with(const Augmentation& a, uint64_t seed) {
  const auto data = test::make_quadrant_data(48, 3, 8, 8, 12);
  Sequential m({Conv2D(4, 3, 1, "same", "relu"), Dropout(0.25f), Flatten(), Dense(4, "softmax")});
  m.compile("sgd", "scce", 0.1f, {3, 8, 8});
  FitOptions f;
  f.epochs = 2;
  f.batch_size = 16;
  f.verbose = 0;
  f.seed = seed;
  f.augment = a;
  m.fit(data.x, data.y, f);
  return m.parameters().to_vector();
}

TEST(Augmentation, FitAugmentsDeterministicallyPerSeed) {
  const Augmentation none;
  Augmentation full;
  full.translate = 2;
  full.flip = "random";
  full.cutout = 3;
  Augmentation alternate;
  alternate.flip = "alternate";
  EXPECT_EQ(train_with(full, 1), train_with(full, 1));
  EXPECT_NE(train_with(full, 1), train_with(full, 2));
  EXPECT_NE(train_with(full, 1), train_with(none, 1));
  EXPECT_EQ(train_with(alternate, 3), train_with(alternate, 3));
  EXPECT_NE(train_with(alternate, 3), train_with(none, 3));
}

TEST(Augmentation, BadOptionsAreRefused) {
  const auto data = test::make_quadrant_data(8, 1, 8, 8, 1);
  Sequential m({Flatten(), Dense(4, "softmax")});
  m.compile("sgd", "scce", 0.1f, {1, 8, 8});
  FitOptions f;
  f.verbose = 0;
  f.augment.translate = 8;
  EXPECT_NE(fit_error(m, data.x, data.y, f).find("augment.translate must be in [0, 8)"), std::string::npos);
  f.augment.translate = 0;
  f.augment.flip = "vertical";
  EXPECT_NE(fit_error(m, data.x, data.y, f).find("valid: none, random, alternate"), std::string::npos);
}

}  // namespace
}  // namespace cnn

namespace cnn {
namespace {

// The loss of the mean over the views (image and mirror, each shifted by -1 and +1) of the
// last layer's logits, the unshifted and the shifted views with their weights, by hand.
double tta_loss_by_hand(Sequential& m, const test::SmallData& data, double unshifted_w, double shifted_w) {
  const int n = 6, c = 2, h = 6, w = 5;
  std::vector<std::pair<std::vector<float>, double>> views;
  std::vector<float> x = data.x.to_vector(), flipped(x.size()), shifted(x.size());
  ops::cpu::flip_images<float>(n, c, h, w, x.data(), flipped.data());
  for (const auto* base : {&x, &flipped}) {
    views.push_back({*base, unshifted_w});
    for (int d : {-1, 1}) {
      ops::cpu::translate_images<float>(n, c, h, w, base->data(), shifted.data(), d, d);
      views.push_back({shifted, shifted_w});
    }
  }
  std::vector<double> mean(size_t(n * 4), 0.0);
  for (const auto& [v, weight] : views) {
    const Tensor logits = m.layer_outputs(Tensor::from_vector({n, c, h, w}, v)).back();
    for (size_t i = 0; i < mean.size(); ++i) mean[i] += logits.to_vector()[i] * weight;
  }
  std::vector<double> loss(static_cast<size_t>(n)), grad(mean.size());
  std::vector<int32_t> labels;
  for (float y : data.y.to_vector()) labels.push_back(int32_t(y));
  ops::cpu::softmax_cross_entropy<double>(n, 4, mean.data(), ops::TargetKind::Labels, labels.data(), nullptr, 0.0,
                                          loss.data(), grad.data());
  double expected = 0;
  for (double l : loss) expected += l / n;
  return expected;
}

TEST(TestTimeAugmentation, AveragesTheOutputsOfTheMirroredAndShiftedViews) {
  const auto data = test::make_quadrant_data(6, 2, 6, 5, 21);
  Sequential m({Conv2D(3, 3, 1, "same", "tanh"), Flatten(), Dense(4, "softmax")});
  m.compile("sgd", "scce", 0.1f, {2, 6, 5});
  EvaluateOptions o;
  o.tta.flip = true;
  o.tta.translate = 1;
  const double equal = m.evaluate(data.x, data.y, o).loss;
  EXPECT_NEAR(equal, tta_loss_by_hand(m, data, 1.0 / 6, 1.0 / 6), 1e-5);
  EXPECT_NE(m.evaluate(data.x, data.y).loss, equal);
  // airbench's weights: the shifted views share half, so 1/4 for the image and its mirror
  // and 1/8 for each shifted one.
  o.tta.shifted_share = 0.5;
  const double airbench = m.evaluate(data.x, data.y, o).loss;
  EXPECT_NEAR(airbench, tta_loss_by_hand(m, data, 0.25, 0.125), 1e-5);
  EXPECT_GT(std::fabs(airbench - equal), 1e-4) << "the weights must matter on this data, or the test shows nothing";
  o.tta.shifted_share = 0;  // the shifted views run but count for nothing
  EXPECT_NEAR(m.evaluate(data.x, data.y, o).loss, tta_loss_by_hand(m, data, 0.5, 0.0), 1e-5);
  o.tta.translate = 0;
  o.tta.shifted_share = 0.5;
  EXPECT_CONTAINS(test::error_of([&] { m.evaluate(data.x, data.y, o); }),
                  "tta.shifted_share must be in [0, 1] with tta.translate > 0");
  o.tta.flip = false;  // no views at all: still refused, not ignored
  EXPECT_CONTAINS(test::error_of([&] { m.evaluate(data.x, data.y, o); }),
                  "tta.shifted_share must be in [0, 1] with tta.translate > 0");
}

}  // namespace
}  // namespace cnn
