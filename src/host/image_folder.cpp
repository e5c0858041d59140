// Image files through stb_image (the compiled implementation comes from Debian's libstb):
// load_image and load_image_folder. Image dimensions are read from the file header and checked
// before anything is decoded, so a hostile header cannot make us allocate gigabytes.
#include <stb_image.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <system_error>
#include <vector>

#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "host/data_internal.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

struct ImageInfo {
  int width = 0, height = 0, components = 0;
};

std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r != nullptr ? r : "unknown error";
}

void check_size(const std::string& path, int64_t width, int64_t height) {
  CNN_CHECK(width <= detail::kMaxImageSide && height <= detail::kMaxImageSide &&
                width * height <= detail::kMaxImagePixels,
            "image ", path, " is ", width, "x", height, " pixels, larger than the ", detail::kMaxImageSide, "x",
            detail::kMaxImageSide, " (", detail::kMaxImagePixels, " pixels) this loader accepts; refused before decoding");
}

// PNG stores its size in the first chunk (IHDR): read it ourselves so that a huge size is
// reported as such (stb_image's own check only says "too large").
void precheck_png_size(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return;
  std::array<uint8_t, 24> h{};
  if (std::fread(h.data(), 1, h.size(), f.get()) != h.size()) return;
  static constexpr std::array<uint8_t, 8> sig = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!std::equal(sig.begin(), sig.end(), h.begin()) || std::string(h.begin() + 12, h.begin() + 16) != "IHDR") return;
  auto be32 = [&](int at) {
    return (int64_t(h[size_t(at)]) << 24) | (int64_t(h[size_t(at + 1)]) << 16) | (int64_t(h[size_t(at + 2)]) << 8) |
           int64_t(h[size_t(at + 3)]);
  };
  check_size(path, be32(16), be32(20));
}

// What the first bytes say the file is, for error messages.
std::string sniff(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  std::array<uint8_t, 8> h{};
  if (!f || std::fread(h.data(), 1, h.size(), f.get()) != h.size()) return "; the file is empty or shorter than 8 bytes";
  const char* kind = h[0] == 0x89 && h[1] == 'P' && h[2] == 'N' && h[3] == 'G' ? "PNG"
                     : h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF           ? "JPEG"
                     : h[0] == 'B' && h[1] == 'M'                             ? "BMP"
                                                                              : nullptr;
  if (kind == nullptr) return "; its first bytes match no supported format";
  return std::string("; it starts like a ") + kind + " file, so it is probably truncated or corrupt";
}

ImageInfo probe(const std::string& path) {
  std::error_code ec;
  CNN_CHECK(fs::is_regular_file(path, ec), "image ", path, " does not exist or is not a file");
  precheck_png_size(path);
  ImageInfo info;
  if (!stbi_info(path.c_str(), &info.width, &info.height, &info.components))
    fail("image ", path, " is not a readable PNG/JPEG/BMP image (stb_image: ", stb_reason(), ")", sniff(path));
  CNN_CHECK(info.width > 0 && info.height > 0, "image ", path, " has size ", info.width, "x", info.height);
  check_size(path, info.width, info.height);
  return info;
}

// Decodes `path` (already probed) into out[channels][height][width], resized nearest-neighbour.
void decode_into(const std::string& path, const ImageInfo& info, int channels, int height, int width, float* out) {
  // Grey sources decode as one channel (exact); colour sources as RGB, made grey with BT.601.
  const int want = (channels == 1 && info.components <= 2) ? 1 : 3;
  int w = 0, h = 0, n = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load(path.c_str(), &w, &h, &n, want), &stbi_image_free);
  if (!pixels) fail("image ", path, " cannot be decoded: ", stb_reason());
  CNN_CHECK(w == info.width && h == info.height, "image ", path, " decoded as ", w, "x", h, " but its header says ",
            info.width, "x", info.height);
  const stbi_uc* p = pixels.get();
  constexpr float s = 1.0f / 255.0f;
  const int64_t plane = int64_t(height) * width;
  for (int y = 0; y < height; ++y) {
    // Nearest neighbour, pixel centres aligned: an integer upscale repeats every pixel exactly.
    const int64_t sy = std::min<int64_t>(h - 1, (2 * int64_t(y) + 1) * h / (2 * int64_t(height)));
    for (int x = 0; x < width; ++x) {
      const int64_t sx = std::min<int64_t>(w - 1, (2 * int64_t(x) + 1) * w / (2 * int64_t(width)));
      const stbi_uc* px = p + (sy * w + sx) * want;
      const int64_t o = int64_t(y) * width + x;
      if (want == 1) {
        for (int c = 0; c < channels; ++c) out[c * plane + o] = float(px[0]) * s;
      } else if (channels == 1) {
        out[o] = detail::luma01(px[0], px[1], px[2]);
      } else {
        for (int c = 0; c < 3; ++c) out[c * plane + o] = float(px[c]) * s;
      }
    }
  }
}

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

void check_request(const char* what, int channels, int height, int width) {
  CNN_CHECK(channels == 1 || channels == 3, what, ": channels must be 1 or 3, got ", channels);
  CNN_CHECK(height >= 0 && width >= 0 && (height > 0) == (width > 0), what, ": height and width must both be ",
            "positive (or both 0 to keep the image's own size), got ", height, "x", width);
  CNN_CHECK(int64_t(height) <= detail::kMaxImageSide && int64_t(width) <= detail::kMaxImageSide, what,
            ": requested size ", height, "x", width, " is larger than ", detail::kMaxImageSide, " a side");
}

}  // namespace

Tensor load_image(const std::string& path, int channels, int height, int width) {
  check_request("load_image", channels, height, width);
  const ImageInfo info = probe(path);
  if (height == 0) {
    height = info.height;
    width = info.width;
  }
  Tensor t({1, channels, height, width});
  decode_into(path, info, channels, height, width, t.data());
  return t;
}

Dataset load_image_folder(const std::string& dir, int channels, int height, int width) {
  check_request("load_image_folder", channels, height, width);
  CNN_CHECK(height > 0, "load_image_folder: height and width must be positive, got ", height, "x", width);
  std::error_code ec;
  CNN_CHECK(fs::is_directory(dir, ec), "image folder '", dir, "' does not exist or is not a directory");

  std::vector<fs::path> class_dirs;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && !name.empty() && name[0] != '.') class_dirs.push_back(entry.path());
  }
  std::sort(class_dirs.begin(), class_dirs.end());
  CNN_CHECK(!class_dirs.empty(), "image folder '", dir,
            "' has no class subfolders (expected one subfolder per class holding its images)");

  Dataset d;
  std::vector<std::pair<std::string, int>> files;  // path, class
  for (size_t c = 0; c < class_dirs.size(); ++c) {
    std::vector<fs::path> images;
    for (const auto& entry : fs::directory_iterator(class_dirs[c]))
      if (entry.is_regular_file() && is_image_file(entry.path())) images.push_back(entry.path());
    std::sort(images.begin(), images.end());
    CNN_CHECK(!images.empty(), "image folder '", dir, "': class folder '", class_dirs[c].filename().string(),
              "' holds no .png/.jpg/.jpeg/.bmp images");
    d.class_names.push_back(class_dirs[c].filename().string());
    for (const auto& p : images) files.emplace_back(p.string(), int(c));
  }

  const auto n = int64_t(files.size());
  const int64_t per_image = int64_t(channels) * height * width;
  d.x = Tensor({n, channels, height, width});
  d.y = Tensor({n});
  for (int64_t i = 0; i < n; ++i) {
    const auto& [path, label] = files[size_t(i)];
    decode_into(path, probe(path), channels, height, width, d.x.data() + i * per_image);
    d.y.data()[i] = float(label);
  }
  return d;
}

}  // namespace cnn
