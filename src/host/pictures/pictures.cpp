// The raster of cnn/pictures.hpp: Image, PNG input/output through stb_image(_write), drawing
// primitives and tensor blitting. Text is in text.cpp, the figures in
// figures.cpp and curves.cpp.
#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "cnn/error.hpp"
#include "cnn/pictures.hpp"

namespace cnn {

Image::Image(int w, int h, Color fill) : width(w), height(h) {
  CNN_CHECK(w >= 1 && h >= 1 && w <= 32768 && h <= 32768, "Image: size ", w, "x", h,
            " is outside 1x1 .. 32768x32768");
  pixels.resize(size_t(w) * size_t(h) * 3);
  for (size_t i = 0; i < pixels.size(); i += 3) {
    pixels[i] = fill.r;
    pixels[i + 1] = fill.g;
    pixels[i + 2] = fill.b;
  }
}

Color Image::get(int x, int y) const {
  CNN_CHECK(contains(x, y), "Image::get: pixel (", x, ", ", y, ") is outside the ", width, "x", height, " image");
  const uint8_t* p = &pixels[(size_t(y) * size_t(width) + size_t(x)) * 3];
  return {p[0], p[1], p[2]};
}

void Image::set(int x, int y, Color c) {
  if (!contains(x, y)) return;
  uint8_t* p = &pixels[(size_t(y) * size_t(width) + size_t(x)) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

void Image::blend(int x, int y, Color c, float alpha) {
  if (!contains(x, y) || !(alpha > 0)) return;
  if (alpha >= 1) return set(x, y, c);
  uint8_t* p = &pixels[(size_t(y) * size_t(width) + size_t(x)) * 3];
  const uint8_t src[3] = {c.r, c.g, c.b};
  for (int k = 0; k < 3; ++k) p[k] = uint8_t(std::lround(float(p[k]) + (float(src[k]) - float(p[k])) * alpha));
}

void save_png(const Image& image, const std::string& path) {
  CNN_CHECK(!image.empty(), "save_png: empty image for ", path);
  if (!stbi_write_png(path.c_str(), image.width, image.height, 3, image.pixels.data(), image.width * 3))
    fail("save_png: cannot write ", path);
}

std::string encode_png(const Image& image) {
  CNN_CHECK(!image.empty(), "encode_png: empty image");
  std::string png;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
  };
  if (!stbi_write_png_to_func(append, &png, image.width, image.height, 3, image.pixels.data(), image.width * 3))
    fail("encode_png: stb_image_write failed for a ", image.width, "x", image.height, " image");
  return png;
}

Image read_image_rgb(const std::string& path) {
  int w = 0, h = 0, n = 0;
  if (!stbi_info(path.c_str(), &w, &h, &n))
    fail("read_image_rgb: ", path, " is not a readable image: ", stbi_failure_reason());
  CNN_CHECK(w <= 32768 && h <= 32768, "read_image_rgb: ", path, " is ", w, "x", h, " pixels, too large");
  std::unique_ptr<stbi_uc, void (*)(void*)> p(stbi_load(path.c_str(), &w, &h, &n, 3), &stbi_image_free);
  if (!p) fail("read_image_rgb: cannot decode ", path, ": ", stbi_failure_reason());
  Image img(w, h);
  std::memcpy(img.pixels.data(), p.get(), img.pixels.size());
  return img;
}

void fill_rect(Image& image, int x, int y, int w, int h, Color c) {
  const int x0 = std::max(0, x), y0 = std::max(0, y);
  const int x1 = std::min(image.width, x + std::max(0, w)), y1 = std::min(image.height, y + std::max(0, h));
  for (int yy = y0; yy < y1; ++yy)
    for (int xx = x0; xx < x1; ++xx) image.set(xx, yy, c);
}

void draw_rect(Image& image, int x, int y, int w, int h, Color c, int thickness) {
  const int t = std::max(1, std::min({thickness, (w + 1) / 2, (h + 1) / 2}));
  fill_rect(image, x, y, w, t, c);
  fill_rect(image, x, y + h - t, w, t, c);
  fill_rect(image, x, y, t, h, c);
  fill_rect(image, x + w - t, y, t, h, c);
}

void draw_line(Image& image, double x0, double y0, double x1, double y1, Color c, double thickness) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  const double r = std::max(0.5, thickness / 2);
  const int bx0 = int(std::floor(std::min(x0, x1) - r - 1)), bx1 = int(std::ceil(std::max(x0, x1) + r + 1));
  const int by0 = int(std::floor(std::min(y0, y1) - r - 1)), by1 = int(std::ceil(std::max(y0, y1) + r + 1));
  const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  for (int y = std::max(0, by0); y <= std::min(image.height - 1, by1); ++y) {
    for (int x = std::max(0, bx0); x <= std::min(image.width - 1, bx1); ++x) {
      // Distance from the pixel centre to the segment; coverage falls off over one pixel.
      double t = len2 > 0 ? ((x - x0) * dx + (y - y0) * dy) / len2 : 0;
      t = std::clamp(t, 0.0, 1.0);
      const double ex = x - (x0 + t * dx), ey = y - (y0 + t * dy);
      const double d = std::sqrt(ex * ex + ey * ey);
      const double alpha = std::clamp(r + 0.5 - d, 0.0, 1.0);
      image.blend(x, y, c, float(alpha));
    }
  }
}

void fill_circle(Image& image, double cx, double cy, double radius, Color c) {
  draw_line(image, cx, cy, cx, cy, c, 2 * radius);
}

namespace {

// A [C, H, W] view of a [C, H, W] or [1, C, H, W] tensor, as host floats.
struct HostImage {
  int64_t c = 0, h = 0, w = 0;
  std::vector<float> v;
};

HostImage host_image(const Tensor& t, const char* what) {
  CNN_CHECK(t.rank() == 3 || (t.rank() == 4 && t.dim(0) == 1), what,
            ": expected an image tensor [C, H, W] or [1, C, H, W], got ", shape_str(t.shape()));
  HostImage hi;
  hi.c = t.dim(-3);
  hi.h = t.dim(-2);
  hi.w = t.dim(-1);
  CNN_CHECK(hi.c == 1 || hi.c == 3, what, ": images must have 1 or 3 channels, got ", shape_str(t.shape()));
  hi.v = t.to_vector();
  return hi;
}

}  // namespace

void blit(Image& image, const Tensor& chw, int x, int y, int scale, bool normalize) {
  CNN_CHECK(scale >= 1, "blit: scale must be >= 1, got ", scale);
  const HostImage src = host_image(chw, "blit");
  float lo = 0, inv = 1;
  if (normalize) {
    const auto [mn, mx] = std::minmax_element(src.v.begin(), src.v.end());
    lo = *mn;
    inv = *mx > *mn ? 1.0f / (*mx - *mn) : 0.0f;
  }
  const int64_t plane = src.h * src.w;
  auto byte = [&](float v) {
    v = (v - lo) * inv;
    if (!(v > 0)) return uint8_t(0);  // NaN too
    if (v >= 1) return uint8_t(255);
    return uint8_t(std::lround(v * 255.0f));
  };
  for (int64_t r = 0; r < src.h; ++r) {
    for (int64_t q = 0; q < src.w; ++q) {
      const int64_t i = r * src.w + q;
      Color col;
      if (src.c == 1) {
        const uint8_t g = byte(src.v[size_t(i)]);
        col = {g, g, g};
      } else {
        col = {byte(src.v[size_t(i)]), byte(src.v[size_t(plane + i)]), byte(src.v[size_t(2 * plane + i)])};
      }
      fill_rect(image, x + int(q) * scale, y + int(r) * scale, scale, scale, col);
    }
  }
}

Image tensor_image(const Tensor& chw, int scale, bool normalize) {
  CNN_CHECK(scale >= 1, "tensor_image: scale must be >= 1, got ", scale);
  CNN_CHECK(chw.rank() >= 3, "tensor_image: expected [C, H, W], got ", shape_str(chw.shape()));
  Image img(int(chw.dim(-1)) * scale, int(chw.dim(-2)) * scale);
  blit(img, chw, 0, 0, scale, normalize);
  return img;
}

}  // namespace cnn
