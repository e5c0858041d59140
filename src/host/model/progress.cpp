#include "model/progress.hpp"

#include <unistd.h>

#include <cmath>

namespace cnn {

ProgressBar::ProgressBar(int total_steps, int verbose, std::FILE* out)
    : total_(total_steps), verbose_(verbose), out_(out), tty_(is_terminal(out)) {}

bool ProgressBar::is_terminal(std::FILE* out) { return isatty(fileno(out)) == 1; }

bool ProgressBar::due(int step, double seconds) const {
  return verbose_ == 1 && tty_ && (step == total_ || last_draw_ < 0 || seconds - last_draw_ >= 0.1);
}

namespace {
std::string format_time(double seconds) {
  char buf[32];
  if (seconds >= 1) std::snprintf(buf, sizeof buf, "%.0fs", seconds);
  else std::snprintf(buf, sizeof buf, "%.0fms", seconds * 1000);
  return buf;
}
}  // namespace

std::string ProgressBar::line(int step, double seconds, const Metrics& metrics, bool done) const {
  const int width = 30;
  std::string digits = std::to_string(total_);
  std::string count = std::to_string(step);
  std::string s = std::string(digits.size() - std::min(digits.size(), count.size()), ' ') + count + "/" + digits + " [";
  const int filled = total_ > 0 ? int(double(width) * step / total_) : width;
  for (int i = 0; i < width; ++i) {
    if (i < filled - 1 || (done && i < filled)) s += '=';
    else if (i == filled - 1) s += '>';
    else s += '.';
  }
  s += "] - ";
  if (done) {
    const double per_step = step > 0 ? seconds / step : 0;
    s += format_time(seconds) + " " + format_time(per_step) + "/step";
  } else {
    const double eta = step > 0 ? seconds / step * (total_ - step) : 0;
    s += "ETA: " + format_time(eta);
  }
  for (const auto& [name, value] : metrics) {
    if (std::isnan(value)) continue;
    char buf[64];
    std::snprintf(buf, sizeof buf, " - %s: %.4f", name.c_str(), value);
    s += buf;
  }
  return s;
}

void ProgressBar::update(int step, double seconds, const Metrics& metrics) {
  if (!due(step, seconds)) return;
  const std::string s = line(step, seconds, metrics, false);
  std::fprintf(out_, "\r%s", s.c_str());
  if (s.size() < last_width_) std::fprintf(out_, "%s", std::string(last_width_ - s.size(), ' ').c_str());
  std::fflush(out_);
  last_width_ = s.size();
  last_draw_ = seconds;
}

void ProgressBar::finish(double seconds, const Metrics& metrics) {
  if (verbose_ == 0) return;
  const std::string s = line(total_, seconds, metrics, true);
  if (verbose_ == 1 && tty_) {
    std::fprintf(out_, "\r%s", s.c_str());
    if (s.size() < last_width_) std::fprintf(out_, "%s", std::string(last_width_ - s.size(), ' ').c_str());
    std::fprintf(out_, "\n");
  } else {
    std::fprintf(out_, "%s\n", s.c_str());
  }
  std::fflush(out_);
}

}  // namespace cnn
