#pragma once
// Pictures: an RGB8 raster with a few drawing primitives, PNG output (stb_image_write), real
// text (stb_truetype with DejaVu Sans), and the figures the command line draws: data-set
// grids, training curves, confusion matrices, misclassified images, conv filters and
// feature maps.
//
// Coordinates are in pixels, x to the right and y down, (0, 0) the top-left pixel; for lines
// and circles integer coordinates are pixel centres. Drawing clips at the image border.
//
// Text: the font is DejaVu Sans, looked for at $CNN_FONT, then
// /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf and the other usual places (font_path()).
// Every function that writes text throws cnn::Error naming those places when it is missing
// (Debian/Ubuntu: apt-get install fonts-dejavu-core).
//
// Every figure documents its size; the *_layout functions return the exact geometry (size and
// where each tile or cell is) that the figure functions use, so callers and tests can find
// any part of a picture.
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "cnn/data.hpp"
#include "cnn/tensor.hpp"

namespace cnn {

// ---- Raster -----------------------------------------------------------------------
struct Color {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Color&) const = default;
};

namespace colors {
inline constexpr Color white{255, 255, 255}, black{0, 0, 0}, grid{225, 225, 225}, axis{60, 60, 60};
inline constexpr Color background{255, 255, 255}, tile_background{128, 128, 128};
inline constexpr Color train{31, 119, 180};       // training curves: blue
inline constexpr Color validation{255, 127, 14};  // validation curves: orange
inline constexpr Color good{0, 110, 40}, bad{200, 20, 20};  // captions: true / predicted class
}  // namespace colors

struct Rect {
  int x = 0, y = 0, w = 0, h = 0;
  bool operator==(const Rect&) const = default;
};

// RGB, 8 bits per channel, rows top to bottom: pixel (x, y) is pixels[3 * (y * width + x) + 0..2].
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  // Throws cnn::Error unless 1 <= width, height <= 32768.
  Image(int width, int height, Color fill = colors::background);
  bool empty() const { return width == 0 || height == 0; }
  bool contains(int x, int y) const { return x >= 0 && y >= 0 && x < width && y < height; }
  Color get(int x, int y) const;    // throws cnn::Error outside the image
  void set(int x, int y, Color c);  // does nothing outside the image
  // Mixes c into pixel (x, y) with weight alpha in [0, 1]; nothing outside the image.
  void blend(int x, int y, Color c, float alpha);
};

// Writes a PNG (stb_image_write); throws cnn::Error naming the path when it cannot.
void save_png(const Image& image, const std::string& path);
// The same PNG as bytes in memory (for files that embed images, e.g. TensorBoard's).
std::string encode_png(const Image& image);
// Reads any PNG/JPEG/BMP file as RGB (stb_image); throws cnn::Error naming the path.
Image read_image_rgb(const std::string& path);

// Filled rectangle [x, x + w) x [y, y + h), clipped.
void fill_rect(Image& image, int x, int y, int w, int h, Color c);
inline void fill_rect(Image& image, const Rect& r, Color c) { fill_rect(image, r.x, r.y, r.w, r.h, c); }
// Rectangle outline `thickness` pixels wide, drawn inside [x, x + w) x [y, y + h).
void draw_rect(Image& image, int x, int y, int w, int h, Color c, int thickness = 1);
// Anti-aliased line segment between pixel centres with round ends; the pixels within
// thickness/2 - 0.5 of the segment get exactly colour c.
void draw_line(Image& image, double x0, double y0, double x1, double y1, Color c, double thickness = 1.0);
// Anti-aliased filled disc.
void fill_circle(Image& image, double cx, double cy, double radius, Color c);

// Draws a [C, H, W] (or [1, C, H, W]) image tensor, C = 1 (grey) or 3 (RGB), with its top-left
// corner at (x, y), every tensor pixel as a scale x scale block (nearest neighbour). Values are
// clamped to [0, 1] and written as round(v * 255). With normalize, the image's own min..max is
// mapped to 0..1 first (a constant image comes out black): for filters and feature maps.
void blit(Image& image, const Tensor& chw, int x, int y, int scale = 1, bool normalize = false);
// The same on a new W*scale x H*scale image.
Image tensor_image(const Tensor& chw, int scale = 1, bool normalize = false);

// ---- Text ---------------------------------------------------------------------------
inline constexpr float kTextSize = 14.0f;   // labels, tick labels, captions (pixel height)
inline constexpr float kTitleSize = 17.0f;  // titles

// The DejaVu Sans file used for text; throws cnn::Error listing the places looked at.
std::string font_path();
// Width in pixels of `text` (UTF-8) at pixel height `size` (the sum of advances with kerning,
// rounded up): text drawn at x covers [x, x + text_width).
int text_width(const std::string& text, float size = kTextSize);
// Height of a line of text: the font's ascent minus its descent at `size`, rounded up.
int text_height(float size = kTextSize);

enum class Align { Left, Center, Right };
// Draws one line of UTF-8 text whose box (text_width x text_height) has its top edge at y and
// its left edge, centre or right edge at x per `align`. Returns the box.
Rect draw_text(Image& image, int x, int y, const std::string& text, Color c, float size = kTextSize,
               Align align = Align::Left);
// The same text turned 90 degrees counter-clockwise, reading bottom to top: its box is
// text_height wide and text_width tall with its left edge at x. Along the reading direction
// y anchors the text as x does for draw_text: Left: the text starts at y (the box's bottom
// edge is y), Center: it is centred on y, Right: it ends at y (the box's top edge is y).
Rect draw_text_vertical(Image& image, int x, int y, const std::string& text, Color c, float size = kTextSize,
                        Align align = Align::Left);

// ---- Figures --------------------------------------------------------------------------
// A regular grid of rows x columns cells inside a picture: cell (row, col) is
// Rect{origin_x + col * step_x, origin_y + row * step_y, cell_w, cell_h}.
struct GridLayout {
  int width = 0, height = 0;  // the whole picture
  int rows = 0, columns = 0;
  int origin_x = 0, origin_y = 0;
  int cell_w = 0, cell_h = 0;
  int step_x = 0, step_y = 0;
  Rect cell(int row, int col) const {
    return {origin_x + col * step_x, origin_y + row * step_y, cell_w, cell_h};
  }
};

inline constexpr int kGap = 2;       // between tiles
inline constexpr int kPad = 8;       // around text
inline constexpr int kMargin = 10;   // around a figure

// One row per class, the class name (right-aligned, kTextSize) on the left, then the first
// `per_class` images of that class in data-set order, each W*scale x H*scale (grey slots where
// a class has fewer). Pixels are shown as round(clamp(v, 0, 1) * 255), so a tile is exactly its
// source image upscaled; when any value of the data set lies outside [0, 1] (standardised data)
// every tile is min-max normalised instead.
// Size (data_grid_layout): label column L = max text_width(class name) + 2 * kPad;
// tile_w = W * scale, tile_h = H * scale, row_h = max(tile_h, text_height());
// width = L + per_class * (tile_w + kGap) + kMargin - kGap, height = 2 * kMargin + classes * (row_h + kGap) - kGap;
// tile (class c, example j) at x = L + j * (tile_w + kGap), y = kMargin + c * (row_h + kGap)
// (+ (row_h - tile_h) / 2 when the text is taller than a tile).
GridLayout data_grid_layout(const Dataset& data, int per_class, int scale);
Image data_grid(const Dataset& data, int per_class, int scale);

// Per-epoch metrics, as a training log holds them. NaN marks an absent value.
struct EpochMetrics {
  double epoch = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();
  double lr = std::numeric_limits<double>::quiet_NaN();
  double seconds = std::numeric_limits<double>::quiet_NaN();
};

// Reads a metrics CSV: a header line naming at least epoch, loss and accuracy, optionally
// val_loss, val_accuracy, lr, seconds, in any order (other columns are ignored), then one line
// per epoch. Empty cells and "nan" are absent values; blank lines are skipped. Throws
// cnn::Error naming the file and line number of a malformed line (wrong field count, a value
// that is not a number) or the missing columns.
std::vector<EpochMetrics> read_metrics_csv(const std::string& path);

// Two panels side by side, loss (left) and accuracy (right) against epoch: training in
// colors::train, validation (when any val value is present) in colors::validation, lines 2 px
// wide with a dot per epoch, grid lines, axes, ticks with labels, axis titles, panel titles and
// a legend above each panel. `title`, when not empty, is centred above both panels.
// Size: kCurvesWidth x kCurvesHeight, plus text_height(kTitleSize) + kPad with a title.
inline constexpr int kCurvesWidth = 1200, kCurvesHeight = 460;
Image plot_training_curves(const std::vector<EpochMetrics>& epochs, const std::string& title = "");

// A heat map of counts[true][predicted] (rows: true class, columns: predicted class) from
// near-white (0) to dark blue (the largest count), each cell holding its count in black or
// white, whichever contrasts; class names label the rows (left) and columns (top, written
// vertically when wider than a cell); axis titles "true label" and "predicted label".
// `class_names` may be empty (the names become "0", "1", ...).
// Size (confusion_matrix_layout): cell = max(kConfusionCell, widest count + 2 * kPad);
// origin_x = kMargin + text_height() + kPad + (widest name) + kPad,
// origin_y = kMargin + text_height() + kPad + (widest name, or text_height() when names fit
// horizontally) + kPad; width = origin_x + max(K * cell, text_width("predicted label")) + kMargin,
// height = origin_y + max(K * cell, text_width("true label")) + kMargin.
inline constexpr int kConfusionCell = 44;
GridLayout confusion_matrix_layout(const std::vector<std::vector<int64_t>>& counts,
                                   const std::vector<std::string>& class_names);
Image confusion_matrix_image(const std::vector<std::vector<int64_t>>& counts,
                             const std::vector<std::string>& class_names);
// The colour of a cell holding fraction t (count / largest count) of the scale: t = 0 is
// near-white, t = 1 dark blue; darker (lower luma) as t rises.
Color heat_color(double t);

// Up to max_count misclassified images (true_labels[i] != predicted_labels[i]) of images
// [N, C, H, W], in order, kMistakesColumns to a row; each tile W*scale x H*scale with the
// captions "true: <name>" (colors::good) and "pred: <name>" (colors::bad) under it. The tile
// is centred horizontally in cell(r, c) at its top (pixel values as in data_grid), the two
// caption lines centred below it from cell.y + cell_h + kGap. Labels without a class name
// are written as numbers.
// Size (mistakes_grid_layout): cell_w = max(tile_w, widest caption), cell_h = tile_h,
// step_x = cell_w + 2 * kPad, step_y = tile_h + kGap + 2 * text_height() + kPad; origin
// (kMargin, kMargin); columns = min(shown, kMistakesColumns); width = 2 * kMargin + columns * step_x
// - 2 * kPad, height = 2 * kMargin + rows * step_y - kPad. With no mistakes: a one-line
// "no misclassified images" picture.
inline constexpr int kMistakesColumns = 8;
GridLayout mistakes_grid_layout(const Tensor& images, const std::vector<int>& true_labels,
                                const std::vector<int>& predicted_labels,
                                const std::vector<std::string>& class_names, int max_count, int scale);
Image mistakes_grid(const Tensor& images, const std::vector<int>& true_labels,
                    const std::vector<int>& predicted_labels, const std::vector<std::string>& class_names,
                    int max_count, int scale);

// Conv weights [c_out, c_in, kh, kw] as tiles of kw*scale x kh*scale under a one-line caption
// ("32 filters 3x3, RGB"), each filter min-max normalised over all its c_in * kh * kw values.
// c_in == 3: one colour tile per filter; c_in == 1: one grey tile per filter; both in a grid of
// min(c_out, max(8, ceil(sqrt(c_out)))) columns. Other c_in: one row per filter, one grey tile
// per input channel.
// Size (filters_layout): step = tile + kGap, origin (kMargin, kMargin + text_height() + kPad),
// width = 2 * kMargin + max(columns * step_x - kGap, caption width),
// height = origin_y + rows * step_y - kGap + kMargin.
GridLayout filters_layout(const Shape& weights_shape, int scale);
Image filters_image(const Tensor& conv_weights, int scale);

// Feature maps of several layers (name, [C, H, W] or [1, C, H, W]), Zeiler & Fergus style: one
// block per layer, its name on the left, then its C maps, each min-max normalised (a constant
// map is black), up to kFeatureColumns per line. `input`, when given ([C, H, W] or
// [1, C, H, W], C = 1 or 3), comes first as one tile labelled "input", in colour when C = 3
// (values as in data_grid). Maps are upscaled by f = max(1, scale * Hmax / H) (Hmax: the tallest
// of all blocks) so that deeper, smaller maps show at about the same size.
// Size (feature_maps_layout: one GridLayout per block, the input's first when given, all with
// the picture's width/height): label column L = max text_width(name) + 2 * kPad; a block's
// tiles are W*f x H*f, step tile + kGap, columns min(C, kFeatureColumns), rows ceil(C / columns),
// origin (L, y) where y starts at kMargin and each block adds max(text_height(),
// rows * step_y - kGap) + 3 * kPad; width = L + max(columns * step_x - kGap) + kMargin,
// height = last block's y + its height + kMargin.
inline constexpr int kFeatureColumns = 16;
std::vector<GridLayout> feature_maps_layout(const std::vector<std::pair<std::string, Tensor>>& layers, int scale,
                                            const Tensor& input = Tensor());
Image feature_maps_image(const std::vector<std::pair<std::string, Tensor>>& layers, int scale,
                         const Tensor& input = Tensor());

}  // namespace cnn
