// Grid figures of cnn/pictures.hpp: data-set samples, confusion matrix, misclassified images,
// conv filters and feature maps. Each figure is drawn from its *_layout geometry.
#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "cnn/error.hpp"
#include "cnn/pictures.hpp"

namespace cnn {
namespace {

int max_text_width(const std::vector<std::string>& texts, float size = kTextSize) {
  int w = 0;
  for (const auto& t : texts) w = std::max(w, text_width(t, size));
  return w;
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Perceived brightness, 0..255 (BT.601).
double luma(Color c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; }

// True when any value lies outside [0, 1] (standardised images): such tiles are normalised.
bool outside_unit_range(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!(p[i] >= 0.0f && p[i] <= 1.0f)) return true;
  return false;
}

void check_images(const Tensor& x, const char* what) {
  CNN_CHECK(x.rank() == 4 && (x.dim(1) == 1 || x.dim(1) == 3), what,
            ": images must be [N, C, H, W] with C = 1 or 3, got ", shape_str(x.shape()));
}

// A CPU view of the images (the tensor itself when it already lives there).
Tensor on_host(const Tensor& t) { return t.device() == Device::CPU ? t : t.to(Device::CPU); }

std::string class_name(const std::vector<std::string>& names, int label) {
  if (label >= 0 && size_t(label) < names.size()) return names[size_t(label)];
  return std::to_string(label);
}

}  // namespace

// ---- Data grid ---------------------------------------------------------------------------
GridLayout data_grid_layout(const Dataset& data, int per_class, int scale) {
  check_images(data.x, "data_grid");
  CNN_CHECK(per_class >= 1 && scale >= 1, "data_grid: per_class and scale must be >= 1, got ", per_class, " and ",
            scale);
  CNN_CHECK(data.num_classes() >= 1, "data_grid: the data set has no class names");
  const int label_w = max_text_width(data.class_names) + 2 * kPad;
  GridLayout g;
  g.rows = data.num_classes();
  g.columns = per_class;
  g.cell_w = int(data.x.dim(3)) * scale;
  g.cell_h = int(data.x.dim(2)) * scale;
  const int row_h = std::max(g.cell_h, text_height());
  g.step_x = g.cell_w + kGap;
  g.step_y = row_h + kGap;
  g.origin_x = label_w;
  g.origin_y = kMargin + (row_h - g.cell_h) / 2;
  g.width = label_w + per_class * g.step_x - kGap + kMargin;
  g.height = 2 * kMargin + g.rows * g.step_y - kGap;
  return g;
}

Image data_grid(const Dataset& data, int per_class, int scale) {
  const GridLayout g = data_grid_layout(data, per_class, scale);
  const Tensor x = on_host(data.x);
  const std::vector<float> labels = data.y.to_vector();
  CNN_CHECK(int64_t(labels.size()) == data.size(), "data_grid: ", labels.size(), " labels for ", data.size(),
            " images");
  const bool normalize = outside_unit_range(x.data(), x.numel());
  std::vector<std::vector<int64_t>> picks(size_t(g.rows));
  for (int64_t i = 0; i < int64_t(labels.size()); ++i) {
    const int c = int(labels[size_t(i)]);
    CNN_CHECK(c >= 0 && c < g.rows && float(c) == labels[size_t(i)], "data_grid: label ", labels[size_t(i)],
              " of image ", i, " is not a class index in [0, ", g.rows, ")");
    if (int(picks[size_t(c)].size()) < per_class) picks[size_t(c)].push_back(i);
  }
  Image img(g.width, g.height, colors::background);
  const int th = text_height();
  const int row_h = g.step_y - kGap;
  for (int r = 0; r < g.rows; ++r) {
    const int row_top = kMargin + r * g.step_y;
    draw_text(img, g.origin_x - kPad, row_top + (row_h - th) / 2, data.class_names[size_t(r)], colors::black,
              kTextSize, Align::Right);
    for (int j = 0; j < per_class; ++j) {
      const Rect cell = g.cell(r, j);
      if (j < int(picks[size_t(r)].size())) {
        const int64_t i = picks[size_t(r)][size_t(j)];
        blit(img, x.slice(i, i + 1), cell.x, cell.y, scale, normalize);
      } else {
        fill_rect(img, cell, colors::tile_background);
      }
    }
  }
  return img;
}

// ---- Confusion matrix -------------------------------------------------------------------------
namespace {

struct ConfusionGeometry {
  GridLayout grid;
  std::vector<std::string> names;
  bool names_fit = true;  // column labels horizontal
};

ConfusionGeometry confusion_geometry(const std::vector<std::vector<int64_t>>& counts,
                                     const std::vector<std::string>& class_names) {
  const int k = int(counts.size());
  CNN_CHECK(k >= 1, "confusion_matrix_image: no classes");
  CNN_CHECK(class_names.empty() || int(class_names.size()) == k, "confusion_matrix_image: ", class_names.size(),
            " class names for a ", k, "x", k, " matrix");
  ConfusionGeometry geo;
  int count_w = 0;
  for (int r = 0; r < k; ++r) {
    CNN_CHECK(int(counts[size_t(r)].size()) == k, "confusion_matrix_image: row ", r, " has ",
              counts[size_t(r)].size(), " counts, expected ", k);
    for (int64_t v : counts[size_t(r)]) {
      CNN_CHECK(v >= 0, "confusion_matrix_image: negative count ", v, " in row ", r);
      count_w = std::max(count_w, text_width(std::to_string(v)));
    }
    geo.names.push_back(class_names.empty() ? std::to_string(r) : class_names[size_t(r)]);
  }
  const int th = text_height();
  const int name_w = max_text_width(geo.names);
  GridLayout& g = geo.grid;
  g.rows = g.columns = k;
  g.cell_w = g.cell_h = std::max(kConfusionCell, count_w + 2 * kPad);
  g.step_x = g.step_y = g.cell_w;
  geo.names_fit = name_w <= g.cell_w - 4;
  g.origin_x = kMargin + th + kPad + name_w + kPad;
  g.origin_y = kMargin + th + kPad + (geo.names_fit ? th : name_w) + kPad;
  // At least as wide and tall as the axis titles, which are centred on the matrix.
  const int side = k * g.cell_w;
  const int matrix_w = std::max(side, text_width("predicted label"));
  const int matrix_h = std::max(side, text_width("true label"));
  g.width = g.origin_x + matrix_w + kMargin;
  g.height = g.origin_y + matrix_h + kMargin;
  return geo;
}

}  // namespace

Color heat_color(double t) {
  // A white-to-blue ramp (ColorBrewer "Blues"); each anchor darker than the last.
  static constexpr std::array<Color, 9> ramp = {
      Color{247, 251, 255}, Color{222, 235, 247}, Color{198, 219, 239}, Color{158, 202, 225}, Color{107, 174, 214},
      Color{66, 146, 198},  Color{33, 113, 181},  Color{8, 81, 156},    Color{8, 48, 107}};
  if (!(t > 0)) return ramp.front();
  if (t >= 1) return ramp.back();
  const double pos = t * double(ramp.size() - 1);
  const size_t i = size_t(pos);
  const double f = pos - double(i);
  auto mix = [&](uint8_t a, uint8_t b) { return uint8_t(std::lround(a + (double(b) - a) * f)); };
  return {mix(ramp[i].r, ramp[i + 1].r), mix(ramp[i].g, ramp[i + 1].g), mix(ramp[i].b, ramp[i + 1].b)};
}

GridLayout confusion_matrix_layout(const std::vector<std::vector<int64_t>>& counts,
                                   const std::vector<std::string>& class_names) {
  return confusion_geometry(counts, class_names).grid;
}

Image confusion_matrix_image(const std::vector<std::vector<int64_t>>& counts,
                             const std::vector<std::string>& class_names) {
  const ConfusionGeometry geo = confusion_geometry(counts, class_names);
  const GridLayout& g = geo.grid;
  const int k = g.rows, th = text_height(), side = k * g.cell_w;
  int64_t max_count = 0;
  for (const auto& row : counts)
    for (int64_t v : row) max_count = std::max(max_count, v);
  Image img(g.width, g.height, colors::background);
  for (int r = 0; r < k; ++r) {
    for (int c = 0; c < k; ++c) {
      const Rect cell = g.cell(r, c);
      const int64_t v = counts[size_t(r)][size_t(c)];
      const Color bg = heat_color(max_count > 0 ? double(v) / double(max_count) : 0.0);
      fill_rect(img, cell, bg);
      const Color fg = luma(bg) < 128 ? colors::white : colors::black;
      draw_text(img, cell.x + cell.w / 2, cell.y + (cell.h - th) / 2, std::to_string(v), fg, kTextSize, Align::Center);
    }
  }
  draw_rect(img, g.origin_x - 1, g.origin_y - 1, side + 2, side + 2, colors::axis);
  for (int i = 0; i < k; ++i) {
    const Rect row = g.cell(i, 0), col = g.cell(0, i);
    draw_text(img, g.origin_x - kPad, row.y + (row.h - th) / 2, geo.names[size_t(i)], colors::black, kTextSize,
              Align::Right);
    if (geo.names_fit)
      draw_text(img, col.x + col.w / 2, g.origin_y - kPad - th, geo.names[size_t(i)], colors::black, kTextSize,
                Align::Center);
    else
      draw_text_vertical(img, col.x + (col.w - th) / 2, g.origin_y - kPad, geo.names[size_t(i)], colors::black,
                         kTextSize, Align::Left);
  }
  draw_text(img, g.origin_x + side / 2, kMargin, "predicted label", colors::axis, kTextSize, Align::Center);
  draw_text_vertical(img, kMargin, g.origin_y + side / 2, "true label", colors::axis, kTextSize, Align::Center);
  return img;
}

// ---- Misclassified images -------------------------------------------------------------------
namespace {

struct MistakesGeometry {
  GridLayout grid;
  std::vector<int64_t> shown;
};

MistakesGeometry mistakes_geometry(const Tensor& images, const std::vector<int>& true_labels,
                                   const std::vector<int>& predicted_labels,
                                   const std::vector<std::string>& class_names, int max_count, int scale) {
  check_images(images, "mistakes_grid");
  const int64_t n = images.dim(0);
  CNN_CHECK(int64_t(true_labels.size()) == n && int64_t(predicted_labels.size()) == n, "mistakes_grid: ",
            true_labels.size(), " true and ", predicted_labels.size(), " predicted labels for ", n, " images");
  CNN_CHECK(max_count >= 0 && scale >= 1, "mistakes_grid: max_count must be >= 0 and scale >= 1, got ", max_count,
            " and ", scale);
  MistakesGeometry geo;
  int caption_w = 0;
  for (int64_t i = 0; i < n && int(geo.shown.size()) < max_count; ++i) {
    const int t = true_labels[size_t(i)], p = predicted_labels[size_t(i)];
    if (t == p) continue;
    geo.shown.push_back(i);
    caption_w = std::max({caption_w, text_width("true: " + class_name(class_names, t)),
                          text_width("pred: " + class_name(class_names, p))});
  }
  GridLayout& g = geo.grid;
  const int th = text_height();
  if (geo.shown.empty()) {
    g.width = 2 * kMargin + text_width("no misclassified images");
    g.height = 2 * kMargin + th;
    return geo;
  }
  const int tile_w = int(images.dim(3)) * scale, tile_h = int(images.dim(2)) * scale;
  const int shown = int(geo.shown.size());
  g.columns = std::min(shown, kMistakesColumns);
  g.rows = ceil_div(shown, g.columns);
  g.cell_w = std::max(tile_w, caption_w);
  g.cell_h = tile_h;
  g.step_x = g.cell_w + 2 * kPad;
  g.step_y = tile_h + kGap + 2 * th + kPad;
  g.origin_x = g.origin_y = kMargin;
  g.width = 2 * kMargin + g.columns * g.step_x - 2 * kPad;
  g.height = 2 * kMargin + g.rows * g.step_y - kPad;
  return geo;
}

}  // namespace

GridLayout mistakes_grid_layout(const Tensor& images, const std::vector<int>& true_labels,
                                const std::vector<int>& predicted_labels,
                                const std::vector<std::string>& class_names, int max_count, int scale) {
  return mistakes_geometry(images, true_labels, predicted_labels, class_names, max_count, scale).grid;
}

Image mistakes_grid(const Tensor& images, const std::vector<int>& true_labels,
                    const std::vector<int>& predicted_labels, const std::vector<std::string>& class_names,
                    int max_count, int scale) {
  const MistakesGeometry geo =
      mistakes_geometry(images, true_labels, predicted_labels, class_names, max_count, scale);
  const GridLayout& g = geo.grid;
  Image img(g.width, g.height, colors::background);
  if (geo.shown.empty()) {
    draw_text(img, kMargin, kMargin, "no misclassified images", colors::black);
    return img;
  }
  const Tensor x = on_host(images);
  const int64_t per_image = x.numel() / x.dim(0);
  bool normalize = false;
  for (int64_t i : geo.shown) normalize = normalize || outside_unit_range(x.data() + i * per_image, per_image);
  const int tile_w = int(x.dim(3)) * scale, th = text_height();
  for (size_t s = 0; s < geo.shown.size(); ++s) {
    const int64_t i = geo.shown[s];
    const Rect cell = g.cell(int(s) / g.columns, int(s) % g.columns);
    blit(img, x.slice(i, i + 1), cell.x + (cell.w - tile_w) / 2, cell.y, scale, normalize);
    const int cx = cell.x + cell.w / 2, cy = cell.y + cell.h + kGap;
    draw_text(img, cx, cy, "true: " + class_name(class_names, true_labels[size_t(i)]), colors::good, kTextSize,
              Align::Center);
    draw_text(img, cx, cy + th, "pred: " + class_name(class_names, predicted_labels[size_t(i)]), colors::bad,
              kTextSize, Align::Center);
  }
  return img;
}

// ---- Conv filters -----------------------------------------------------------------------------
namespace {

std::string filters_caption(const Shape& shape) {
  const std::string k = std::to_string(shape[2]) + "x" + std::to_string(shape[3]);
  const std::string n = std::to_string(shape[0]) + (shape[0] == 1 ? " filter " : " filters ") + k;
  if (shape[1] == 3) return n + ", RGB";
  if (shape[1] == 1) return n;
  return n + ": one row per filter, one column per input channel (" + std::to_string(shape[1]) + ")";
}

}  // namespace

GridLayout filters_layout(const Shape& shape, int scale) {
  CNN_CHECK(shape.size() == 4, "filters_image: weights must be [c_out, c_in, kh, kw], got ", shape_str(shape));
  CNN_CHECK(scale >= 1, "filters_image: scale must be >= 1, got ", scale);
  check_shape(shape, "filters_image");
  const int c_out = int(shape[0]), c_in = int(shape[1]);
  GridLayout g;
  g.cell_w = int(shape[3]) * scale;
  g.cell_h = int(shape[2]) * scale;
  if (c_in == 1 || c_in == 3) {
    g.columns = c_out <= 8 ? c_out : std::max(8, int(std::ceil(std::sqrt(double(c_out)))));
    g.rows = ceil_div(c_out, g.columns);
  } else {
    g.rows = c_out;
    g.columns = c_in;
  }
  g.step_x = g.cell_w + kGap;
  g.step_y = g.cell_h + kGap;
  g.origin_x = kMargin;
  g.origin_y = kMargin + text_height() + kPad;
  g.width = 2 * kMargin + std::max(g.columns * g.step_x - kGap, text_width(filters_caption(shape)));
  g.height = g.origin_y + g.rows * g.step_y - kGap + kMargin;
  return g;
}

Image filters_image(const Tensor& conv_weights, int scale) {
  const GridLayout g = filters_layout(conv_weights.shape(), scale);
  const int64_t c_out = conv_weights.dim(0), c_in = conv_weights.dim(1), kh = conv_weights.dim(2),
                kw = conv_weights.dim(3);
  const std::vector<float> w = conv_weights.to_vector();
  const int64_t per_filter = c_in * kh * kw, plane = kh * kw;
  Image img(g.width, g.height, colors::background);
  draw_text(img, kMargin, kMargin, filters_caption(conv_weights.shape()), colors::black);
  for (int64_t f = 0; f < c_out; ++f) {
    const auto first = w.begin() + f * per_filter;
    const auto [mn, mx] = std::minmax_element(first, first + per_filter);
    const float lo = *mn, inv = *mx > *mn ? 1.0f / (*mx - *mn) : 0.0f;
    std::vector<float> v(first, first + per_filter);
    for (float& e : v) e = (e - lo) * inv;
    if (c_in == 1 || c_in == 3) {
      const Rect cell = g.cell(int(f) / g.columns, int(f) % g.columns);
      blit(img, Tensor::from_vector({c_in, kh, kw}, v), cell.x, cell.y, scale);
    } else {
      for (int64_t c = 0; c < c_in; ++c) {
        const Rect cell = g.cell(int(f), int(c));
        const std::vector<float> ch(v.begin() + c * plane, v.begin() + (c + 1) * plane);
        blit(img, Tensor::from_vector({1, kh, kw}, ch), cell.x, cell.y, scale);
      }
    }
  }
  return img;
}

// ---- Feature maps -----------------------------------------------------------------------------
namespace {

struct MapBlock {
  std::string name;
  Tensor t;
  int64_t tiles = 0, h = 0, w = 0;
  bool image = false;  // the input image: one tile, in colour when it has 3 channels
};

std::vector<MapBlock> map_blocks(const std::vector<std::pair<std::string, Tensor>>& layers, const Tensor& input) {
  std::vector<MapBlock> blocks;
  if (!input.empty()) {
    CNN_CHECK((input.rank() == 3 || (input.rank() == 4 && input.dim(0) == 1)) &&
                  (input.dim(-3) == 1 || input.dim(-3) == 3),
              "feature_maps_image: the input image must be [C, H, W] or [1, C, H, W] with C = 1 or 3, got ",
              shape_str(input.shape()));
    blocks.push_back({"input", input, 1, input.dim(-2), input.dim(-1), true});
  }
  for (const auto& [name, t] : layers) {
    CNN_CHECK(t.rank() == 3 || (t.rank() == 4 && t.dim(0) == 1), "feature_maps_image: maps of layer '", name,
              "' must be [C, H, W] or [1, C, H, W], got ", shape_str(t.shape()));
    blocks.push_back({name, t, t.dim(-3), t.dim(-2), t.dim(-1), false});
  }
  CNN_CHECK(!blocks.empty(), "feature_maps_image: no layers");
  return blocks;
}

std::vector<GridLayout> map_layouts(const std::vector<MapBlock>& blocks, int scale) {
  CNN_CHECK(scale >= 1, "feature_maps_image: scale must be >= 1, got ", scale);
  std::vector<std::string> names;
  int64_t h_max = 0;
  for (const auto& b : blocks) {
    names.push_back(b.name);
    h_max = std::max(h_max, b.h);
  }
  const int label_w = max_text_width(names) + 2 * kPad;
  const int th = text_height();
  std::vector<GridLayout> out;
  int y = kMargin, width = 0;
  for (const auto& b : blocks) {
    const int f = int(std::max<int64_t>(1, int64_t(scale) * h_max / b.h));
    GridLayout g;
    g.cell_w = int(b.w) * f;
    g.cell_h = int(b.h) * f;
    g.columns = int(std::min<int64_t>(b.tiles, kFeatureColumns));
    g.rows = ceil_div(int(b.tiles), g.columns);
    g.step_x = g.cell_w + kGap;
    g.step_y = g.cell_h + kGap;
    g.origin_x = label_w;
    g.origin_y = y;
    y += std::max(th, g.rows * g.step_y - kGap) + 3 * kPad;
    width = std::max(width, label_w + g.columns * g.step_x - kGap + kMargin);
    out.push_back(g);
  }
  const int height = y - 3 * kPad + kMargin;
  for (auto& g : out) {
    g.width = width;
    g.height = height;
  }
  return out;
}

}  // namespace

std::vector<GridLayout> feature_maps_layout(const std::vector<std::pair<std::string, Tensor>>& layers, int scale,
                                            const Tensor& input) {
  return map_layouts(map_blocks(layers, input), scale);
}

Image feature_maps_image(const std::vector<std::pair<std::string, Tensor>>& layers, int scale, const Tensor& input) {
  const auto blocks = map_blocks(layers, input);
  const auto grids = map_layouts(blocks, scale);
  Image img(grids[0].width, grids[0].height, colors::background);
  for (size_t l = 0; l < blocks.size(); ++l) {
    const MapBlock& b = blocks[l];
    const GridLayout& g = grids[l];
    const int f = g.cell_w / int(b.w);
    draw_text(img, g.origin_x - kPad, g.origin_y, b.name, colors::black, kTextSize, Align::Right);
    if (l > 0) fill_rect(img, kMargin, g.origin_y - 3 * kPad / 2 - 1, g.width - 2 * kMargin, 1, colors::grid);
    const Tensor host = on_host(b.t);
    if (b.image) {
      blit(img, host, g.origin_x, g.origin_y, f, outside_unit_range(host.data(), host.numel()));
      continue;
    }
    const std::vector<float> v = host.to_vector();
    for (int64_t m = 0; m < b.tiles; ++m) {
      const Rect cell = g.cell(int(m) / g.columns, int(m) % g.columns);
      const std::vector<float> map(v.begin() + m * b.h * b.w, v.begin() + (m + 1) * b.h * b.w);
      blit(img, Tensor::from_vector({1, b.h, b.w}, map), cell.x, cell.y, f, /*normalize=*/true);
    }
  }
  return img;
}

}  // namespace cnn
