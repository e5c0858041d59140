#include "kernels/conv_tuning.hpp"

#include <charconv>
#include <cstdio>
#include <sstream>

#include "cnn/error.hpp"

namespace cnn::ops {
namespace {

constexpr ConvPass kPasses[] = {ConvPass::Forward, ConvPass::BackwardInput, ConvPass::BackwardParams};
constexpr ConvKernel kKernels[] = {ConvKernel::Gemm, ConvKernel::Direct, ConvKernel::SplitK};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t end = s.find(sep, start);
    parts.push_back(trim(s.substr(start, end == std::string_view::npos ? end : end - start)));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// The shape as conv_shape_text writes it; nullopt for anything else.
std::optional<Conv2DShape> shape_from_text(std::string_view text) {
  Conv2DShape s;
  char tail = 0;
  const std::string copy(text);
  const int read = std::sscanf(copy.c_str(), "n%d c%d %dx%d k%d %dx%d s%dx%d p%dx%d o%dx%d%c", &s.n, &s.c_in, &s.h_in,
                               &s.w_in, &s.c_out, &s.k_h, &s.k_w, &s.stride_h, &s.stride_w, &s.pad_top, &s.pad_left,
                               &s.h_out, &s.w_out, &tail);
  if (read != 13 || conv_shape_text(s) != text) return std::nullopt;
  return s;
}

}  // namespace

std::string_view to_string(ConvPass pass) {
  switch (pass) {
    case ConvPass::Forward: return "forward";
    case ConvPass::BackwardInput: return "backward_input";
    case ConvPass::BackwardParams: return "backward_params";
  }
  return "?";
}

std::string_view to_string(ConvKernel kernel) {
  switch (kernel) {
    case ConvKernel::Gemm: return "gemm";
    case ConvKernel::Direct: return "direct";
    case ConvKernel::SplitK: return "split_k";
  }
  return "?";
}

bool pass_has_kernel(ConvPass pass, ConvKernel kernel) {
  if (kernel == ConvKernel::Gemm) return true;
  if (kernel == ConvKernel::Direct) return pass != ConvPass::BackwardParams;
  return pass == ConvPass::BackwardParams;
}

std::string conv_shape_text(const Conv2DShape& s) {
  std::ostringstream os;
  os << 'n' << s.n << " c" << s.c_in << ' ' << s.h_in << 'x' << s.w_in << " k" << s.c_out << ' ' << s.k_h << 'x'
     << s.k_w << " s" << s.stride_h << 'x' << s.stride_w << " p" << s.pad_top << 'x' << s.pad_left << " o" << s.h_out
     << 'x' << s.w_out;
  return os.str();
}

bool same_conv_shape(const Conv2DShape& a, const Conv2DShape& b) { return conv_shape_text(a) == conv_shape_text(b); }

const ConvTuningEntry* ConvTuningTable::find(std::string_view gpu, ConvPass pass, const Conv2DShape& shape) const {
  for (const ConvTuningEntry& e : entries_)
    if (e.gpu == gpu && e.pass == pass && same_conv_shape(e.shape, shape)) return &e;
  return nullptr;
}

void ConvTuningTable::record(ConvTuningEntry entry) {
  for (ConvTuningEntry& e : entries_) {
    if (e.gpu == entry.gpu && e.pass == entry.pass && same_conv_shape(e.shape, entry.shape)) {
      e = std::move(entry);
      return;
    }
  }
  entries_.push_back(std::move(entry));
}

std::string ConvTuningTable::to_text() const {
  std::ostringstream os;
  os << "# cnn convolution tuning (CNN_CUDA_CONV_KERNELS=tune): gpu | pass | shape | kept | candidate=ms\n";
  for (const ConvTuningEntry& e : entries_) {
    os << e.gpu << " | " << to_string(e.pass) << " | " << conv_shape_text(e.shape) << " | " << to_string(e.kept)
       << " |";
    for (const ConvCandidateTime& c : e.candidates) {
      os << ' ' << to_string(c.kernel) << '=';
      if (c.correct) {
        char ms[32];
        std::snprintf(ms, sizeof ms, "%.6g", c.ms);
        os << ms;
      } else {
        os << "wrong";
      }
    }
    os << '\n';
  }
  return os.str();
}

ConvTuningTable ConvTuningTable::parse(std::string_view text, const std::string& source) {
  ConvTuningTable table;
  int line_number = 0;
  for (std::string_view line : split(text, '\n')) {
    ++line_number;
    if (line.empty() || line.front() == '#') continue;
    const std::string where =
        "conv tuning file " + source + ", line " + std::to_string(line_number) + " ('" + std::string(line) + "'): ";
    const std::vector<std::string_view> fields = split(line, '|');
    if (fields.size() != 5) fail(where, "expected 5 fields separated by '|', got ", fields.size());
    ConvTuningEntry e;
    e.gpu = std::string(fields[0]);
    if (e.gpu.empty()) fail(where, "empty GPU name");
    auto pass = [&](std::string_view name) {
      for (ConvPass p : kPasses)
        if (to_string(p) == name) return p;
      fail(where, "unknown pass '", std::string(name), "' (forward, backward_input, backward_params)");
    };
    auto kernel = [&](std::string_view name) {
      for (ConvKernel k : kKernels)
        if (to_string(k) == name) {
          if (!pass_has_kernel(e.pass, k)) fail(where, "kernel '", std::string(name), "' cannot run the ", to_string(e.pass), " pass");
          return k;
        }
      fail(where, "unknown kernel '", std::string(name), "' (gemm, direct, split_k)");
    };
    e.pass = pass(fields[1]);
    const std::optional<Conv2DShape> shape = shape_from_text(fields[2]);
    if (!shape) fail(where, "unreadable shape '", std::string(fields[2]), "'");
    e.shape = *shape;
    e.kept = kernel(fields[3]);
    bool kept_listed = false;
    for (std::string_view item : split(fields[4], ' ')) {
      if (item.empty()) continue;
      const size_t eq = item.find('=');
      if (eq == std::string_view::npos) fail(where, "candidate '", std::string(item), "' is not kernel=ms");
      ConvCandidateTime c;
      c.kernel = kernel(item.substr(0, eq));
      const std::string_view value = item.substr(eq + 1);
      if (value == "wrong") {
        c.correct = false;
      } else {
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), c.ms);
        if (ec != std::errc() || end != value.data() + value.size() || !(c.ms >= 0) || !std::isfinite(c.ms))
          fail(where, "candidate time '", std::string(value), "' is not a number of milliseconds");
      }
      kept_listed = kept_listed || (c.kernel == e.kept && c.correct);
      e.candidates.push_back(c);
    }
    if (!kept_listed) fail(where, "the kept kernel '", to_string(e.kept), "' is not among the correct candidates");
    if (table.find(e.gpu, e.pass, e.shape)) fail(where, "a second entry for the same GPU, pass and shape");
    table.entries_.push_back(std::move(e));
  }
  return table;
}

std::string conv_tuning_report(const ConvTuningTable& table) {
  if (table.entries().empty()) return "no convolution was tuned (CNN_CUDA_CONV_KERNELS=tune times them on first use)\n";
  std::ostringstream os;
  char row[256];
  std::snprintf(row, sizeof row, "%-16s %-44s %-8s %s\n", "pass", "shape", "kept", "candidates (ms, fastest run)");
  os << "GPU: " << table.entries().front().gpu << '\n' << row;
  for (const ConvTuningEntry& e : table.entries()) {
    std::string times;
    for (const ConvCandidateTime& c : e.candidates) {
      char t[64];
      if (c.correct)
        std::snprintf(t, sizeof t, "%s%s %.4f", times.empty() ? "" : ", ", std::string(to_string(c.kernel)).c_str(), c.ms);
      else
        std::snprintf(t, sizeof t, "%s%s WRONG", times.empty() ? "" : ", ", std::string(to_string(c.kernel)).c_str());
      times += t;
    }
    std::snprintf(row, sizeof row, "%-16s %-44s %-8s %s\n", std::string(to_string(e.pass)).c_str(),
                  conv_shape_text(e.shape).c_str(), std::string(to_string(e.kept)).c_str(), times.c_str());
    os << row;
  }
  return os.str();
}

}  // namespace cnn::ops
