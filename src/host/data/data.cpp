// Data-set plumbing shared by every loader: finding the data folder, one-hot labels,
// per-channel statistics, Dataset::head.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <system_error>

#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "data/data_internal.hpp"

#ifndef CNN_SOURCE_DIR
#define CNN_SOURCE_DIR ""
#endif

namespace fs = std::filesystem;

namespace cnn {

Dataset Dataset::head(int64_t n) const {
  const int64_t count = size();
  if (n <= 0 || n >= count) return *this;
  Dataset out;
  out.x = x.slice(0, n);
  out.y = y.slice(0, n);
  out.class_names = class_names;
  return out;
}

namespace {

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

std::string download_hint(const std::string& name) {
  if (name == "cifar-10-batches-bin") return " (download it with tools/get_cifar10.sh)";
  if (name == "mnist") return " (download it with tools/get_mnist.sh)";
  return "";
}

}  // namespace

std::string find_data_dir(const std::string& name, const std::string& explicit_dir) {
  if (!explicit_dir.empty()) {
    CNN_CHECK(is_dir(explicit_dir), "data directory '", explicit_dir, "' does not exist or is not a directory");
    return explicit_dir;
  }
  CNN_CHECK(!name.empty(), "find_data_dir: empty data-set name");
  std::vector<std::string> searched;
  auto try_dir = [&](const fs::path& p) {
    std::error_code ec;
    const fs::path shown = p.is_absolute() ? p : fs::absolute(p, ec);
    searched.push_back((ec ? p : shown).lexically_normal().string());
    return is_dir(p);
  };
  if (const char* env = std::getenv("CNN_DATA"); env != nullptr && *env != '\0') {
    if (fs::path p = fs::path(env) / name; try_dir(p)) return p.string();
  } else {
    searched.push_back("$CNN_DATA/" + name + " ($CNN_DATA not set)");
  }
  if (fs::path p = fs::path("data") / name; try_dir(p)) return p.string();
  // The shared data folder beside the source checkout; the checkout root is compiled in
  // (CMake passes CNN_SOURCE_DIR to the library).
  const std::string source_dir = CNN_SOURCE_DIR;
  if (!source_dir.empty()) {
    if (fs::path p = (fs::path(source_dir) / ".." / "shared" / "data" / name).lexically_normal(); try_dir(p))
      return p.string();
  }
  std::ostringstream os;
  os << "data set '" << name << "' not found" << download_hint(name) << "; looked in:";
  for (const auto& s : searched) os << "\n  " << s;
  throw Error(os.str());
}

Tensor to_categorical(const Tensor& labels, int num_classes) {
  CNN_CHECK(num_classes > 0, "to_categorical: num_classes must be positive, got ", num_classes);
  CNN_CHECK(labels.rank() == 1 || (labels.rank() == 2 && labels.dim(1) == 1),
            "to_categorical: labels must have shape [N] or [N, 1], got ", shape_str(labels.shape()));
  const std::vector<float> v = labels.to_vector();
  const int64_t n = static_cast<int64_t>(v.size());
  Tensor out({n, num_classes});
  float* o = out.data();
  for (int64_t i = 0; i < n; ++i) {
    const float l = v[size_t(i)];
    CNN_CHECK(std::isfinite(l) && l == std::floor(l), "to_categorical: label ", l, " at index ", i,
              " is not an integer class index");
    CNN_CHECK(l >= 0 && l < float(num_classes), "to_categorical: label ", l, " at index ", i,
              " is out of range [0, ", num_classes, ")");
    o[i * num_classes + static_cast<int64_t>(l)] = 1.0f;
  }
  return out;
}

ChannelStats channel_stats(const Tensor& images) {
  CNN_CHECK(images.rank() == 4, "channel_stats: images must be [N, C, H, W], got ", shape_str(images.shape()));
  const int64_t n = images.dim(0), c = images.dim(1), hw = images.dim(2) * images.dim(3);
  Tensor host = images.device() == Device::CPU ? images : images.to(Device::CPU);
  const float* p = host.data();
  ChannelStats stats;
  stats.mean.assign(size_t(c), 0.0f);
  stats.stddev.assign(size_t(c), 0.0f);
  for (int64_t ch = 0; ch < c; ++ch) {
    // Two passes in double: exact enough for 50,000 CIFAR images (1.5e8 values).
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* q = p + (i * c + ch) * hw;
      double s = 0;
      for (int64_t k = 0; k < hw; ++k) s += q[k];
      sum += s;
    }
    const double count = double(n) * double(hw);
    const double mean = sum / count;
    double sq = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* q = p + (i * c + ch) * hw;
      double s = 0;
      for (int64_t k = 0; k < hw; ++k) {
        const double d = q[k] - mean;
        s += d * d;
      }
      sq += s;
    }
    stats.mean[size_t(ch)] = float(mean);
    stats.stddev[size_t(ch)] = float(std::sqrt(sq / count));
  }
  return stats;
}

void standardize(Tensor& images, const ChannelStats& stats) {
  CNN_CHECK(images.rank() == 4, "standardize: images must be [N, C, H, W], got ", shape_str(images.shape()));
  const int64_t n = images.dim(0), c = images.dim(1), hw = images.dim(2) * images.dim(3);
  CNN_CHECK(int64_t(stats.mean.size()) == c && int64_t(stats.stddev.size()) == c, "standardize: ",
            stats.mean.size(), " means and ", stats.stddev.size(), " standard deviations for ", c,
            " channels");
  Tensor host = images.device() == Device::CPU ? images : images.to(Device::CPU);
  float* p = host.data();
  for (int64_t ch = 0; ch < c; ++ch) {
    const float mean = stats.mean[size_t(ch)];
    const float sd = stats.stddev[size_t(ch)];
    CNN_CHECK(std::isfinite(mean) && std::isfinite(sd) && sd >= 0, "standardize: channel ", ch,
              " has mean ", mean, " and standard deviation ", sd);
    // A constant channel (standard deviation 0) is only centred.
    const float inv = sd > 0 ? 1.0f / sd : 1.0f;
    for (int64_t i = 0; i < n; ++i) {
      float* q = p + (i * c + ch) * hw;
      for (int64_t k = 0; k < hw; ++k) q[k] = (q[k] - mean) * inv;
    }
  }
  if (images.device() != Device::CPU) images.copy_from(host);
}

namespace detail {

int64_t apply_limit(int64_t limit, int64_t available, const char* what) {
  CNN_CHECK(limit >= 0, what, " must be >= 0 (0 keeps everything), got ", limit);
  return limit == 0 ? available : std::min(limit, available);
}

void finish_image_data(TrainTest& data, const ImageDataOptions& options) {
  if (!options.standardize) return;
  const ChannelStats stats = channel_stats(data.train.x);
  standardize(data.train.x, stats);
  if (!data.test.x.empty()) standardize(data.test.x, stats);
}

}  // namespace detail
}  // namespace cnn
