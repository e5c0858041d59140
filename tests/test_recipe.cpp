// The training recipe in the library: the model file's "training" section read into
// TrainingRecipe (defaults, every key, and bad values refused with the key named), the
// recipe's names parsed once into enums, NaN and infinity refused in every float option
// (compile, fit, weight averaging, layers; from C++ and from files), patch whitening applied
// by fit only to fresh weights, and set_optimizer changing the optimizer without touching
// the weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "cnn/initializers.hpp"
#include "test_data_util.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {

using test::error_of;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
const std::string kModels = std::string(CNN_SOURCE_DIR) + "/models/";

// ---- names ------------------------------------------------------------------------------------

TEST(RecipeNames, ParseAndPrintEveryName) {
  for (const char* n : {"sgd", "adam"}) EXPECT_EQ(to_string(parse_optimizer(n)), n);
  for (const char* n : {"constant", "step", "cosine", "onecycle"}) EXPECT_EQ(to_string(parse_schedule(n)), n);
  for (const char* n : {"none", "random", "alternate"}) EXPECT_EQ(to_string(parse_flip(n)), n);
  for (const char* n : {"ema", "lookahead"}) EXPECT_EQ(to_string(parse_averaging_method(n)), n);
  EXPECT_EQ(parse_optimizer("adam"), OptimizerKind::Adam);
  EXPECT_EQ(parse_schedule("onecycle"), ScheduleKind::OneCycle);
  EXPECT_EQ(parse_flip("alternate"), FlipMode::Alternate);
  EXPECT_EQ(parse_averaging_method("lookahead"), AveragingMethod::Lookahead);
}

TEST(RecipeNames, UnknownNamesKeepTheirMessages) {
  EXPECT_EQ(error_of([] { parse_optimizer("rmsprop", "compile"); }),
            "compile: unknown optimizer 'rmsprop'; valid optimizers: sgd, adam");
  EXPECT_EQ(error_of([] { parse_schedule("sawtooth", "fit"); }),
            "fit: unknown lr_schedule 'sawtooth'; valid schedules: constant, step, cosine, onecycle");
  EXPECT_EQ(error_of([] { parse_flip("vertical", "fit"); }),
            "fit: unknown augment.flip 'vertical'; valid: none, random, alternate");
  EXPECT_EQ(error_of([] { parse_averaging_method("swa", "weight_averaging"); }),
            "weight_averaging: unknown method 'swa'; valid methods: ema, lookahead");
  // The same words where the names enter: compile, and the weight-averaging callback.
  Sequential m({Flatten(), Dense(2, "softmax")});
  EXPECT_CONTAINS(error_of([&] { m.compile("rmsprop", "scce", 0.1f, {1, 2, 2}); }),
                  "compile: unknown optimizer 'rmsprop'; valid optimizers: sgd, adam");
  WeightAveragingOptions w;
  w.method = "swa";
  EXPECT_CONTAINS(error_of([&] { weight_averaging(w); }), "weight_averaging: unknown method 'swa'");
}

TEST(RecipeNames, ScheduleFactorIsTheSameForTheNameAndTheParsedKind) {
  for (const char* kind : {"constant", "step", "cosine", "onecycle"}) {
    LRSchedule l;
    l.kind = kind;
    l.step_epochs = 2;
    for (double t : {0.0, 0.1, 0.5, 0.9, 1.0})
      for (int epoch : {0, 3}) EXPECT_EQ(l.factor(t, epoch), l.factor(parse_schedule(kind), t, epoch)) << kind;
  }
  LRSchedule cosine;
  cosine.kind = "cosine";
  EXPECT_DOUBLE_EQ(cosine.factor(ScheduleKind::Cosine, 0.5, 0), 0.5);
}

// ---- the "training" section ----------------------------------------------------------------

TEST(TrainingRecipe, DefaultsAreTheCommandLinesWithoutASection) {
  const TrainingRecipe r;
  EXPECT_EQ(r.fit.epochs, 10);
  EXPECT_EQ(r.fit.batch_size, 32);
  EXPECT_FLOAT_EQ(r.fit.validation_split, 0.1f);
  EXPECT_TRUE(r.fit.shuffle);
  EXPECT_EQ(r.fit.seed, 1u);
  EXPECT_FALSE(r.fit.weight_averaging.has_value());
  EXPECT_EQ(r.fit.patch_whitening.images, 5000);
  EXPECT_DOUBLE_EQ(r.fit.patch_whitening.eps, 5e-4);
  const TrainingRecipe empty = read_training_recipe(nlohmann::json::object());
  EXPECT_EQ(empty.fit.epochs, 10);
  EXPECT_EQ(empty.fit.batch_size, 32);
  EXPECT_FLOAT_EQ(empty.fit.validation_split, 0.1f);
}

TEST(TrainingRecipe, ReadsEveryKey) {
  const TrainingRecipe r = read_training_recipe(nlohmann::json::parse(R"({
      "epochs": 3, "batch_size": 7, "validation_split": 0.25, "shuffle": false, "seed": 99,
      "lr_schedule": {"kind": "step", "step_epochs": 2, "gamma": 0.5, "min_factor": 0.1, "warmup": 0.3,
                      "start_factor": 0.4, "end_factor": 0.05},
      "augment": {"translate": 2, "flip": "alternate", "cutout": 4},
      "weight_averaging": {"method": "lookahead", "decay": 0.9, "every": 3, "alpha": 0.25},
      "tta": {"flip": true, "translate": 1},
      "patch_whitening": {"images": 123, "eps": 0.001}})"));
  EXPECT_EQ(r.fit.epochs, 3);
  EXPECT_EQ(r.fit.batch_size, 7);
  EXPECT_FLOAT_EQ(r.fit.validation_split, 0.25f);
  EXPECT_FALSE(r.fit.shuffle);
  EXPECT_EQ(r.fit.seed, 99u);
  EXPECT_EQ(r.fit.lr_schedule.kind, "step");
  EXPECT_EQ(r.fit.lr_schedule.step_epochs, 2);
  EXPECT_FLOAT_EQ(r.fit.lr_schedule.gamma, 0.5f);
  EXPECT_FLOAT_EQ(r.fit.lr_schedule.min_factor, 0.1f);
  EXPECT_FLOAT_EQ(r.fit.lr_schedule.warmup, 0.3f);
  EXPECT_FLOAT_EQ(r.fit.lr_schedule.start_factor, 0.4f);
  EXPECT_FLOAT_EQ(r.fit.lr_schedule.end_factor, 0.05f);
  EXPECT_EQ(r.fit.augment.translate, 2);
  EXPECT_EQ(r.fit.augment.flip, "alternate");
  EXPECT_EQ(r.fit.augment.cutout, 4);
  ASSERT_TRUE(r.fit.weight_averaging.has_value());
  EXPECT_EQ(r.fit.weight_averaging->method, "lookahead");
  EXPECT_FLOAT_EQ(r.fit.weight_averaging->decay, 0.9f);
  EXPECT_EQ(r.fit.weight_averaging->every, 3);
  EXPECT_FLOAT_EQ(r.fit.weight_averaging->alpha, 0.25f);
  EXPECT_TRUE(r.tta.flip);
  EXPECT_EQ(r.tta.translate, 1);
  EXPECT_EQ(r.fit.patch_whitening.images, 123);
  EXPECT_DOUBLE_EQ(r.fit.patch_whitening.eps, 0.001);
}

TEST(TrainingRecipe, ReadsTheShippedModelFiles) {
  const TrainingRecipe a = read_training_recipe_file(kModels + "airbench94.json");
  EXPECT_EQ(a.fit.epochs, 9.9);  // airbench's, the last epoch in part
  EXPECT_TRUE(a.fit.drop_last);
  EXPECT_EQ(a.fit.batch_size, 1024);
  EXPECT_EQ(a.fit.validation_split, 0.0f);
  EXPECT_EQ(a.fit.lr_schedule.kind, "onecycle");
  EXPECT_EQ(a.fit.lr_schedule.warmup, 0.23f);
  EXPECT_EQ(a.fit.augment.flip, "alternate");
  EXPECT_EQ(a.fit.augment.translate, 2);
  EXPECT_TRUE(a.tta.flip);
  EXPECT_EQ(a.tta.translate, 1);
  EXPECT_EQ(a.tta.shifted_share, 0.5);  // airbench's view weights
  ASSERT_TRUE(a.fit.weight_averaging.has_value());  // airbench's lookahead
  EXPECT_EQ(a.fit.weight_averaging->method, "lookahead");
  EXPECT_EQ(a.fit.weight_averaging->every, 5);
  EXPECT_FLOAT_EQ(a.fit.weight_averaging->alpha_decay, 0.77378094f);
  EXPECT_EQ(a.fit.weight_averaging->alpha_decay_power, 3.0f);
  const TrainingRecipe l = read_training_recipe_file(kModels + "lenet5.json");
  EXPECT_EQ(l.fit.lr_schedule.kind, "cosine");
  EXPECT_EQ(l.fit.augment.flip, "random");
}

TEST(TrainingRecipe, ASavedModelHasTheDefaults) {
  Sequential m({Flatten(), Dense(2, "softmax")});
  m.compile("sgd", "scce", 0.1f, {1, 2, 2});
  const std::string path = testing::TempDir() + "recipe_saved.safetensors";
  m.save(path);
  const TrainingRecipe r = read_training_recipe_file(path);
  EXPECT_EQ(r.fit.epochs, 10);
  EXPECT_EQ(r.fit.batch_size, 32);
  std::remove(path.c_str());
}

std::string recipe_error(const std::string& section) {
  return error_of([&] { read_training_recipe(nlohmann::json::parse(section)); });
}

TEST(TrainingRecipe, BadValuesNameTheKey) {
  EXPECT_CONTAINS(recipe_error(R"({"epochs": -3})"), "training.epochs must be a finite number in [0, 1e+06], got -3");
  EXPECT_CONTAINS(recipe_error(R"({"epochs": 2e6})"), "training.epochs must be a finite number in [0, 1e+06]");
  EXPECT_CONTAINS(recipe_error(R"({"batch_size": 2.5})"), "training.batch_size must be an integer");
  EXPECT_CONTAINS(recipe_error(R"({"drop_last": 1})"), "training.drop_last must be true or false");
  EXPECT_CONTAINS(recipe_error(R"({"batch_size": 0})"), "training.batch_size must be an integer in [1, ");
  EXPECT_CONTAINS(recipe_error(R"({"validation_split": 1.5})"),
                  "training.validation_split must be a finite number in [0, 1), got 1.5");
  EXPECT_CONTAINS(recipe_error(R"({"validation_split": 1})"), "training.validation_split must be");
  EXPECT_CONTAINS(recipe_error(R"({"validation_split": -0.1})"), "training.validation_split must be");
  EXPECT_CONTAINS(recipe_error(R"({"seed": -1})"), "training.seed must be an integer");
  EXPECT_CONTAINS(recipe_error(R"({"lr_schedule": {"step_epochs": 0}})"), "training.lr_schedule.step_epochs");
  EXPECT_CONTAINS(recipe_error(R"({"lr_schedule": {"warmup": 1}})"), "training.lr_schedule.warmup");
  EXPECT_CONTAINS(recipe_error(R"({"lr_schedule": {"gamma": -1}})"), "training.lr_schedule.gamma");
  EXPECT_CONTAINS(recipe_error(R"({"augment": {"translate": -1}})"), "training.augment.translate");
  EXPECT_CONTAINS(recipe_error(R"({"augment": {"cutout": -2}})"), "training.augment.cutout");
  EXPECT_CONTAINS(recipe_error(R"({"weight_averaging": {"decay": 1}})"), "training.weight_averaging.decay");
  EXPECT_CONTAINS(recipe_error(R"({"weight_averaging": {"every": 0}})"), "training.weight_averaging.every");
  EXPECT_CONTAINS(recipe_error(R"({"weight_averaging": {"alpha": 0}})"), "training.weight_averaging.alpha");
  EXPECT_CONTAINS(recipe_error(R"({"weight_averaging": {"alpha_decay": 1}})"), "training.weight_averaging.alpha_decay");
  EXPECT_CONTAINS(recipe_error(R"({"weight_averaging": {"alpha_decay_power": 0}})"),
                  "training.weight_averaging.alpha_decay_power must be positive");
  EXPECT_CONTAINS(recipe_error(R"({"tta": {"translate": -1}})"), "training.tta.translate");
  EXPECT_CONTAINS(recipe_error(R"({"tta": {"translate": 1, "shifted_share": 1.5}})"), "training.tta.shifted_share");
  EXPECT_CONTAINS(recipe_error(R"({"tta": {"flip": true, "shifted_share": 0.5}})"),
                  "training.tta.shifted_share needs shifted views");
  EXPECT_CONTAINS(recipe_error(R"({"patch_whitening": {"images": 0}})"), "training.patch_whitening.images");
  EXPECT_CONTAINS(recipe_error(R"({"patch_whitening": {"eps": -1}})"), "training.patch_whitening.eps");
}

// JSON text cannot spell NaN and this JSON library refuses 1e999 (number overflow), but a
// document built in C++ can hold both: read_training_recipe and from_json refuse them.
TEST(TrainingRecipe, NanAndInfinityAreRefused) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (double bad : {nan, inf, -inf}) {
    const auto error = [&](const char* section, const char* key) {
      nlohmann::json t = nlohmann::json::object();
      if (*section) t[section][key] = bad;
      else t[key] = bad;
      return error_of([&] { read_training_recipe(t); });
    };
    EXPECT_CONTAINS(error("", "validation_split"), "training.validation_split must be a finite number");
    EXPECT_CONTAINS(error("", "epochs"), "training.epochs must be a finite number");
    for (const char* key : {"gamma", "min_factor", "warmup", "start_factor", "end_factor"})
      EXPECT_CONTAINS(error("lr_schedule", key), std::string("training.lr_schedule.") + key + " must be a finite number");
    for (const char* key : {"decay", "alpha"})
      EXPECT_CONTAINS(error("weight_averaging", key),
                      std::string("training.weight_averaging.") + key + " must be a finite number");
    EXPECT_CONTAINS(error("patch_whitening", "eps"), "training.patch_whitening.eps must be a finite number");
    // Integer keys refuse them as non-integers.
    EXPECT_CONTAINS(error("", "batch_size"), "training.batch_size must be an integer");
    EXPECT_CONTAINS(error("tta", "translate"), "training.tta.translate must be an integer");
  }
}

TEST(TrainingRecipe, UnknownKeysAndWrongTypes) {
  EXPECT_CONTAINS(recipe_error(R"({"epoch": 3})"), "training: unknown key \"epoch\"; valid keys: epochs, batch_size, drop_last");
  EXPECT_CONTAINS(recipe_error(R"({"augment": {"mirror": 1}})"),
                  "training.augment: unknown key \"mirror\"; valid keys: translate, flip, cutout");
  EXPECT_CONTAINS(recipe_error(R"({"lr_schedule": {"type": "cosine"}})"), "training.lr_schedule: unknown key \"type\"");
  EXPECT_CONTAINS(recipe_error(R"({"tta": {"rotate": true}})"), "training.tta: unknown key \"rotate\"");
  EXPECT_CONTAINS(recipe_error(R"({"weight_averaging": {"beta": 1}})"), "training.weight_averaging: unknown key");
  EXPECT_CONTAINS(recipe_error(R"({"patch_whitening": {"samples": 1}})"), "training.patch_whitening: unknown key");
  EXPECT_CONTAINS(recipe_error(R"([1, 2])"), "training must be an object");
  EXPECT_CONTAINS(recipe_error(R"({"augment": 2})"), "training.augment must be an object");
  EXPECT_CONTAINS(recipe_error(R"({"epochs": "ten"})"), "training.epochs must be a finite number");
  EXPECT_CONTAINS(recipe_error(R"({"validation_split": "0.1"})"), "training.validation_split must be a finite number");
  EXPECT_CONTAINS(recipe_error(R"({"shuffle": 1})"), "training.shuffle must be true or false");
  EXPECT_CONTAINS(recipe_error(R"({"tta": {"flip": "yes"}})"), "training.tta.flip must be true or false");
  EXPECT_CONTAINS(recipe_error(R"({"augment": {"flip": true}})"), "training.augment.flip must be a string");
  // Names: the words of the enums' parsers, at the key's place.
  EXPECT_CONTAINS(recipe_error(R"({"lr_schedule": {"kind": "sawtooth"}})"),
                  "training.lr_schedule: unknown lr_schedule 'sawtooth'; valid schedules: constant, step, cosine, onecycle");
  EXPECT_CONTAINS(recipe_error(R"({"augment": {"flip": "vertical"}})"),
                  "unknown augment.flip 'vertical'; valid: none, random, alternate");
  EXPECT_CONTAINS(recipe_error(R"({"weight_averaging": {"method": "swa"}})"),
                  "unknown method 'swa'; valid methods: ema, lookahead");
}

nlohmann::json tiny_model_json() {
  return nlohmann::json::parse(R"({"input_shape": [1, 4, 4], "layers": [{"type": "Flatten"},
      {"type": "Dense", "units": 2, "activation": "softmax"}], "compile": {"loss": "scce"}})");
}

TEST(TrainingRecipe, AModelFileWithABadSectionDoesNotLoad) {
  nlohmann::json j = tiny_model_json();
  j["training"] = {{"batch_size", 0}};
  EXPECT_CONTAINS(error_of([&] { Sequential::from_json(j); }), "training.batch_size must be an integer in [1, ");
  j["training"] = {{"validation_split", std::numeric_limits<double>::quiet_NaN()}};
  EXPECT_CONTAINS(error_of([&] { Sequential::from_json(j); }), "training.validation_split must be a finite number");
  const std::string path = testing::TempDir() + "recipe_bad.json";
  {
    std::ofstream(path) << R"({"input_shape": [1, 4, 4], "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 2}],
                            "training": {"epochs": -3}})";
  }
  EXPECT_CONTAINS(error_of([&] { Sequential::from_json_file(path); }), "training.epochs must be a finite number in [0, ");
  EXPECT_CONTAINS(error_of([&] { read_training_recipe_file(path); }), "recipe_bad.json': training.epochs");
  {
    std::ofstream(path) << R"({"input_shape": [1, 4, 4], "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 2}],
                            "training": {"validation_split": 1e999}})";
  }
  EXPECT_CONTAINS(error_of([&] { read_training_recipe_file(path); }), "number overflow parsing '1e999'");
  std::remove(path.c_str());
}

// ---- NaN and infinity in the C++ options ------------------------------------------------------

TEST(NonFiniteOptions, CompileRefusesEveryFloat) {
  struct Case {
    const char* name;
    float CompileOptions::*field;
  };
  const Case cases[] = {{"learning_rate", &CompileOptions::learning_rate}, {"momentum", &CompileOptions::momentum},
                        {"betas", &CompileOptions::beta1},                 {"betas", &CompileOptions::beta2},
                        {"epsilon", &CompileOptions::epsilon},             {"weight_decay", &CompileOptions::weight_decay},
                        {"label_smoothing", &CompileOptions::label_smoothing},
                        {"bias_lr_scale", &CompileOptions::bias_lr_scale}};
  for (const Case& c : cases)
    for (float bad : {kNaN, kInf, -kInf}) {
      Sequential m({Flatten(), Dense(2, "softmax")});
      CompileOptions o;
      o.loss = "scce";
      o.input_shape = {1, 2, 2};
      o.*c.field = bad;
      const std::string option = c.name == std::string("betas") ? "Adam betas" : c.name;
      EXPECT_CONTAINS(error_of([&] { m.compile(o); }), "compile: " + option);
    }
}

TEST(NonFiniteOptions, CompileSectionOfADocumentRefusesThem) {
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(), 1e300})
    for (const char* key : {"learning_rate", "momentum", "beta1", "beta2", "epsilon", "weight_decay",
                            "label_smoothing", "bias_lr_scale"}) {
      nlohmann::json j = tiny_model_json();
      j["compile"][key] = bad;
      EXPECT_CONTAINS(error_of([&] { Sequential::from_json(j); }),
                      std::string("compile option \"") + key + "\" must be a finite number");
    }
}

TEST(NonFiniteOptions, FitRefusesNonFiniteNumbers) {
  const auto data = test::make_quadrant_data(16, 1, 4, 4, 3);
  Sequential m({Flatten(), Dense(4, "softmax")});
  m.compile("sgd", "scce", 0.1f, {1, 4, 4});
  auto fit_error = [&](const FitOptions& f) { return error_of([&] { m.fit(data.x, data.y, f); }); };
  FitOptions f;
  f.verbose = 0;
  f.validation_split = kNaN;
  EXPECT_CONTAINS(fit_error(f), "fit: validation_split must be in [0, 1), got nan");
  f.validation_split = 0;
  for (float LRSchedule::*field : {&LRSchedule::gamma, &LRSchedule::min_factor, &LRSchedule::start_factor,
                                   &LRSchedule::end_factor}) {
    for (float bad : {kNaN, kInf}) {
      FitOptions g = f;
      g.lr_schedule.*field = bad;
      EXPECT_CONTAINS(fit_error(g), "fit: lr_schedule factors must be finite");
    }
  }
  FitOptions w = f;
  w.lr_schedule.warmup = kNaN;
  EXPECT_CONTAINS(fit_error(w), "fit: lr_schedule.warmup must be in [0, 1)");
  FitOptions p = f;
  p.patch_whitening.eps = std::numeric_limits<double>::infinity();
  EXPECT_CONTAINS(fit_error(p), "fit: patch_whitening.eps must be finite");
  p.patch_whitening.eps = 5e-4;
  p.patch_whitening.images = 0;
  EXPECT_CONTAINS(fit_error(p), "fit: patch_whitening.images must be >= 1");
  for (float bad : {kNaN, kInf}) {
    FitOptions a = f;
    a.weight_averaging = WeightAveragingOptions{"ema", bad};
    EXPECT_CONTAINS(fit_error(a), "weight_averaging: decay must be in [0, 1)");
    a.weight_averaging = WeightAveragingOptions{"lookahead", 0.9f, 5, bad};
    EXPECT_CONTAINS(fit_error(a), "weight_averaging: alpha must be in (0, 1]");
  }
}

TEST(NonFiniteOptions, LayersRefuseNonFiniteNumbers) {
  for (float bad : {kNaN, kInf}) {
    Conv2DOptions c;
    c.filters = 2;
    c.activation = "leaky_relu";
    c.alpha = bad;
    EXPECT_CONTAINS(error_of([&] { (void)Conv2D(c); }), "Conv2D: leaky_relu alpha must be >= 0");
    DenseOptions d;
    d.units = 2;
    d.alpha = bad;
    EXPECT_CONTAINS(error_of([&] { (void)Dense(d); }), "Dense: leaky_relu alpha must be >= 0");
    d.alpha = 0.3f;
    d.scale = bad;
    EXPECT_CONTAINS(error_of([&] { (void)Dense(d); }), "Dense: scale must be finite");
    EXPECT_CONTAINS(error_of([&] { (void)ActivationLayer("leaky_relu", bad); }), "Activation: leaky_relu alpha must be >= 0");
    EXPECT_CONTAINS(error_of([&] { (void)Dropout(bad); }), "Dropout: rate must be in [0, 1)");
    BatchNormOptions b;
    b.momentum = bad;
    EXPECT_CONTAINS(error_of([&] { (void)BatchNormalization(b); }), "BatchNormalization: momentum");
    b.momentum = 0.1f;
    b.epsilon = bad;
    EXPECT_CONTAINS(error_of([&] { (void)BatchNormalization(b); }), "BatchNormalization: epsilon must be > 0");
  }
}

TEST(NonFiniteOptions, LayerOptionsOfADocumentRefuseThem) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type": "Conv2D", "filters": 2, "kernel_size": 1})", "alpha"},
      {R"({"type": "Dense", "units": 2})", "alpha"},
      {R"({"type": "Dense", "units": 2})", "scale"},
      {R"({"type": "Activation", "activation": "leaky_relu"})", "alpha"},
      {R"({"type": "BatchNormalization"})", "epsilon"},
      {R"({"type": "BatchNormalization"})", "momentum"},
      {R"({"type": "Dropout"})", "rate"}};
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::infinity()})
    for (const auto& [layer, key] : cases) {
      nlohmann::json j = tiny_model_json();
      j["input_shape"] = {2, 4, 4};
      nlohmann::json l = nlohmann::json::parse(layer);
      l[key] = bad;
      j["layers"].insert(j["layers"].begin(), l);
      EXPECT_CONTAINS(error_of([&] { Sequential::from_json(j); }), std::string("\"") + key + "\" must be a finite number")
          << layer << " " << key << " = " << bad;
    }
}

// ---- patch whitening at fit time -------------------------------------------------------------

nlohmann::json whitening_json() {
  return nlohmann::json::parse(R"({"input_shape": [3, 8, 8], "layers": [
      {"type": "Conv2D", "filters": 24, "kernel_size": 2, "kernel_initializer": "patch_whitening", "trainable": false},
      {"type": "Activation", "activation": "gelu"},
      {"type": "GlobalAveragePooling2D"},
      {"type": "Dense", "units": 4}],
    "compile": {"optimizer": "sgd", "loss": "scce", "from_logits": true, "learning_rate": 0.1}})");
}

std::vector<float> conv_weight(const Sequential& m) {
  for (const auto& [name, t] : m.weights())
    if (name == "layers.0.conv2d.weight") return t.to_vector();
  ADD_FAILURE() << "no layer 0 weight";
  return {};
}

TEST(FitWhitening, FitWhitensFreshWeightsFromTheImagesItTrainsOn) {
  const auto data = test::make_quadrant_data(40, 3, 8, 8, 11);
  FitOptions f;
  f.epochs = 0;  // only the initialisation
  f.verbose = 0;
  f.validation_split = 0.25f;
  f.patch_whitening.images = 20;
  Sequential by_fit = Sequential::from_json(whitening_json());
  EXPECT_TRUE(by_fit.weights_fresh());
  const std::vector<float> glorot = conv_weight(by_fit);
  by_fit.fit(data.x, data.y, f);
  EXPECT_FALSE(by_fit.weights_fresh());
  // By hand: the first 20 of the 30 images before the validation split, eps relative.
  Sequential by_hand = Sequential::from_json(whitening_json());
  init_patch_whitening(by_hand, 0, data.x.slice(0, 20), 5e-4, true);
  EXPECT_NE(conv_weight(by_fit), glorot);
  EXPECT_EQ(conv_weight(by_fit), conv_weight(by_hand));
  // The validation split caps the images: 30 training images when 40 are asked for.
  f.patch_whitening.images = 40;
  Sequential capped = Sequential::from_json(whitening_json());
  capped.fit(data.x, data.y, f);
  Sequential capped_by_hand = Sequential::from_json(whitening_json());
  init_patch_whitening(capped_by_hand, 0, data.x.slice(0, 30), 5e-4, true);
  EXPECT_EQ(conv_weight(capped), conv_weight(capped_by_hand));
}

TEST(FitWhitening, OnlyFreshWeightsAreWhitened) {
  const auto data = test::make_quadrant_data(24, 3, 8, 8, 12);
  FitOptions f;
  f.epochs = 0;
  f.verbose = 0;
  // After set_weights (as after load or a checkpoint restore): the given weights stay.
  Sequential given = Sequential::from_json(whitening_json());
  given.set_weights(given.weights());
  EXPECT_FALSE(given.weights_fresh());
  const std::vector<float> before = conv_weight(given);
  EXPECT_TRUE(apply_data_dependent_initializers(given, data.x, f).empty());
  given.fit(data.x, data.y, f);
  EXPECT_EQ(conv_weight(given), before);
  // A second fit does not whiten again (the weights are trained by then).
  Sequential twice = Sequential::from_json(whitening_json());
  const auto reports = apply_data_dependent_initializers(twice, data.x, f);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].layer, 0u);
  EXPECT_EQ(reports[0].images, 24);
  EXPECT_EQ(reports[0].eigenvalues.size(), 12u);
  EXPECT_CONTAINS(reports[0].describe(), "Whitened layer 0 (Conv2D) with the patches of 24 training images in ");
  EXPECT_CONTAINS(reports[0].describe(), ", eps 5e-4 x the mean)");
  const std::vector<float> whitened = conv_weight(twice);
  EXPECT_TRUE(apply_data_dependent_initializers(twice, data.x.slice(0, 13), f).empty());
  twice.fit(data.x, data.y, f);
  EXPECT_EQ(conv_weight(twice), whitened);
  // Nor after a step of train_on_batch.
  Sequential stepped = Sequential::from_json(whitening_json());
  stepped.train_on_batch(data.x.slice(0, 8), data.y.slice(0, 8));
  EXPECT_FALSE(stepped.weights_fresh());
  EXPECT_TRUE(apply_data_dependent_initializers(stepped, data.x, f).empty());
  // A model loaded from a file keeps its weights too.
  const std::string path = testing::TempDir() + "recipe_whitened.safetensors";
  twice.save(path);
  Sequential loaded = Sequential::load(path);
  std::remove(path.c_str());
  EXPECT_FALSE(loaded.weights_fresh());
  loaded.fit(data.x.slice(0, 13), data.y.slice(0, 13), f);
  EXPECT_EQ(conv_weight(loaded), whitened);
}

// ---- set_optimizer ---------------------------------------------------------------------------

TEST(SetOptimizer, SwitchingTrainsLikeCompilingWithTheNewOptimizer) {
  const auto data = test::make_quadrant_data(32, 1, 6, 6, 5);
  auto make = [](const std::string& optimizer, float momentum) {
    Sequential m({Flatten(), Dense(8, "relu"), Dense(4, "softmax")});
    CompileOptions o;
    o.optimizer = optimizer;
    o.loss = "scce";
    o.learning_rate = 0.01f;
    o.momentum = momentum;
    o.input_shape = {1, 6, 6};
    m.compile(o);
    return m;
  };
  FitOptions f;
  f.epochs = 2;
  f.batch_size = 8;
  f.verbose = 0;
  for (const auto& [optimizer, momentum] : std::vector<std::pair<std::string, float>>{{"adam", 0.0f}, {"sgd", 0.9f}}) {
    Sequential compiled = make(optimizer, momentum);
    Sequential switched = make(optimizer == "adam" ? "sgd" : "adam", 0.0f);
    switched.train_on_batch(data.x.slice(0, 8), data.y.slice(0, 8));  // leaves optimizer state behind
    switched.set_weights(compiled.weights());
    CompileOptions o = switched.compile_options();
    o.optimizer = optimizer;
    o.momentum = momentum;
    switched.set_optimizer(o);
    EXPECT_EQ(switched.compile_options().optimizer, optimizer);
    EXPECT_EQ(switched.compile_options().momentum, momentum);
    EXPECT_EQ(switched.parameters().to_vector(), compiled.parameters().to_vector());
    compiled.fit(data.x, data.y, f);
    switched.fit(data.x, data.y, f);
    EXPECT_EQ(switched.parameters().to_vector(), compiled.parameters().to_vector()) << optimizer;
  }
}

TEST(SetOptimizer, RefusesBadOptions) {
  Sequential m({Flatten(), Dense(2, "softmax")});
  m.compile("sgd", "scce", 0.1f, {1, 2, 2});
  CompileOptions o = m.compile_options();
  o.optimizer = "rmsprop";
  EXPECT_CONTAINS(error_of([&] { m.set_optimizer(o); }), "unknown optimizer 'rmsprop'");
  o.optimizer = "adam";
  o.learning_rate = kNaN;
  EXPECT_CONTAINS(error_of([&] { m.set_optimizer(o); }), "learning_rate must be > 0");
  EXPECT_EQ(m.compile_options().optimizer, "sgd");  // unchanged after a refusal
  Sequential uncompiled({Flatten(), Dense(2)});
  EXPECT_CONTAINS(error_of([&] { uncompiled.set_optimizer(CompileOptions{}); }), "compile the model first");
}

}  // namespace
}  // namespace cnn
