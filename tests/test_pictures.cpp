// Pictures: the raster, PNG output, text, and every figure. Each figure is written to PNG,
// decoded again with stb_image, checked for its documented size, and probed where its layout
// says a tile, cell, label or curve is.
#include <gtest/gtest.h>
#include <stb/stb_image.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "cnn/pictures.hpp"
#include "cnn/rng.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

// A file in this process's temporary folder, which is removed when the tests end.
fs::path temp_file(const std::string& name) {
  struct Dir {
    fs::path path = fs::temp_directory_path() / ("cnn_pictures_test_" + std::to_string(::getpid()));
    ~Dir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  };
  static Dir dir;
  static std::atomic<int> counter{0};
  fs::create_directories(dir.path);
  return dir.path / (std::to_string(counter++) + "_" + name);
}

// Saves the image as PNG, decodes it with stb_image and checks it comes back identical.
void expect_png_roundtrip(const Image& img, const std::string& name) {
  const fs::path path = temp_file(name);
  save_png(img, path.string());
  int w = 0, h = 0, n = 0;
  unsigned char* p = stbi_load(path.c_str(), &w, &h, &n, 3);
  ASSERT_NE(p, nullptr) << path << ": " << stbi_failure_reason();
  EXPECT_EQ(w, img.width);
  EXPECT_EQ(h, img.height);
  EXPECT_EQ(n, 3);
  EXPECT_TRUE(std::equal(img.pixels.begin(), img.pixels.end(), p)) << name << ": decoded pixels differ";
  stbi_image_free(p);
  fs::remove(path);
}

using test::error_of;

uint8_t to_byte(float v) { return uint8_t(std::lround(std::clamp(v, 0.0f, 1.0f) * 255.0f)); }
double luma(Color c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; }

// Pixels in r that differ from `bg` (a text region is "not blank" when there are some).
int count_not(const Image& img, const Rect& r, Color bg) {
  int n = 0;
  for (int y = std::max(0, r.y); y < std::min(img.height, r.y + r.h); ++y)
    for (int x = std::max(0, r.x); x < std::min(img.width, r.x + r.w); ++x) n += img.get(x, y) == bg ? 0 : 1;
  return n;
}

int count_where(const Image& img, const Rect& r, const std::function<bool(Color)>& pred) {
  int n = 0;
  for (int y = std::max(0, r.y); y < std::min(img.height, r.y + r.h); ++y)
    for (int x = std::max(0, r.x); x < std::min(img.width, r.x + r.w); ++x) n += pred(img.get(x, y)) ? 1 : 0;
  return n;
}

Rect whole(const Image& img) { return {0, 0, img.width, img.height}; }

// Checks that tile `r` holds image chw upscaled by `scale`, pixel-exact.
void expect_tile(const Image& img, const Rect& r, const Tensor& chw, int scale) {
  const int64_t c = chw.dim(-3), h = chw.dim(-2), w = chw.dim(-1);
  ASSERT_EQ(r.w, w * scale);
  ASSERT_EQ(r.h, h * scale);
  const Tensor t = chw.reshape({c, h, w});
  int bad = 0;
  for (int y = 0; y < r.h; ++y)
    for (int x = 0; x < r.w; ++x) {
      const int64_t sy = y / scale, sx = x / scale;
      const uint8_t red = to_byte(t.at({0, sy, sx}));
      const Color want = c == 1 ? Color{red, red, red} : Color{red, to_byte(t.at({1, sy, sx})), to_byte(t.at({2, sy, sx}))};
      if (!(img.get(r.x + x, r.y + y) == want) && bad++ < 3)
        ADD_FAILURE() << "tile pixel (" << x << ", " << y << ") at image (" << r.x + x << ", " << r.y + y << ")";
    }
  EXPECT_EQ(bad, 0);
}

Tensor random_images(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(size_t(n * c * h * w));
  for (auto& e : v) e = float(rng.below(256)) / 255.0f;
  return Tensor::from_vector({n, c, h, w}, v);
}

// ---- Raster and text ----------------------------------------------------------------------------
TEST(PicturesRaster, ImageFillRectClippingAndPngRoundTrip) {
  Image img(7, 5, Color{10, 20, 30});
  EXPECT_EQ(img.pixels.size(), size_t(7 * 5 * 3));
  fill_rect(img, 5, 3, 10, 10, Color{200, 0, 0});  // clipped at the border
  fill_rect(img, -2, -2, 3, 3, Color{0, 200, 0});
  EXPECT_EQ(img.get(6, 4), (Color{200, 0, 0}));
  EXPECT_EQ(img.get(5, 3), (Color{200, 0, 0}));
  EXPECT_EQ(img.get(4, 3), (Color{10, 20, 30}));
  EXPECT_EQ(img.get(0, 0), (Color{0, 200, 0}));
  EXPECT_EQ(img.get(1, 1), (Color{10, 20, 30}));
  img.set(100, 100, colors::black);  // outside: ignored
  EXPECT_CONTAINS(error_of([&] { img.get(7, 0); }), "outside");
  EXPECT_CONTAINS(error_of([] { Image(0, 3); }), "0x3");
  expect_png_roundtrip(img, "raster.png");
  EXPECT_CONTAINS(error_of([&] { save_png(img, "/nonexistent-dir/x.png"); }), "/nonexistent-dir/x.png");
  const fs::path p = temp_file("read.png");
  save_png(img, p.string());
  const Image back = read_image_rgb(p.string());
  EXPECT_EQ(back.pixels, img.pixels);
}

TEST(PicturesRaster, BlitUpscalesClampsAndNormalizes) {
  const Tensor t = Tensor::from_vector({3, 2, 2}, {0.0f, 1.0f, -0.5f, 1.5f,  //
                                                   0.2f, 0.4f, 0.6f, 0.8f,   //
                                                   1.0f, 0.0f, 0.5f, 0.25f});
  Image img(10, 10, colors::white);
  blit(img, t, 2, 1, 3);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x) {
      const int64_t sy = y / 3, sx = x / 3;
      EXPECT_EQ(img.get(2 + x, 1 + y),
                (Color{to_byte(t.at({0, sy, sx})), to_byte(t.at({1, sy, sx})), to_byte(t.at({2, sy, sx}))}));
    }
  EXPECT_EQ(img.get(1, 1), colors::white);
  EXPECT_EQ(img.get(8, 1), colors::white);
  EXPECT_EQ(img.get(2, 1).b, 255);  // blue plane first pixel 1.0
  EXPECT_EQ(img.get(2, 4).r, 0);    // -0.5 clamped
  EXPECT_EQ(img.get(5, 4).r, 255);  // 1.5 clamped
  // Normalised grey: min -> 0, max -> 255.
  const Image g = tensor_image(Tensor::from_vector({1, 1, 3}, {-2.0f, 0.0f, 2.0f}), 2, true);
  EXPECT_EQ(g.width, 6);
  EXPECT_EQ(g.height, 2);
  EXPECT_EQ(g.get(0, 0), (Color{0, 0, 0}));
  EXPECT_EQ(g.get(3, 1), (Color{128, 128, 128}));
  EXPECT_EQ(g.get(5, 1), (Color{255, 255, 255}));
  EXPECT_CONTAINS(error_of([] { tensor_image(Tensor({2, 3, 3})); }), "1 or 3 channels");
}

TEST(PicturesRaster, LinesAndCirclesHaveTheirColourAtTheCore) {
  Image img(40, 40, colors::white);
  draw_line(img, 5, 5, 35, 30, colors::train, 3.0);
  fill_circle(img, 20, 35, 3, colors::validation);
  EXPECT_EQ(img.get(5, 5), colors::train);
  EXPECT_EQ(img.get(35, 30), colors::train);
  EXPECT_EQ(img.get(20, int(std::lround(5 + 25.0 * 15 / 30))), colors::train);  // a point on the segment
  EXPECT_EQ(img.get(20, 35), colors::validation);
  EXPECT_EQ(img.get(35, 5), colors::white);
  draw_rect(img, 0, 0, 40, 40, colors::black);
  EXPECT_EQ(img.get(0, 20), colors::black);
  EXPECT_EQ(img.get(39, 39), colors::black);
  EXPECT_EQ(img.get(1, 20), colors::white);
}

TEST(PicturesText, TextIsMeasuredAndDrawnInsideItsBox) {
  EXPECT_TRUE(fs::is_regular_file(font_path())) << font_path();
  const int th = text_height();
  EXPECT_GE(th, 14);
  EXPECT_LE(th, 20);
  EXPECT_GT(text_width("automobile"), text_width("cat"));
  EXPECT_GT(text_width("cat"), 10);
  EXPECT_EQ(text_width(""), 0);
  EXPECT_GT(text_width("M", kTitleSize), text_width("M", kTextSize));

  Image img(200, 60, colors::white);
  const Rect box = draw_text(img, 100, 10, "airplane", colors::black, kTextSize, Align::Center);
  EXPECT_EQ(box.w, text_width("airplane"));
  EXPECT_EQ(box.h, th);
  EXPECT_EQ(box.x, 100 - box.w / 2);
  EXPECT_GT(count_not(img, box, colors::white), 20);
  // Nothing outside the box (one pixel of slack for anti-aliasing).
  EXPECT_EQ(count_not(img, whole(img), colors::white),
            count_not(img, {box.x - 1, box.y - 1, box.w + 2, box.h + 2}, colors::white));
  // Right-aligned text ends at x.
  const Rect r = draw_text(img, 190, 35, "dog", colors::black, kTextSize, Align::Right);
  EXPECT_EQ(r.x + r.w, 190);

  Image v(40, 120, colors::white);
  const Rect vb = draw_text_vertical(v, 5, 110, "true label", colors::black);
  EXPECT_EQ(vb.w, th);
  EXPECT_EQ(vb.h, text_width("true label"));
  EXPECT_EQ(vb.y + vb.h, 110);  // Align::Left: the text starts at y and reads upwards
  EXPECT_GT(count_not(v, vb, colors::white), 20);
  EXPECT_EQ(count_not(v, whole(v), colors::white),
            count_not(v, {vb.x - 1, vb.y - 1, vb.w + 2, vb.h + 2}, colors::white));
  // Non-ASCII text (UTF-8) renders too.
  EXPECT_GT(text_width("\xC3\xA9t\xC3\xA9"), 0);
}

TEST(PicturesText, CnnFontOverridesTheDefaultFontPath) {
  const char* mono = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";
  if (!fs::exists(mono)) GTEST_SKIP() << mono << " absent";
  const char* old = std::getenv("CNN_FONT");
  const std::string saved = old ? old : "";
  ::setenv("CNN_FONT", mono, 1);
  EXPECT_EQ(font_path(), mono);
  ::setenv("CNN_FONT", "/nonexistent/font.ttf", 1);  // a missing override falls back
  EXPECT_NE(font_path(), "/nonexistent/font.ttf");
  if (old)
    ::setenv("CNN_FONT", saved.c_str(), 1);
  else
    ::unsetenv("CNN_FONT");
}

// ---- Data grid ------------------------------------------------------------------------------------
Dataset small_dataset() {
  Dataset d;
  d.x = random_images(7, 3, 4, 5, 11);
  d.y = Tensor::from_vector({7}, {2, 0, 0, 1, 2, 0, 2});
  d.class_names = {"cat", "automobile", "ship"};
  return d;
}

TEST(PicturesDataGrid, TilesAreTheSourceImagesUpscaledPixelExact) {
  const Dataset d = small_dataset();
  const int scale = 3, per_class = 2;
  const GridLayout g = data_grid_layout(d, per_class, scale);
  const Image img = data_grid(d, per_class, scale);
  ASSERT_EQ(img.width, g.width);
  ASSERT_EQ(img.height, g.height);
  // The documented size.
  const int label_w = text_width("automobile") + 2 * kPad;
  const int row_h = std::max(4 * scale, text_height());
  EXPECT_EQ(g.width, label_w + per_class * (5 * scale + kGap) + kMargin - kGap);
  EXPECT_EQ(g.height, 2 * kMargin + 3 * (row_h + kGap) - kGap);
  EXPECT_EQ(g.cell(0, 0).x, label_w);
  // Class 0 (cat): images 1 and 2; class 1: image 3, then an empty slot; class 2: images 0, 4.
  expect_tile(img, g.cell(0, 0), d.x.slice(1, 2), scale);
  expect_tile(img, g.cell(0, 1), d.x.slice(2, 3), scale);
  expect_tile(img, g.cell(1, 0), d.x.slice(3, 4), scale);
  EXPECT_EQ(count_not(img, g.cell(1, 1), colors::tile_background), 0);
  expect_tile(img, g.cell(2, 0), d.x.slice(0, 1), scale);
  expect_tile(img, g.cell(2, 1), d.x.slice(4, 5), scale);
  // Each row's label is written left of its tiles.
  for (int r = 0; r < 3; ++r)
    EXPECT_GT(count_not(img, {0, kMargin + r * g.step_y, label_w, row_h}, colors::background), 15) << r;
  expect_png_roundtrip(img, "grid.png");
}

TEST(PicturesDataGrid, StandardizedImagesAreNormalizedPerTile) {
  Dataset d = small_dataset();
  standardize(d.x, channel_stats(d.x));
  const GridLayout g = data_grid_layout(d, 1, 2);
  const Image img = data_grid(d, 1, 2);
  int black = 0, white = 0;
  const Rect t = g.cell(0, 0);
  for (int y = t.y; y < t.y + t.h; ++y)
    for (int x = t.x; x < t.x + t.w; ++x) {
      const Color c = img.get(x, y);
      black += c.r == 0 || c.g == 0 || c.b == 0;
      white += c.r == 255 || c.g == 255 || c.b == 255;
    }
  EXPECT_GT(black, 0);
  EXPECT_GT(white, 0);
}

TEST(PicturesDataGrid, RealCifar10TilesMatchTheirImages) {
  std::string why;
  const std::string dir = test::real_data_dir("cifar-10-batches-bin", &why);
  if (dir.empty()) GTEST_SKIP() << "real data: " << why;
  ImageDataOptions o;
  o.train_limit = 300;
  o.test_limit = 1;
  const Dataset d = load_cifar10(dir, o).train;
  const GridLayout g = data_grid_layout(d, 4, 2);
  const Image img = data_grid(d, 4, 2);
  const auto y = d.y.to_vector();
  for (int c = 0; c < 10; ++c) {
    int found = 0;
    for (int64_t i = 0; i < d.size() && found < 4; ++i)
      if (int(y[size_t(i)]) == c) expect_tile(img, g.cell(c, found++), d.x.slice(i, i + 1), 2);
    EXPECT_EQ(found, 4) << c;
  }
  expect_png_roundtrip(img, "cifar_grid.png");
}

// ---- Training curves -------------------------------------------------------------------------------
TEST(PicturesCurves, ReadsMetricsCsvWithOptionalColumns) {
  const fs::path p = temp_file("metrics.csv");
  std::ofstream(p) << "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n"
                      "1,2.0,0.30,1.9,0.35,0.01,3.5\n"
                      "\n"
                      "2,1.5,0.45,nan,,0.01,3.4\r\n";
  const auto rows = read_metrics_csv(p.string());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].epoch, 1);
  EXPECT_DOUBLE_EQ(rows[0].loss, 2.0);
  EXPECT_DOUBLE_EQ(rows[0].val_accuracy, 0.35);
  EXPECT_DOUBLE_EQ(rows[0].lr, 0.01);
  EXPECT_DOUBLE_EQ(rows[1].seconds, 3.4);
  EXPECT_TRUE(std::isnan(rows[1].val_loss));
  EXPECT_TRUE(std::isnan(rows[1].val_accuracy));

  std::ofstream(p) << "accuracy,epoch,loss,extra\n0.5,1,0.9,hello\n";  // any order; unknown columns ignored
  const auto r2 = read_metrics_csv(p.string());
  ASSERT_EQ(r2.size(), 1u);
  EXPECT_DOUBLE_EQ(r2[0].accuracy, 0.5);
  EXPECT_TRUE(std::isnan(r2[0].val_loss));
}

TEST(PicturesCurves, MalformedCsvNamesTheLine) {
  const fs::path p = temp_file("bad.csv");
  std::ofstream(p) << "epoch,loss,accuracy\n1,0.5,0.8\n2,0.4\n";
  std::string msg = error_of([&] { read_metrics_csv(p.string()); });
  EXPECT_CONTAINS(msg, p.string() + ":3");
  EXPECT_CONTAINS(msg, "2 fields, expected 3");
  std::ofstream(p) << "epoch,loss,accuracy\n1,0.5,0.8\n2,zero,0.9\n";
  msg = error_of([&] { read_metrics_csv(p.string()); });
  EXPECT_CONTAINS(msg, p.string() + ":3");
  EXPECT_CONTAINS(msg, "'zero' is not a number");
  std::ofstream(p) << "epoch,loss\n1,0.5\n";
  msg = error_of([&] { read_metrics_csv(p.string()); });
  EXPECT_CONTAINS(msg, ":1");
  EXPECT_CONTAINS(msg, "accuracy");
  EXPECT_CONTAINS(error_of([] { read_metrics_csv("/nonexistent/m.csv"); }), "/nonexistent/m.csv");
}

std::vector<EpochMetrics> metrics(bool with_val) {
  std::vector<EpochMetrics> rows;
  for (int e = 1; e <= 12; ++e) {
    EpochMetrics m;
    m.epoch = e;
    m.loss = 2.0 * std::exp(-0.2 * e);
    m.accuracy = 1 - 0.7 * std::exp(-0.25 * e);
    if (with_val) {
      m.val_loss = m.loss * 1.2;
      m.val_accuracy = m.accuracy - 0.05;
    }
    rows.push_back(m);
  }
  return rows;
}

TEST(PicturesCurves, BothPanelsShowTrainAndValidationInTheirColours) {
  const Image img = plot_training_curves(metrics(true));
  EXPECT_EQ(img.width, kCurvesWidth);
  EXPECT_EQ(img.height, kCurvesHeight);
  auto is = [](Color want) { return [want](Color c) { return c == want; }; };
  const int half = kCurvesWidth / 2;
  for (int panel = 0; panel < 2; ++panel) {
    const Rect r{panel * half, 60, half, kCurvesHeight - 120};  // below the legend
    EXPECT_GT(count_where(img, r, is(colors::train)), 300) << panel;
    EXPECT_GT(count_where(img, r, is(colors::validation)), 300) << panel;
    // Tick labels on the left of each panel and under the axis are text (dark pixels).
    EXPECT_GT(count_where(img, {panel * half, 40, 70, kCurvesHeight - 80}, [](Color c) { return luma(c) < 120; }),
              100);
  }
  expect_png_roundtrip(img, "curves.png");

  const Image titled = plot_training_curves(metrics(false), "run 1");
  EXPECT_EQ(titled.height, kCurvesHeight + text_height(kTitleSize) + kPad);
  EXPECT_EQ(count_where(titled, whole(titled), is(colors::validation)), 0);
  EXPECT_GT(count_where(titled, whole(titled), is(colors::train)), 600);
  EXPECT_GT(count_not(titled, {kCurvesWidth / 2 - 40, 0, 80, text_height(kTitleSize) + kPad}, colors::background),
            20);  // the title
  // One epoch, missing values and NaN losses do not break the plot.
  std::vector<EpochMetrics> one(1);
  one[0].epoch = 1;
  one[0].loss = NAN;
  one[0].accuracy = 0.5;
  EXPECT_EQ(plot_training_curves(one).width, kCurvesWidth);
  EXPECT_CONTAINS(error_of([] { plot_training_curves({}); }), "no epochs");
}

// ---- Confusion matrix -----------------------------------------------------------------------------
TEST(PicturesConfusion, CellColourRisesWithCountAndCountsAreWritten) {
  const std::vector<std::vector<int64_t>> counts = {{50, 3, 0}, {10, 40, 7}, {1, 20, 30}};
  const std::vector<std::string> names = {"cat", "dog", "bird"};
  const GridLayout g = confusion_matrix_layout(counts, names);
  const Image img = confusion_matrix_image(counts, names);
  ASSERT_EQ(img.width, g.width);
  ASSERT_EQ(img.height, g.height);
  EXPECT_EQ(g.rows, 3);
  EXPECT_EQ(g.cell_w, kConfusionCell);
  // Cell colours (sampled in a corner, away from the text) get darker as counts rise.
  std::vector<std::pair<int64_t, double>> seen;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      const Rect cell = g.cell(r, c);
      seen.emplace_back(counts[size_t(r)][size_t(c)], luma(img.get(cell.x + 2, cell.y + 2)));
      EXPECT_EQ(img.get(cell.x + 2, cell.y + 2), img.get(cell.x + cell.w - 3, cell.y + cell.h - 3));
      // The count is written in the middle of the cell.
      EXPECT_GT(count_not(img, {cell.x + 8, cell.y + 8, cell.w - 16, cell.h - 16}, img.get(cell.x + 2, cell.y + 2)),
                5);
    }
  std::sort(seen.begin(), seen.end());
  for (size_t i = 1; i < seen.size(); ++i)
    EXPECT_LT(seen[i].second, seen[i - 1].second) << "count " << seen[i].first << " vs " << seen[i - 1].first;
  // Dark cells get light text: the largest count's cell holds near-white pixels.
  const Rect top = g.cell(0, 0);
  EXPECT_GT(count_where(img, top, [](Color c) { return luma(c) > 200; }), 5);
  // Row labels on the left, column labels above, axis titles.
  for (int i = 0; i < 3; ++i) {
    const Rect row = g.cell(i, 0), col = g.cell(0, i);
    EXPECT_GT(count_not(img, {kMargin + text_height(), row.y, g.origin_x - kMargin - text_height(), row.h},
                        colors::background),
              10);
    EXPECT_GT(count_not(img, {col.x, kMargin + text_height(), col.w, g.origin_y - kMargin - text_height()},
                        colors::background),
              10);
  }
  EXPECT_GT(count_not(img, {g.origin_x, 0, 3 * g.cell_w, kMargin + text_height()}, colors::background), 30);
  EXPECT_GT(count_not(img, {0, g.origin_y, kMargin + text_height(), 3 * g.cell_h}, colors::background), 30);
  expect_png_roundtrip(img, "confusion.png");
}

TEST(PicturesConfusion, LongNamesAreWrittenVerticallyAndHeatColourIsMonotonic) {
  const std::vector<std::vector<int64_t>> counts(3, std::vector<int64_t>{1, 2, 3});
  const GridLayout shortg = confusion_matrix_layout(counts, {"a", "b", "c"});
  const GridLayout longg = confusion_matrix_layout(counts, {"automobile", "airplane", "truck"});
  EXPECT_EQ(longg.origin_y - shortg.origin_y, text_width("automobile") - text_height());
  EXPECT_EQ(confusion_matrix_layout(counts, {}).rows, 3);
  double prev = 1e9;
  for (int i = 0; i <= 100; ++i) {
    const double l = luma(heat_color(i / 100.0));
    EXPECT_LE(l, prev) << i;
    prev = l;
  }
  EXPECT_GT(luma(heat_color(0)), 240);
  EXPECT_LT(luma(heat_color(1)), 60);
  EXPECT_CONTAINS(error_of([] { confusion_matrix_image({{1, 2}, {3}}, {}); }), "row 1");
  EXPECT_CONTAINS(error_of([] { confusion_matrix_image({{1}}, {"a", "b"}); }), "2 class names");
}

// ---- Misclassified images -------------------------------------------------------------------------
TEST(PicturesMistakes, ShowsOnlyMistakesWithCaptions) {
  const Tensor x = random_images(6, 3, 4, 4, 5);
  const std::vector<int> truth = {0, 1, 2, 0, 1, 2}, pred = {0, 2, 2, 1, 0, 2};  // mistakes: 1, 3, 4
  const std::vector<std::string> names = {"cat", "dog", "automobile"};
  const GridLayout g = mistakes_grid_layout(x, truth, pred, names, 10, 4);
  const Image img = mistakes_grid(x, truth, pred, names, 10, 4);
  ASSERT_EQ(img.width, g.width);
  ASSERT_EQ(img.height, g.height);
  EXPECT_EQ(g.columns, 3);
  EXPECT_EQ(g.rows, 1);
  EXPECT_EQ(g.cell_w, std::max({16, text_width("pred: automobile"), text_width("true: automobile")}));
  const int th = text_height();
  int k = 0;
  for (int i : {1, 3, 4}) {
    const Rect cell = g.cell(0, k++);
    expect_tile(img, {cell.x + (cell.w - 16) / 2, cell.y, 16, 16}, x.slice(i, i + 1), 4);
    const Rect t{cell.x, cell.y + cell.h + kGap, cell.w, th}, p{cell.x, t.y + th, cell.w, th};
    EXPECT_GT(count_where(img, t, [](Color c) { return c.g > c.r + 40 && c.g > c.b + 40; }), 10);  // green
    EXPECT_GT(count_where(img, p, [](Color c) { return c.r > c.g + 60 && c.r > c.b + 60; }), 10);  // red
  }
  expect_png_roundtrip(img, "mistakes.png");
  EXPECT_EQ(mistakes_grid_layout(x, truth, pred, names, 2, 4).columns, 2);  // max_count
  const Image none = mistakes_grid(x, truth, truth, names, 10, 4);
  EXPECT_EQ(none.height, 2 * kMargin + th);
  EXPECT_GT(count_not(none, whole(none), colors::background), 20);
  EXPECT_CONTAINS(error_of([&] { mistakes_grid(x, {0}, pred, names, 4, 1); }), "1 true");
}

// ---- Filters and feature maps -----------------------------------------------------------------------
TEST(PicturesFilters, ColourAndPerChannelTilesAreNormalizedPerFilter) {
  Rng rng(3);
  std::vector<float> v(4 * 3 * 2 * 2);
  for (auto& e : v) e = float(rng.uniform(-1, 1));
  const Tensor w = Tensor::from_vector({4, 3, 2, 2}, v);
  const GridLayout g = filters_layout(w.shape(), 5);
  const Image img = filters_image(w, 5);
  ASSERT_EQ(img.width, g.width);
  ASSERT_EQ(img.height, g.height);
  EXPECT_EQ(g.columns, 4);
  EXPECT_EQ(g.rows, 1);
  for (int f = 0; f < 4; ++f) {
    std::vector<float> fv(v.begin() + f * 12, v.begin() + (f + 1) * 12);
    const auto [mn, mx] = std::minmax_element(fv.begin(), fv.end());
    const float lo = *mn, hi = *mx;
    for (auto& e : fv) e = (e - lo) / (hi - lo);
    expect_tile(img, g.cell(0, f), Tensor::from_vector({3, 2, 2}, fv), 5);
  }
  EXPECT_GT(count_not(img, {0, 0, img.width, g.origin_y}, colors::background), 20);  // the caption
  expect_png_roundtrip(img, "filters.png");

  const Tensor w2 = random_images(2, 5, 3, 3, 9);  // c_in = 5: a row per filter
  const GridLayout g2 = filters_layout(w2.shape(), 2);
  EXPECT_EQ(g2.rows, 2);
  EXPECT_EQ(g2.columns, 5);
  const Image img2 = filters_image(w2, 2);
  const Rect c = g2.cell(1, 4);
  int extremes = 0;  // each filter's minimum is black and maximum white somewhere in its row
  for (int col = 0; col < 5; ++col) {
    const Rect t = g2.cell(1, col);
    extremes += count_where(img2, t, [](Color p) { return p.r == 0; }) + count_where(img2, t, [](Color p) { return p.r == 255; });
  }
  EXPECT_GE(extremes, 2 * 4);
  EXPECT_EQ(img2.get(c.x, c.y).r, img2.get(c.x, c.y).g);  // grey
  EXPECT_EQ(filters_layout({64, 3, 3, 3}, 1).columns, 8);
  EXPECT_EQ(filters_layout({64, 3, 3, 3}, 1).rows, 8);
}

TEST(PicturesFeatureMaps, MapsAreNormalizedUpscaledAndLabelled) {
  std::vector<float> a(2 * 4 * 4), b(3 * 2 * 2);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i % 7) - 2.0f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(i) * 0.5f;
  const std::vector<std::pair<std::string, Tensor>> layers = {
      {"conv2d_1", Tensor::from_vector({2, 4, 4}, a)}, {"pool", Tensor::from_vector({1, 3, 2, 2}, b)}};
  const auto gs = feature_maps_layout(layers, 2);
  ASSERT_EQ(gs.size(), 2u);
  const Image img = feature_maps_image(layers, 2);
  ASSERT_EQ(img.width, gs[0].width);
  ASSERT_EQ(img.height, gs[0].height);
  EXPECT_EQ(gs[0].cell_w, 8);  // 4 x 2
  EXPECT_EQ(gs[1].cell_w, 8);  // 2 x 4: upscaled to the same size
  EXPECT_EQ(gs[1].columns, 3);
  for (int l = 0; l < 2; ++l) {
    const Tensor t = layers[size_t(l)].second;
    const int64_t c = t.dim(-3), h = t.dim(-2), w = t.dim(-1);
    const auto v = t.to_vector();
    for (int64_t m = 0; m < c; ++m) {
      std::vector<float> map(v.begin() + m * h * w, v.begin() + (m + 1) * h * w);
      const auto [mn, mx] = std::minmax_element(map.begin(), map.end());
      const float lo = *mn, hi = *mx;
      for (auto& e : map) e = hi > lo ? (e - lo) / (hi - lo) : 0.0f;
      expect_tile(img, gs[size_t(l)].cell(0, int(m)), Tensor::from_vector({1, h, w}, map), gs[size_t(l)].cell_w / int(w));
    }
    EXPECT_GT(count_not(img, {0, gs[size_t(l)].origin_y, gs[size_t(l)].origin_x, text_height()}, colors::background),
              15);  // the layer name
  }
  expect_png_roundtrip(img, "features.png");

  // With the input image: a first block holding it in colour, upscaled like the maps.
  const Tensor input = random_images(1, 3, 4, 4, 21);
  const auto gi = feature_maps_layout(layers, 2, input);
  ASSERT_EQ(gi.size(), 3u);
  EXPECT_EQ(gi[0].columns, 1);
  EXPECT_EQ(gi[1].origin_y, gi[0].origin_y + std::max(text_height(), 8) + 3 * kPad);
  const Image with_input = feature_maps_image(layers, 2, input);
  ASSERT_EQ(with_input.height, gi[0].height);
  expect_tile(with_input, gi[0].cell(0, 0), input, 2);
  EXPECT_GT(count_not(with_input, {0, gi[0].origin_y, gi[0].origin_x, text_height()}, colors::background), 15);
  EXPECT_CONTAINS(error_of([] { feature_maps_image({{"x", Tensor({2, 2})}}, 1); }), "layer 'x'");
}

}  // namespace
}  // namespace cnn
