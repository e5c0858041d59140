// The `cnn` command line, run as a program: the picture commands (show-data, plot, eval
// --confusion/--mistakes, visualize) on a tiny image-folder data set made here, each PNG decoded
// and checked for its documented size; and the exit codes (0 success, 1 bad files, 2 bad
// arguments with the usage printed, 3 `check` without a GPU).
#include <gtest/gtest.h>
#include <stb/stb_image.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cnn/cnn.hpp"
#include "cnn/pictures.hpp"
#include "cnn/rng.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

const std::string kCnn = CNN_BINARY_DIR "/cnn";
const std::string kLeNet = CNN_SOURCE_DIR "/models/lenet5.json";

// This process's scratch folder, removed when the tests end.
const fs::path& scratch() {
  struct Dir {
    fs::path path = fs::temp_directory_path() / ("cnn_cli_test_" + std::to_string(::getpid()));
    Dir() { fs::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  };
  static Dir dir;
  return dir.path;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Result {
  int code = -1;
  std::string out, err;
};

// Runs `cnn <args>` in the scratch folder; stdout and stderr are captured separately.
Result cnn(const std::string& args) {
  if (!fs::exists(kCnn)) {
    ADD_FAILURE() << kCnn << " does not exist: build the command line (target cnn_cli) before the tests";
    return {};
  }
  static std::atomic<int> counter{0};
  const std::string id = std::to_string(counter++);
  const fs::path out = scratch() / ("stdout_" + id), err = scratch() / ("stderr_" + id);
  const std::string cmd = "cd " + quoted(scratch().string()) + " && " + quoted(kCnn) + " " + args + " >" +
                          quoted(out.string()) + " 2>" + quoted(err.string());
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

std::string show(const Result& r) {
  return "exit " + std::to_string(r.code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The PNG's size as stb_image decodes it ({0, 0} when it does not decode).
struct Png {
  int width = 0, height = 0;
  Image image;
};
Png decode(const fs::path& p) {
  Png png;
  int n = 0;
  unsigned char* px = stbi_load(p.c_str(), &png.width, &png.height, &n, 3);
  if (px == nullptr) {
    ADD_FAILURE() << p << " does not decode: " << stbi_failure_reason();
    return {};
  }
  png.image = Image(png.width, png.height);
  std::copy(px, px + 3 * size_t(png.width) * size_t(png.height), png.image.pixels.begin());
  stbi_image_free(px);
  return png;
}

#define EXPECT_PNG_SIZE(path, w, h)                             \
  do {                                                          \
    const Png png_ = decode(path);                              \
    EXPECT_EQ(png_.width, (w)) << (path);                       \
    EXPECT_EQ(png_.height, (h)) << (path);                      \
  } while (0)

// A tiny image folder: train/ and test/ with 3 classes of 32x32 RGB PNGs; class k has a bright
// block of its colour in quadrant k over noise.
const std::vector<std::string> kClasses = {"blue", "green", "red"};
constexpr int kTrainPerClass = 8, kTestPerClass = 4;

const fs::path& tiny_data() {
  static const fs::path dir = [] {
    const fs::path d = scratch() / "tiny";
    Rng rng(7);
    for (const char* split : {"train", "test"}) {
      const int n = std::string(split) == "train" ? kTrainPerClass : kTestPerClass;
      for (int k = 0; k < int(kClasses.size()); ++k) {
        fs::create_directories(d / split / kClasses[size_t(k)]);
        for (int i = 0; i < n; ++i) {
          Image img(32, 32);
          for (int y = 0; y < 32; ++y)
            for (int x = 0; x < 32; ++x) {
              const auto noise = [&] { return uint8_t(rng.below(90)); };
              Color c{noise(), noise(), noise()};
              if ((y / 16) * 2 + x / 16 == k) {
                if (k == 0) c.b = 255;
                if (k == 1) c.g = 255;
                if (k == 2) c.r = 255;
              }
              img.set(x, y, c);
            }
          save_png(img, (d / split / kClasses[size_t(k)] / (std::to_string(i) + ".png")).string());
        }
      }
    }
    return d;
  }();
  return dir;
}

// LeNet-5 trained for 2 epochs on the tiny data by `cnn train --log`: the saved model and the CSV.
struct Trained {
  fs::path model, log;
  Result run;
};
const Trained& trained() {
  static const Trained t = [] {
    Trained r;
    r.model = scratch() / "lenet5_tiny.safetensors";
    r.log = scratch() / "metrics.csv";
    r.run = cnn("train --model " + quoted(kLeNet) + " --data " + quoted(tiny_data().string()) +
                " --epochs 2 --batch-size 8 --validation-split 0.25 --verbose 0 --save " + quoted(r.model.string()) +
                " --log " + quoted(r.log.string()));
    return r;
  }();
  return t;
}

Dataset tiny_split(const std::string& split) { return load_image_folder((tiny_data() / split).string(), 3, 32, 32); }

// ---- show-data ------------------------------------------------------------------------------
TEST(CliShowData, DrawsPerClassRowsOfAnImageFolder) {
  const fs::path out = scratch() / "samples.png";
  const Result r = cnn("show-data --data " + quoted(tiny_data().string()) +
                       " --size 32 --per-class 3 --scale 2 --out " + quoted(out.string()));
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(contains(r.out, "Wrote")) << show(r);
  const Dataset train = tiny_split("train");
  const GridLayout g = data_grid_layout(train, 3, 2);
  const Png png = decode(out);
  ASSERT_EQ(png.width, g.width);
  ASSERT_EQ(png.height, g.height);
  // The first tile of each row is the first image of that class, upscaled 2x.
  const std::vector<float> labels = train.y.to_vector();
  for (int c = 0; c < int(kClasses.size()); ++c) {
    const int64_t first = std::find(labels.begin(), labels.end(), float(c)) - labels.begin();
    const Image expected = tensor_image(train.x.slice(first, first + 1), 2);
    const Rect cell = g.cell(c, 0);
    int differing = 0;
    for (int y = 0; y < cell.h; ++y)
      for (int x = 0; x < cell.w; ++x) differing += png.image.get(cell.x + x, cell.y + y) == expected.get(x, y) ? 0 : 1;
    EXPECT_EQ(differing, 0) << "class " << kClasses[size_t(c)];
  }
}

TEST(CliShowData, TestSplitAndDefaults) {
  const fs::path out = scratch() / "samples_test.png";
  const Result r =
      cnn("show-data --data " + quoted(tiny_data().string()) + " --size 32 --split test --out " + quoted(out.string()));
  ASSERT_EQ(r.code, 0) << show(r);
  const GridLayout g = data_grid_layout(tiny_split("test"), 10, 2);  // defaults: 10 per class, scale 2
  EXPECT_PNG_SIZE(out, g.width, g.height);
}

TEST(CliShowData, AnImageFolderNeedsASize) {
  const Result r = cnn("show-data --data " + quoted(tiny_data().string()) + " --out x.png");
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_TRUE(contains(r.err, "--size")) << show(r);
  EXPECT_TRUE(contains(r.err, "Usage: cnn show-data")) << show(r);
  EXPECT_FALSE(fs::exists(scratch() / "x.png"));
}

// ---- plot -----------------------------------------------------------------------------------
TEST(CliPlot, DrawsTheCurvesOfARealTrainingRun) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  const auto epochs = read_metrics_csv(t.log.string());
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_FALSE(std::isnan(epochs[1].val_loss));
  const fs::path plain = scratch() / "curves.png", titled = scratch() / "curves_titled.png";
  Result r = cnn("plot --log " + quoted(t.log.string()) + " --out " + quoted(plain.string()));
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_PNG_SIZE(plain, kCurvesWidth, kCurvesHeight);
  r = cnn("plot --log " + quoted(t.log.string()) + " --title 'LeNet-5, tiny data' --out " + quoted(titled.string()));
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_PNG_SIZE(titled, kCurvesWidth, kCurvesHeight + text_height(kTitleSize) + kPad);
}

TEST(CliPlot, AMissingOrMalformedLogIsOneErrorLine) {
  Result r = cnn("plot --log no_such.csv --out c.png");
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_TRUE(r.err.starts_with("cnn: error: ") && std::count(r.err.begin(), r.err.end(), '\n') == 1) << show(r);
  EXPECT_TRUE(contains(r.err, "no_such.csv")) << show(r);
  std::ofstream(scratch() / "bad.csv") << "epoch,loss,accuracy\n1,0.5,zero\n";
  r = cnn("plot --log bad.csv --out c.png");
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_TRUE(r.err.starts_with("cnn: error: ")) << show(r);
  EXPECT_FALSE(fs::exists(scratch() / "c.png"));
}

// ---- eval --confusion --mistakes ------------------------------------------------------------
TEST(CliEval, DrawsTheConfusionMatrixAndMistakes) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  const fs::path confusion = scratch() / "confusion.png", mistakes = scratch() / "mistakes.png";
  const Result r = cnn("eval --model " + quoted(t.model.string()) + " --data " + quoted(tiny_data().string()) +
                       " --confusion " + quoted(confusion.string()) + " --mistakes " + quoted(mistakes.string()) +
                       " --mistakes-count 5");
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(contains(r.out, "Test: loss")) << show(r);  // the usual report is still there
  EXPECT_TRUE(contains(r.out, "Confusion matrix")) << show(r);

  // The same evaluation here gives the expected geometry. The model has 10 outputs and the data
  // 3 classes: the other 7 are named by number.
  Sequential model = Sequential::load(t.model.string());
  const Dataset test = tiny_split("test");
  const Evaluation ev = model.evaluate(test.x, test.y, EvaluateOptions{.per_class = true});
  std::vector<std::string> names = kClasses;
  for (size_t c = names.size(); c < ev.confusion.size(); ++c) names.push_back(std::to_string(c));
  const GridLayout cg = confusion_matrix_layout(ev.confusion, names);
  EXPECT_PNG_SIZE(confusion, cg.width, cg.height);

  const Tensor p = model.predict(test.x);
  const std::vector<float> probs = p.to_vector(), labels = test.y.to_vector();
  std::vector<int> truth, predicted;
  for (int64_t i = 0; i < test.size(); ++i) {
    const float* row = probs.data() + i * p.dim(1);
    predicted.push_back(int(std::max_element(row, row + p.dim(1)) - row));
    truth.push_back(int(labels[size_t(i)]));
  }
  const GridLayout mg = mistakes_grid_layout(test.x, truth, predicted, names, 5, 2);
  EXPECT_PNG_SIZE(mistakes, mg.width, mg.height);
}

TEST(CliEval, WithoutPictureOptionsWritesNoPictures) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  const Result r = cnn("eval --model " + quoted(t.model.string()) + " --data " + quoted(tiny_data().string()));
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_FALSE(contains(r.out, "Wrote")) << show(r);
}

// ---- visualize ------------------------------------------------------------------------------
// The picture `cnn visualize` documents: a title line, then filters_image of the first conv
// layer (tiles about 20 * scale pixels) shifted right so that its tiles start at the feature
// maps' label column L, then feature_maps_image of every conv layer at x = 0.
void expect_visualize_size(const fs::path& png, const fs::path& model_path, const Tensor& x,
                           const std::string& image_name, int scale) {
  Sequential model = Sequential::load(model_path.string());
  const std::vector<Tensor> outs = model.layer_outputs(x);
  const Tensor w = model.weights()[0].second;
  ASSERT_EQ(model.weights()[0].first, "layers.0.conv2d.weight");
  const GridLayout fl = filters_layout(w.shape(), std::max(1, int(20 * scale / w.dim(2))));
  const auto ml = feature_maps_layout({{"conv2d_1 (relu)", outs[0]}, {"conv2d_2 (relu)", outs[2]}}, scale, x);
  const std::string title = model_path.filename().string() + ": filters and feature maps for " + image_name;
  const int width =
      std::max({ml[0].origin_x - kMargin + fl.width, ml[0].width, 2 * kMargin + text_width(title, kTitleSize)});
  const int height = kMargin + text_height(kTitleSize) + fl.height + ml[0].height;
  EXPECT_PNG_SIZE(png, width, height);
}

TEST(CliVisualize, DrawsFiltersAndFeatureMapsForAnImage) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  const fs::path image = tiny_data() / "test" / "red" / "0.png", out = scratch() / "features.png";
  const Result r = cnn("visualize --model " + quoted(t.model.string()) + " --image " + quoted(image.string()) +
                       " --out " + quoted(out.string()));
  ASSERT_EQ(r.code, 0) << show(r);
  expect_visualize_size(out, t.model, load_image(image.string(), 3, 32, 32), "0.png", 2);
}

TEST(CliVisualize, DefaultsToTheFirstTestImageOfTheData) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  const fs::path out = scratch() / "features_default.png";
  const Result r = cnn("visualize --model " + quoted(t.model.string()) + " --data " + quoted(tiny_data().string()) +
                       " --scale 3 --out " + quoted(out.string()));
  ASSERT_EQ(r.code, 0) << show(r);
  expect_visualize_size(out, t.model, tiny_split("test").x.slice(0, 1), "test image 0 (blue)", 3);
}

// ---- exit codes -----------------------------------------------------------------------------
void expect_usage_error(const Result& r, const std::string& subcommand, const std::string& mentioning) {
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_TRUE(contains(r.err, mentioning)) << show(r);
  EXPECT_TRUE(contains(r.err, "Usage: cnn " + subcommand)) << show(r);
}

TEST(CliExitCodes, BadArgumentsExit2WithUsage) {
  expect_usage_error(cnn("eval --model m.safetensors --bogus"), "eval", "--bogus");
  expect_usage_error(cnn("eval"), "eval", "--model");
  expect_usage_error(cnn("summary"), "summary", "--model");
  expect_usage_error(cnn("train --model " + quoted(kLeNet) + " --device tpu"), "train", "tpu");
  expect_usage_error(cnn("plot --log m.csv"), "plot", "--out");
  expect_usage_error(cnn("show-data --out s.png --split validation"), "show-data", "validation");
  expect_usage_error(cnn("no-such-command"), "", "subcommand");
  expect_usage_error(cnn(""), "", "subcommand");
}

void expect_one_error_line(const Result& r, const std::string& mentioning) {
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_TRUE(r.err.starts_with("cnn: error: ")) << show(r);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << show(r);
  EXPECT_TRUE(contains(r.err, mentioning)) << show(r);
}

TEST(CliExitCodes, BadFilesExit1WithOneErrorLine) {
  expect_one_error_line(cnn("eval --model missing.safetensors"), "missing.safetensors");
  expect_one_error_line(cnn("visualize --model missing.safetensors --out f.png"), "missing.safetensors");
  {
    std::ofstream corrupt(scratch() / "corrupt.safetensors", std::ios::binary);
    corrupt << std::string("\x20\x00\x00\x00\x00\x00\x00\x00{\"not\": \"a model\"", 25) << std::string(40, '\x7f');
  }
  expect_one_error_line(cnn("eval --model corrupt.safetensors"), "corrupt.safetensors");
  {
    std::ofstream junk(scratch() / "junk.json");
    junk << "{ this is not json";
  }
  expect_one_error_line(cnn("summary --model junk.json"), "junk.json");
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  fs::copy_file(t.model, scratch() / "truncated.safetensors", fs::copy_options::overwrite_existing);
  fs::resize_file(scratch() / "truncated.safetensors", fs::file_size(t.model) / 2);
  expect_one_error_line(cnn("visualize --model truncated.safetensors --out f.png"), "truncated.safetensors");
  expect_one_error_line(cnn("eval --model " + quoted(t.model.string()) + " --data no_such_folder"), "no_such_folder");
  expect_one_error_line(cnn("show-data --data no_such_folder --out s.png"), "no_such_folder");
}

TEST(CliExitCodes, SuccessExits0) {
  const Result r = cnn("summary --model " + quoted(kLeNet));
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(r.err.empty()) << show(r);
  EXPECT_EQ(cnn("--help").code, 0);
  EXPECT_EQ(cnn("eval --help").code, 0);
}

TEST(CliExitCodes, CheckWithoutAGpuExits3) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present; cnn check compares for real there";
  const Result r = cnn("check --model " + quoted(kLeNet));
  EXPECT_EQ(r.code, 3) << show(r);
  EXPECT_TRUE(contains(r.err, "no GPU")) << show(r);
}

TEST(CliExitCodes, GradcheckOfLeNet5Passes) {
  const Result r = cnn("gradcheck --model " + quoted(kLeNet) + " --max-elements 4");
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(contains(r.out, "gradcheck: PASS")) << show(r);
}

}  // namespace
}  // namespace cnn
