// `cnn train`'s options, run as a program: every float flag refuses NaN and infinity naming
// the flag; a model file's bad "training" section fails with the key named; and the library
// trains exactly what the CLI trains: from_json_file + read_training_recipe_file + fit gives
// bit-identical weights to `cnn train --model FILE` (LeNet-5 and airbench94, a few steps on
// the CPU), also when the optimizer is changed from the command line for a saved model.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "cnn/pictures.hpp"
#include "cnn/rng.hpp"
#include "cli_runner.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

const std::string kModels = CNN_SOURCE_DIR "/models/";

using namespace cli_test;

// Four classes of 32x32 RGB noise with a bright quadrant, 6 training and 1 test image each.
const fs::path& image_data() {
  static const fs::path dir = [] {
    const fs::path d = scratch() / "images";
    Rng rng(3);
    for (const char* split : {"train", "test"}) {
      const int n = std::string(split) == "train" ? 6 : 1;
      for (int k = 0; k < 4; ++k) {
        const fs::path folder = d / split / ("class" + std::to_string(k));
        fs::create_directories(folder);
        for (int i = 0; i < n; ++i) {
          Image img(32, 32);
          for (int y = 0; y < 32; ++y)
            for (int x = 0; x < 32; ++x) {
              const bool bright = (y / 16) * 2 + x / 16 == k;
              const auto v = [&] { return uint8_t(rng.below(100) + (bright ? 150 : 0)); };
              img.set(x, y, Color{v(), v(), v()});
            }
          save_png(img, (folder / (std::to_string(i) + ".png")).string());
        }
      }
    }
    return d;
  }();
  return dir;
}

std::string train_args(const std::string& model) {
  return "train --model " + quoted(model) + " --data " + quoted(image_data().string()) + " --verbose 0";
}

// ---- float flags --------------------------------------------------------------------------

TEST(CliFloatFlags, NanAndInfinityAreRefusedNamingTheFlag) {
  for (const char* flag : {"--lr", "--momentum", "--validation-split", "--ema"}) {
    for (const char* value : {"nan", "NaN", "inf", "-inf", "1e999"}) {
      const Result r = cnn(train_args(kModels + "lenet5.json") + " --epochs 1 " + flag + " " + value);
      EXPECT_EQ(r.code, 2) << flag << " " << value << "\n" << show(r);
      EXPECT_NE(r.err.find(std::string(flag) + ": must be a finite number, got " + value), std::string::npos)
          << show(r);
      EXPECT_EQ(r.out.find("Training"), std::string::npos) << show(r);
    }
  }
}

TEST(CliFloatFlags, FiniteValuesStillMeetTheRangeChecks) {
  Result r = cnn(train_args(kModels + "lenet5.json") + " --momentum 1.5");
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_NE(r.err.find("--momentum"), std::string::npos) << show(r);
  r = cnn(train_args(kModels + "lenet5.json") + " --lr 0");
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_NE(r.err.find("--lr"), std::string::npos) << show(r);
}

// ---- the model file's training section ---------------------------------------------------------

TEST(CliTrainingSection, BadValuesFailNamingTheKey) {
  const nlohmann::json lenet = nlohmann::json::parse(read_text(kModels + "lenet5.json"));
  const std::pair<const char*, const char*> cases[] = {
      {R"({"epochs": -3})", "training.epochs must be a finite number in [0, 1e+06], got -3"},
      {R"({"batch_size": 0})", "training.batch_size must be an integer in [1, "},
      {R"({"validation_split": 1.5})", "training.validation_split must be a finite number in [0, 1), got 1.5"},
      {R"({"validation_split": 1e999})", "number overflow parsing '1e999'"},
      {R"({"epochs": 2, "speed": 3})", "training: unknown key \"speed\"; valid keys: epochs"},
      {R"({"augment": {"flip": "vertical"}})", "unknown augment.flip 'vertical'; valid: none, random, alternate"},
      {R"({"lr_schedule": {"kind": "sawtooth"}})", "unknown lr_schedule 'sawtooth'; valid schedules"},
      {R"({"lr_schedule": {"gamma": -1}})", "training.lr_schedule.gamma must be a finite number in [0, "},
      {R"({"batch_size": "32"})", "training.batch_size must be an integer"},
      {R"({"shuffle": "yes"})", "training.shuffle must be true or false"},
      {R"({"weight_averaging": {"decay": 1}})", "training.weight_averaging.decay must be a finite number in [0, 1)"}};
  int i = 0;
  for (const auto& [section, message] : cases) {
    // Spliced in as text: this JSON library would refuse 1e999 in the test itself.
    nlohmann::json j = lenet;
    j["training"] = "SECTION";
    std::string text = j.dump();
    text.replace(text.find("\"SECTION\""), 9, section);
    const fs::path file = scratch() / ("bad_training_" + std::to_string(i++) + ".json");
    std::ofstream(file) << text;
    const Result r = cnn(train_args(file.string()) + " --epochs 1");
    EXPECT_EQ(r.code, 1) << section << "\n" << show(r);
    EXPECT_NE(r.err.find(message), std::string::npos) << section << "\n" << show(r);
    EXPECT_EQ(r.out.find("Training"), std::string::npos) << show(r);
  }
}

// ---- the library trains what the CLI trains ---------------------------------------------------

void expect_same_weights(const Sequential& a, const Sequential& b, const std::string& what) {
  const auto wa = a.weights(), wb = b.weights();
  ASSERT_EQ(wa.size(), wb.size()) << what;
  for (size_t i = 0; i < wa.size(); ++i) {
    EXPECT_EQ(wa[i].first, wb[i].first) << what;
    EXPECT_EQ(wa[i].second.to_vector(), wb[i].second.to_vector()) << what << ": " << wa[i].first << " differs";
  }
}

// The environment that makes a child `cnn` use this process's CPU fast path: under valgrind,
// whose virtual CPU has no AVX-512, this process runs the AVX2 kernels while a child left
// alone would pick AVX-512 (each correct, different in the last bits).
std::string this_process_isa() { return std::string("CNN_CPU_ISA=") + cpu_instruction_set(); }

// `cnn train --model FILE --epochs 1 --batch-size 8`, then the same through the library.
void expect_library_trains_like_the_cli(const std::string& model_file, const std::string& name) {
  const fs::path saved = scratch() / (name + "_cli.safetensors");
  const Result r =
      cnn(train_args(model_file) + " --epochs 1 --batch-size 8 --save " + quoted(saved.string()), this_process_isa());
  ASSERT_EQ(r.code, 0) << show(r);
  const Sequential by_cli = Sequential::load(saved.string());

  Sequential by_library = Sequential::from_json_file(model_file);
  TrainingRecipe recipe = read_training_recipe_file(model_file);
  recipe.fit.epochs = 1;
  recipe.fit.batch_size = 8;
  recipe.fit.verbose = 0;
  const Dataset train = load_image_folder((image_data() / "train").string(), 3, 32, 32);
  const std::vector<float> initial = by_library.parameters().to_vector();
  by_library.fit(train.x, train.y, recipe.fit);
  EXPECT_NE(by_library.parameters().to_vector(), initial) << name << ": fit changed nothing";
  expect_same_weights(by_cli, by_library, name);
}

TEST(LibraryTrainsLikeTheCli, LeNet5) { expect_library_trains_like_the_cli(kModels + "lenet5.json", "lenet5"); }

// Patch whitening at fit time, BatchNorm, the alternating flip, translation and onecycle.
TEST(LibraryTrainsLikeTheCli, Airbench94) {
  expect_library_trains_like_the_cli(kModels + "airbench94.json", "airbench94");
}

// A saved model trained further with another optimizer: the weights are kept (no recompile),
// and the optimizer is the one asked for.
TEST(LibraryTrainsLikeTheCli, SavedModelWithAnotherOptimizer) {
  const fs::path first = scratch() / "lenet5_first.safetensors", second = scratch() / "lenet5_second.safetensors";
  Result r = cnn(train_args(kModels + "lenet5.json") + " --epochs 1 --batch-size 8 --save " + quoted(first.string()),
                 this_process_isa());
  ASSERT_EQ(r.code, 0) << show(r);
  r = cnn(train_args(first.string()) + " --epochs 1 --batch-size 8 --optimizer sgd --momentum 0.5 --lr 0.02 --save " +
              quoted(second.string()),
          this_process_isa());
  ASSERT_EQ(r.code, 0) << show(r);
  const Sequential by_cli = Sequential::load(second.string());
  EXPECT_EQ(by_cli.compile_options().optimizer, "sgd");
  EXPECT_FLOAT_EQ(by_cli.compile_options().momentum, 0.5f);
  EXPECT_FLOAT_EQ(by_cli.compile_options().learning_rate, 0.02f);

  Sequential by_library = Sequential::load(first.string());
  CompileOptions o = by_library.compile_options();
  o.optimizer = "sgd";
  o.momentum = 0.5f;
  o.learning_rate = 0.02f;
  by_library.set_optimizer(o);
  TrainingRecipe recipe = read_training_recipe_file(first.string());  // a saved model: the defaults
  recipe.fit.epochs = 1;
  recipe.fit.batch_size = 8;
  recipe.fit.verbose = 0;
  const Dataset train = load_image_folder((image_data() / "train").string(), 3, 32, 32);
  by_library.fit(train.x, train.y, recipe.fit);
  expect_same_weights(by_cli, by_library, "saved lenet5 with sgd");
}

}  // namespace
}  // namespace cnn
