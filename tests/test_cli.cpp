// The `cnn` command line, run as a program: the picture commands (show-data, plot, eval
// --confusion/--mistakes, visualize) on a tiny image-folder data set made here, each PNG decoded
// and checked for its documented size and some of its content; predict, bench, data-dir,
// train --checkpoint/--resume and --device cuda without a GPU; and the exit codes (0 success,
// 1 bad files, 2 bad arguments with the usage printed, 3 `check` without a GPU).
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
#include <numeric>
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

const std::string kLeNet = CNN_SOURCE_DIR "/models/lenet5.json";

using namespace cli_test;

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

// Expects the picture from (x0, y0) on to be the [1, C, H, W] image `nchw` (C = 1 or 3, values in
// [0, 1]) with every pixel a scale x scale block of round(v * 255): computed here, not by blit.
void expect_upscaled_image(const Image& picture, int x0, int y0, const Tensor& nchw, int scale, const std::string& what) {
  const int64_t channels = nchw.dim(1), h = nchw.dim(2), w = nchw.dim(3);
  auto byte = [&](int64_t c, int64_t y, int64_t x) {
    return uint8_t(std::lround(std::clamp(nchw.at({0, c, y, x}), 0.0f, 1.0f) * 255));
  };
  int differing = 0;
  for (int y = 0; y < h * scale; ++y)
    for (int x = 0; x < w * scale; ++x) {
      const Color want = channels == 3 ? Color{byte(0, y / scale, x / scale), byte(1, y / scale, x / scale),
                                               byte(2, y / scale, x / scale)}
                                       : Color{byte(0, y / scale, x / scale), byte(0, y / scale, x / scale),
                                               byte(0, y / scale, x / scale)};
      differing += picture.get(x0 + x, y0 + y) == want ? 0 : 1;
    }
  EXPECT_EQ(differing, 0) << what << ": pixels differing from the image upscaled " << scale << "x";
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
  // Independent of the layout code: 10 cells of kConfusionCell = 44 pixels (every count, at most
  // 12, is narrower) and the right margin after them; the cells are filled with the documented
  // ramp's ends, dark blue (8, 48, 107) where the count is the largest, near-white (247, 251, 255)
  // where it is 0 (seen at a cell's corner, away from its number).
  EXPECT_EQ(cg.cell_w, 44);
  EXPECT_EQ(cg.width, cg.origin_x + 10 * 44 + kMargin);
  const Png cpng = decode(confusion);
  int64_t most = 0, total = 0;
  for (const auto& row : ev.confusion)
    for (int64_t v : row) most = std::max(most, v), total += v;
  EXPECT_EQ(total, test.size());
  int largest_cells = 0, empty_cells = 0;
  for (int row = 0; row < 10; ++row)
    for (int col = 0; col < 10; ++col) {
      const int64_t v = ev.confusion[size_t(row)][size_t(col)];
      if (v != most && v != 0) continue;
      const Rect cell = cg.cell(row, col);
      const Color corner = cpng.image.get(cell.x + 2, cell.y + 2);
      const Color expected = v == most ? Color{8, 48, 107} : Color{247, 251, 255};
      EXPECT_TRUE(corner == expected) << "cell (" << row << ", " << col << ") holding " << v << " is rgb("
                                      << int(corner.r) << ", " << int(corner.g) << ", " << int(corner.b) << ")";
      (v == most ? largest_cells : empty_cells) += 1;
    }
  EXPECT_GE(largest_cells, 1);
  EXPECT_GE(empty_cells, 7 * 10);  // the rows of the 7 classes the data lacks

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
  // The first tile is the first misclassified test image, 2x (tiles are 64 pixels high or more),
  // centred at the top of its cell.
  int64_t first_wrong = 0;
  while (first_wrong < test.size() && truth[size_t(first_wrong)] == predicted[size_t(first_wrong)]) ++first_wrong;
  ASSERT_LT(first_wrong, test.size()) << "the model classifies every test image right: no mistakes to draw";
  const Rect cell = mg.cell(0, 0);
  expect_upscaled_image(decode(mistakes).image, cell.x + (cell.w - 64) / 2, cell.y,
                        test.x.slice(first_wrong, first_wrong + 1), 2, "mistake 0");
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
// maps' label column L, then feature_maps_image of every conv layer at x = 0. *input_tile: where
// the input image's tile is.
void expect_visualize_size(const fs::path& png, const fs::path& model_path, const Tensor& x,
                           const std::string& image_name, int scale, Rect* input_tile) {
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
  // The feature maps' first tile is the input image itself, in colour, upscaled by the scale (it
  // is the tallest block), below the title and the filters.
  *input_tile = ml[0].cell(0, 0);
  input_tile->y += kMargin + text_height(kTitleSize) + fl.height;
  expect_upscaled_image(decode(png).image, input_tile->x, input_tile->y, x, scale, "the input tile");
}

// The colour of the tiny data's image pixel (x, y) as the picture shows it in `tile` at `scale`.
Color tile_pixel(const fs::path& png, const Rect& tile, int x, int y, int scale) {
  return decode(png).image.get(tile.x + x * scale, tile.y + y * scale);
}

TEST(CliVisualize, DrawsFiltersAndFeatureMapsForAnImage) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  const fs::path image = tiny_data() / "test" / "red" / "0.png", out = scratch() / "features.png";
  const Result r = cnn("visualize --model " + quoted(t.model.string()) + " --image " + quoted(image.string()) +
                       " --out " + quoted(out.string()));
  ASSERT_EQ(r.code, 0) << show(r);
  Rect tile;
  ASSERT_NO_FATAL_FAILURE(expect_visualize_size(out, t.model, load_image(image.string(), 3, 32, 32), "0.png", 2, &tile));
  // A red image: its bottom-left quadrant is full red over noise below 90.
  const Color c = tile_pixel(out, tile, 5, 20, 2);
  EXPECT_TRUE(c.r == 255 && c.g < 90 && c.b < 90) << int(c.r) << ", " << int(c.g) << ", " << int(c.b);
}

TEST(CliVisualize, DefaultsToTheFirstTestImageOfTheData) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  const fs::path out = scratch() / "features_default.png";
  const Result r = cnn("visualize --model " + quoted(t.model.string()) + " --data " + quoted(tiny_data().string()) +
                       " --scale 3 --out " + quoted(out.string()));
  ASSERT_EQ(r.code, 0) << show(r);
  Rect tile;
  ASSERT_NO_FATAL_FAILURE(
      expect_visualize_size(out, t.model, tiny_split("test").x.slice(0, 1), "test image 0 (blue)", 3, &tile));
  // A blue image: its top-left quadrant is full blue over noise below 90.
  const Color c = tile_pixel(out, tile, 3, 7, 3);
  EXPECT_TRUE(c.b == 255 && c.r < 90 && c.g < 90) << int(c.r) << ", " << int(c.g) << ", " << int(c.b);
}

// Bad arguments: exit 2, the error and the subcommand's usage on stderr.
void expect_usage_error(const Result& r, const std::string& subcommand, const std::string& mentioning) {
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_TRUE(contains(r.err, mentioning)) << show(r);
  EXPECT_TRUE(contains(r.err, "Usage: cnn " + subcommand)) << show(r);
}

// Bad files: exit 1 and one line on stderr, "cnn: error: ...".
void expect_one_error_line(const Result& r, const std::string& mentioning) {
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_TRUE(r.err.starts_with("cnn: error: ")) << show(r);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << show(r);
  EXPECT_TRUE(contains(r.err, mentioning)) << show(r);
}

// ---- predict --------------------------------------------------------------------------------
// The class name `cnn` prints for output c of the tiny-trained model (3 named classes of 10).
std::string class_label(int c) { return c < int(kClasses.size()) ? kClasses[size_t(c)] : std::to_string(c); }

TEST(CliPredict, PrintsTheModelsTopClassesPerImage) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  const fs::path green = tiny_data() / "test" / "green" / "1.png", red = tiny_data() / "test" / "red" / "2.png";
  const Result r = cnn("predict --model " + quoted(t.model.string()) + " " + quoted(green.string()));
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(r.err.empty()) << show(r);
  // "<path>:  <class> <p>  <class> <p>  <class> <p>": the model's three most likely classes.
  Sequential model = Sequential::load(t.model.string());
  const std::vector<float> p = model.predict(load_image(green.string(), 3, 32, 32)).to_vector();
  std::vector<int> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int i, int j) { return p[size_t(i)] > p[size_t(j)]; });
  std::istringstream line(r.out);
  std::string path;
  line >> path;
  EXPECT_EQ(path, green.string() + ":") << show(r);
  for (int k = 0; k < 3; ++k) {
    std::string name;
    double prob = -1;
    line >> name >> prob;
    EXPECT_EQ(name, class_label(order[size_t(k)])) << "rank " << k << "\n" << show(r);
    EXPECT_NEAR(prob, p[size_t(order[size_t(k)])], 5e-4) << "rank " << k << "\n" << show(r);
  }
  std::string more;
  EXPECT_FALSE(line >> more) << show(r);

  // --top 1 and two images: one line each, one class each.
  const Result two = cnn("predict --top 1 --model " + quoted(t.model.string()) + " " + quoted(green.string()) + " " +
                         quoted(red.string()));
  ASSERT_EQ(two.code, 0) << show(two);
  char top[32];
  std::snprintf(top, sizeof top, "%.3f", p[size_t(order[0])]);
  const size_t end_of_first = two.out.find('\n');
  ASSERT_NE(end_of_first, std::string::npos) << show(two);
  EXPECT_EQ(two.out.substr(0, end_of_first), green.string() + ":  " + class_label(order[0]) + " " + top) << show(two);
  const std::string second = two.out.substr(end_of_first + 1);
  EXPECT_TRUE(second.starts_with(red.string() + ":  ")) << show(two);
  EXPECT_EQ(std::count(second.begin(), second.end(), ' '), 3) << "one class: " << show(two);
  EXPECT_EQ(std::count(second.begin(), second.end(), '\n'), 1) << show(two);
}

TEST(CliPredict, ANonImageExits1AndAMissingFileExits2) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  std::ofstream(scratch() / "not_an_image.png") << "plain text, not pixels\n";
  const Result text = cnn("predict --model " + quoted(t.model.string()) + " not_an_image.png");
  expect_one_error_line(text, "not_an_image.png");
  EXPECT_TRUE(contains(text.err, "not a readable PNG/JPEG/BMP image")) << show(text);
  EXPECT_TRUE(text.out.empty()) << show(text);
  const Result missing = cnn("predict --model " + quoted(t.model.string()) + " no_such_image.png");
  expect_usage_error(missing, "predict", "no_such_image.png");
  EXPECT_TRUE(contains(missing.err, "does not exist")) << show(missing);
}

// ---- bench ----------------------------------------------------------------------------------
TEST(CliBench, JsonReportsTheRunAskedForAndLeNet5sFlops) {
  const Result r = cnn("bench --model " + quoted(kLeNet) +
                       " --batch-size 4 --steps 2 --warmup 1 --repeats 3 --threads 1 --json --no-profile");
  ASSERT_EQ(r.code, 0) << show(r);
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << show(r);
  EXPECT_EQ(j["framework"], "cnn");
  EXPECT_EQ(j["model"], "lenet5");
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["batch_size"], 4);
  EXPECT_EQ(j["steps"], 2);
  EXPECT_EQ(j["warmup"], 1);
  EXPECT_EQ(j["repeats"], 3);
  EXPECT_EQ(j["threads"], 1);
  ASSERT_EQ(j["ms_per_step_all"].size(), 3u) << show(r);
  for (double ms : j["ms_per_step_all"]) EXPECT_GT(ms, 0.0);
  // Per repeat images/s = batch * 1000 / (ms per step), so the medians of 3 correspond.
  const double median_ms = j["ms_per_step"]["median"], median_ips = j["images_per_s"]["median"];
  EXPECT_NEAR(median_ips, 4 * 1000.0 / median_ms, 1e-6 * median_ips);
  EXPECT_LE(double(j["images_per_s"]["min"]), median_ips);
  EXPECT_GE(double(j["images_per_s"]["max"]), median_ips);
  // LeNet-5 on 3x32x32, 2 FLOPs a multiply-add: conv 6x28x28 x 3x5x5, conv 16x10x10 x 6x5x5, dense
  // 400x120, 120x84, 84x10. Training: forward + weight gradient everywhere, + input gradient above
  // the first conv.
  const double conv1 = 2.0 * 6 * 28 * 28 * 3 * 25, rest = 2.0 * (16 * 10 * 10 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10);
  EXPECT_EQ(double(j["forward_flops_per_image"]), conv1 + rest);
  EXPECT_EQ(double(j["train_flops_per_image"]), 2 * conv1 + 3 * rest);
  EXPECT_TRUE(j["layers_ms_per_step"].empty()) << "--no-profile";
}

TEST(CliBench, TablesShowTheRunAndTheTimeOfEveryLayer) {
  const Result r = cnn("bench --model " + quoted(kLeNet) + " --batch-size 2 --steps 1 --warmup 0 --repeats 1 --threads 1");
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(contains(r.out, "Model lenet5 on cpu, batch 2, 1 thread ")) << show(r);
  for (const char* row : {"images/s", "ms/step", "MFLOP per training image", "Per-layer time", "0 Conv2D",
                          "4 Flatten", "7 Dense", "optimizer", "sum"})
    EXPECT_TRUE(contains(r.out, row)) << row << "\n" << show(r);
  expect_usage_error(cnn("bench --model " + quoted(kLeNet)), "bench", "--batch-size");
}

// Tuning times CUDA kernels: on the CPU it is refused, naming what it needs.
TEST(CliBench, TuneNeedsTheCudaDeviceAndTheTuningFileNeedsTune) {
  const std::string bench = "bench --model " + quoted(kLeNet) + " --batch-size 2 --steps 1 --warmup 0 --repeats 1";
  Result r = cnn(bench + " --tune");
  expect_one_error_line(r, "--tune and --tuning-file time the CUDA convolution kernels: they need --device cuda");
  r = cnn(bench + " --tuning-file t.txt");
  expect_one_error_line(r, "they need --device cuda");
  if (cuda_available()) {
    r = cnn(bench + " --device cuda --tuning-file t.txt");
    expect_one_error_line(r, "--tuning-file holds the choices of --tune: give both");
  }
}

// ---- data-dir -------------------------------------------------------------------------------
TEST(CliDataDir, PrintsWhereADataSetIsFoundOrEveryPlaceLookedAt) {
  const fs::path home = scratch() / "data_home";
  fs::create_directories(home / "toyset");
  fs::create_directories(home / "cifar-10-batches-bin");
  const std::string env = "CNN_DATA=" + quoted(home.string());
  Result r = cnn("data-dir --name toyset", env);
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, (home / "toyset").string() + "\n") << show(r);
  r = cnn("data-dir", env);  // CIFAR-10 by default
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, (home / "cifar-10-batches-bin").string() + "\n") << show(r);
  r = cnn("data-dir --name no-such-set", env);
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_TRUE(r.err.starts_with("cnn: error: data set 'no-such-set' not found; looked in:")) << show(r);
  for (const std::string& place : {(home / "no-such-set").string(), (scratch() / "data" / "no-such-set").string(),
                                   std::string("shared/data/no-such-set")})
    EXPECT_TRUE(contains(r.err, place)) << place << "\n" << show(r);
  EXPECT_TRUE(r.out.empty()) << show(r);
}

// ---- train --checkpoint / --resume ----------------------------------------------------------
// LeNet-5 on the tiny data; a constant learning rate, so that runs of different lengths share
// their first epochs.
std::string tiny_train(int epochs, const std::string& more) {
  return "train --data " + quoted(tiny_data().string()) + " --epochs " + std::to_string(epochs) +
         " --batch-size 8 --validation-split 0.25 --lr-schedule constant --augment-flip random --verbose 0 " + more;
}

std::vector<float> saved_weights(const fs::path& p) { return Sequential::load(p.string()).parameters().to_vector(); }

TEST(CliTrain, CheckpointThenResumeEndsWhereAnUninterruptedRunEnds) {
  const fs::path ckpt = scratch() / "cli_run.ckpt", first = scratch() / "cli_first.safetensors",
                 resumed = scratch() / "cli_resumed.safetensors", straight = scratch() / "cli_straight.safetensors";
  Result r = cnn(tiny_train(1, "--model " + quoted(kLeNet) + " --checkpoint " + quoted(ckpt.string()) + " --save " +
                                   quoted(first.string())));
  ASSERT_EQ(r.code, 0) << show(r);
  TrainingProgress p;
  EXPECT_EQ(Sequential::load_checkpoint(ckpt.string(), &p).parameters().to_vector(), saved_weights(first));
  EXPECT_EQ(p.epoch, 1);
  EXPECT_EQ(p.history.epochs(), 1);

  r = cnn(tiny_train(2, "--resume " + quoted(ckpt.string()) + " --save " + quoted(resumed.string())));
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(contains(r.out, "Trained 2 epochs")) << show(r);  // the history goes on from the checkpoint's
  Sequential::load_checkpoint(ckpt.string(), &p);  // --resume keeps checkpointing to it
  EXPECT_EQ(p.epoch, 2);

  r = cnn(tiny_train(2, "--model " + quoted(kLeNet) + " --save " + quoted(straight.string())));
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(saved_weights(resumed), saved_weights(straight));
  EXPECT_NE(saved_weights(first), saved_weights(straight)) << "the second epoch changed nothing";
}

TEST(CliTrain, ResumeRefusesWhatIsNotACheckpointBeforeLoadingData) {
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  const Result saved = cnn(tiny_train(1, "--resume " + quoted(t.model.string())));
  expect_one_error_line(saved, t.model.string());
  EXPECT_TRUE(contains(saved.err, "--resume takes a checkpoint written by --checkpoint")) << show(saved);
  EXPECT_TRUE(contains(saved.err, "a saved model trains further with --model")) << show(saved);
  EXPECT_TRUE(saved.out.empty()) << show(saved);
  const Result description = cnn(tiny_train(1, "--resume " + quoted(kLeNet)));
  expect_one_error_line(description, "'" + kLeNet + "' is not a training checkpoint");
  EXPECT_TRUE(description.out.empty()) << show(description);
  expect_usage_error(cnn(tiny_train(1, "--resume no_such.ckpt")), "train", "no_such.ckpt");
}

// ---- --device cuda without a GPU --------------------------------------------------------------
TEST(CliDevice, CudaWithoutAGpuExits1SayingWhy) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present: --device cuda runs";
  const Trained& t = trained();
  ASSERT_EQ(t.run.code, 0) << show(t.run);
  // A CPU-only build says it has no CUDA backend; a CUDA build on a machine without a GPU that
  // it found none.
  const std::string reason = built_with_cuda() ? "no CUDA device" : "built without CUDA";
  for (const std::string& args :
       {tiny_train(1, "--model " + quoted(kLeNet) + " --device cuda"),
        "eval --model " + quoted(t.model.string()) + " --data " + quoted(tiny_data().string()) + " --device cuda",
        "bench --model " + quoted(kLeNet) + " --batch-size 2 --device cuda"}) {
    const Result r = cnn(args);
    expect_one_error_line(r, "cuda");
    EXPECT_TRUE(contains(r.err, reason)) << args << "\n" << show(r);
  }
}

// ---- exit codes -----------------------------------------------------------------------------
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
