// Training curves for cnn/pictures.hpp: the metrics CSV reader and the two-panel plot of loss
// and accuracy against epoch.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "cnn/error.hpp"
#include "cnn/pictures.hpp"

namespace cnn {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, ',')) out.push_back(trim(field));
  if (!line.empty() && line.back() == ',') out.emplace_back();
  return out;
}

// A number, or NaN for an empty cell / "nan"; false when the text is not a number.
bool parse_number(const std::string& s, double* out) {
  if (s.empty()) {
    *out = kNaN;
    return true;
  }
  std::string lower(s);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (lower == "nan" || lower == "-nan") {
    *out = kNaN;
    return true;
  }
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE) return false;
  *out = v;
  return true;
}

}  // namespace

std::vector<EpochMetrics> read_metrics_csv(const std::string& path) {
  std::ifstream in(path);
  CNN_CHECK(in.good(), "read_metrics_csv: cannot open ", path);
  // Column name -> field of EpochMetrics (Keras's older "acc" / "val_acc" are accepted too).
  const std::map<std::string, double EpochMetrics::*> known = {
      {"epoch", &EpochMetrics::epoch},         {"loss", &EpochMetrics::loss},
      {"accuracy", &EpochMetrics::accuracy},   {"acc", &EpochMetrics::accuracy},
      {"val_loss", &EpochMetrics::val_loss},   {"val_accuracy", &EpochMetrics::val_accuracy},
      {"val_acc", &EpochMetrics::val_accuracy}, {"lr", &EpochMetrics::lr},
      {"learning_rate", &EpochMetrics::lr},    {"seconds", &EpochMetrics::seconds}};
  std::vector<double EpochMetrics::*> columns;  // nullptr: ignored column
  std::vector<std::string> header;
  std::vector<EpochMetrics> rows;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (trim(line).empty()) continue;
    const auto fields = split_csv(line);
    if (header.empty()) {
      header = fields;
      bool has_epoch = false, has_loss = false, has_acc = false;
      for (const auto& name : header) {
        const auto it = known.find(name);
        columns.push_back(it == known.end() ? nullptr : it->second);
        has_epoch = has_epoch || name == "epoch";
        has_loss = has_loss || name == "loss";
        has_acc = has_acc || name == "accuracy" || name == "acc";
      }
      if (!has_epoch || !has_loss || !has_acc) {
        std::string missing;
        if (!has_epoch) missing += " epoch";
        if (!has_loss) missing += " loss";
        if (!has_acc) missing += " accuracy";
        fail("read_metrics_csv: ", path, ":", line_no, ": the header '", trim(line), "' lacks the column(s)", missing);
      }
      continue;
    }
    CNN_CHECK(fields.size() == header.size(), "read_metrics_csv: ", path, ":", line_no, ": ", fields.size(),
              " fields, expected ", header.size(), " as in the header");
    EpochMetrics m;
    for (size_t i = 0; i < fields.size(); ++i) {
      if (columns[i] == nullptr) continue;
      double v = 0;
      CNN_CHECK(parse_number(fields[i], &v), "read_metrics_csv: ", path, ":", line_no, ": ", header[i], " '",
                fields[i], "' is not a number");
      m.*columns[i] = v;
    }
    CNN_CHECK(std::isfinite(m.epoch), "read_metrics_csv: ", path, ":", line_no, ": the epoch is missing");
    rows.push_back(m);
  }
  CNN_CHECK(!header.empty(), "read_metrics_csv: ", path, " is empty (expected a header line such as "
            "epoch,loss,accuracy,val_loss,val_accuracy)");
  return rows;
}

namespace {

struct Axis {
  double lo = 0, hi = 1, step = 0.2;
  int decimals = 1;
  std::vector<double> ticks() const {
    std::vector<double> t;
    for (int i = 0;; ++i) {
      const double v = lo + i * step;
      if (v > hi + step * 1e-6) break;
      t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    }
    return t;
  }
  std::string label(double v) const {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
  }
};

// Ticks at 1, 2 or 5 times a power of ten, about `count` of them, covering [lo, hi].
Axis nice_axis(double lo, double hi, int count, bool integer) {
  if (!(hi > lo)) {
    const double pad = std::max(std::abs(lo) * 0.1, integer ? 1.0 : 0.05);
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, count);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw * (1 - 1e-9)) {
      step = m * mag;
      break;
    }
  if (integer) step = std::max(1.0, std::round(step));
  Axis a;
  a.step = step;
  a.lo = std::floor(lo / step + 1e-9) * step;
  a.hi = std::ceil(hi / step - 1e-9) * step;
  a.decimals = std::max(0, int(-std::floor(std::log10(step) + 1e-9)));
  return a;
}

struct Series {
  std::vector<double> x, y;
  Color color;
};

bool any_finite(const std::vector<double>& v) {
  return std::any_of(v.begin(), v.end(), [](double d) { return std::isfinite(d); });
}

void draw_panel(Image& img, const Rect& panel, const std::string& title, const std::string& y_title,
                const std::vector<Series>& series, const std::vector<std::string>& legend) {
  const int th = text_height(), title_h = text_height(kTitleSize);
  // Data ranges over the finite points.
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        x_lo = std::min(x_lo, s.x[i]);
        x_hi = std::max(x_hi, s.x[i]);
        y_lo = std::min(y_lo, s.y[i]);
        y_hi = std::max(y_hi, s.y[i]);
      }
  if (!std::isfinite(x_lo)) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  const Axis ya = nice_axis(y_lo, y_hi, 6, false);
  const auto y_ticks = ya.ticks();
  int y_label_w = 0;
  for (double t : y_ticks) y_label_w = std::max(y_label_w, text_width(ya.label(t)));

  const int plot_l = panel.x + kMargin + th + kPad + y_label_w + 8;
  const int plot_r = panel.x + panel.w - 2 * kMargin;
  const int plot_t = panel.y + title_h + 2 * kPad + 4;
  const int plot_b = panel.y + panel.h - (kMargin + th + kPad + th + 8);
  const int plot_w = plot_r - plot_l, plot_h = plot_b - plot_t;

  // Epoch ticks: integers, as many as fit with room between their labels.
  Axis xa;
  for (int count = 10; count >= 1; --count) {
    xa = nice_axis(x_lo, x_hi, count, true);
    const double px_per_step = (plot_w - 24) * xa.step / (xa.hi - xa.lo);
    if (px_per_step >= text_width(xa.label(xa.hi)) + 16) break;
  }
  // The data range sits a little inside the axes, so no point lands on an axis line.
  const int inset = 12;
  auto px = [&](double x) { return plot_l + inset + (x - xa.lo) / (xa.hi - xa.lo) * (plot_w - 2 * inset); };
  auto py = [&](double y) { return plot_b - inset - (y - ya.lo) / (ya.hi - ya.lo) * (plot_h - 2 * inset); };

  // Grid, axes, ticks and their labels.
  for (double t : y_ticks) {
    const int y = int(std::lround(py(t)));
    fill_rect(img, plot_l, y, plot_w + 1, 1, colors::grid);
    fill_rect(img, plot_l - 5, y, 5, 1, colors::axis);
    draw_text(img, plot_l - 8, y - th / 2, ya.label(t), colors::axis, kTextSize, Align::Right);
  }
  for (double t : xa.ticks()) {
    const int x = int(std::lround(px(t)));
    fill_rect(img, x, plot_t, 1, plot_h + 1, colors::grid);
    fill_rect(img, x, plot_b + 1, 1, 5, colors::axis);
    draw_text(img, x, plot_b + 8, xa.label(t), colors::axis, kTextSize, Align::Center);
  }
  fill_rect(img, plot_l, plot_b, plot_w + 1, 1, colors::axis);
  fill_rect(img, plot_l, plot_t, 1, plot_h + 1, colors::axis);
  draw_text(img, plot_l + plot_w / 2, plot_b + 8 + th + kPad / 2, "epoch", colors::black, kTextSize, Align::Center);
  draw_text_vertical(img, panel.x + kMargin, plot_t + plot_h / 2, y_title, colors::black, kTextSize, Align::Center);

  // The curves: 2 px lines, a dot per epoch when there is room.
  for (const auto& s : series) {
    const size_t n = s.x.size();
    const bool dots = n <= 1 || plot_w / double(n) >= 8;
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i])) continue;
      if (i + 1 < n && std::isfinite(s.y[i + 1]) && std::isfinite(s.x[i + 1]))
        draw_line(img, px(s.x[i]), py(s.y[i]), px(s.x[i + 1]), py(s.y[i + 1]), s.color, 2.0);
      if (dots) fill_circle(img, px(s.x[i]), py(s.y[i]), 3.0, s.color);
    }
  }

  // Title on the left of the header row, the legend on its right.
  draw_text(img, plot_l, panel.y + kPad, title, colors::black, kTitleSize);
  int lx = plot_r;
  const int ly = panel.y + kPad + (title_h - th) / 2;
  for (size_t i = series.size(); i-- > 0;) {
    const int w = text_width(legend[i]);
    lx -= w;
    draw_text(img, lx, ly, legend[i], colors::black);
    lx -= 6 + 24;
    draw_line(img, lx, ly + th / 2.0, lx + 22, ly + th / 2.0, series[i].color, 2.0);
    fill_circle(img, lx + 11, ly + th / 2.0, 3.0, series[i].color);
    lx -= 18;
  }
}

}  // namespace

Image plot_training_curves(const std::vector<EpochMetrics>& epochs, const std::string& title) {
  CNN_CHECK(!epochs.empty(), "plot_training_curves: no epochs to plot");
  const int title_h = title.empty() ? 0 : text_height(kTitleSize) + kPad;
  Image img(kCurvesWidth, kCurvesHeight + title_h, colors::background);
  if (!title.empty()) draw_text(img, kCurvesWidth / 2, kPad, title, colors::black, kTitleSize, Align::Center);
  std::vector<double> x, loss, acc, val_loss, val_acc;
  for (const auto& e : epochs) {
    x.push_back(e.epoch);
    loss.push_back(e.loss);
    acc.push_back(e.accuracy);
    val_loss.push_back(e.val_loss);
    val_acc.push_back(e.val_accuracy);
  }
  const bool has_val = any_finite(val_loss) || any_finite(val_acc);
  std::vector<std::string> legend{"train"};
  if (has_val) legend.emplace_back("validation");
  std::vector<Series> loss_series{{x, loss, colors::train}}, acc_series{{x, acc, colors::train}};
  if (has_val) {
    loss_series.push_back({x, val_loss, colors::validation});
    acc_series.push_back({x, val_acc, colors::validation});
  }
  const int half = kCurvesWidth / 2;
  draw_panel(img, {0, title_h, half, kCurvesHeight}, "Loss", "loss", loss_series, legend);
  draw_panel(img, {half, title_h, kCurvesWidth - half, kCurvesHeight}, "Accuracy", "accuracy", acc_series, legend);
  return img;
}

}  // namespace cnn
