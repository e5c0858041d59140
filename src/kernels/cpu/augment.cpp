// Training-batch augmentation and the test-time flips/translations on the CPU. The
// per-image draws and the pixel map are shared with the CUDA kernels
// (src/kernels/augment_map.hpp), so both backends produce the same batch bit for bit.
#include <climits>

#include "cnn/error.hpp"
#include "kernels/augment_map.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

void check_images(int n, int c, int h, int w, const char* op) {
  CNN_CHECK(n >= 0 && c >= 0 && h > 0 && w > 0 && int64_t(h) * w <= INT32_MAX, op, ": bad image batch n=", n,
            " c=", c, " h=", h, " w=", w);
}

// Applies map_of(image) to every image of the batch.
template <class T, class MapOf>
void remap(int n, int c, int h, int w, const T* x, T* y, MapOf map_of) {
  const int64_t plane = int64_t(h) * w;
  parallel_for(n, threads_for(n, 2.0 * double(c) * double(plane)), [&](int64_t i) {
    const augment::ImageMap m = map_of(i);
    for (int ch = 0; ch < c; ++ch) {
      const T* in = x + (i * c + ch) * plane;
      T* out = y + (i * c + ch) * plane;
      for (int r = 0; r < h; ++r)
        for (int q = 0; q < w; ++q) {
          const int src = augment::source_pixel(m, h, w, r, q);
          out[r * w + q] = src < 0 ? T(0) : in[src];
        }
    }
  });
}

}  // namespace

template <class T>
void augment_images(int n, int c, int h, int w, const T* x, T* y, const AugmentSpec& spec, uint64_t seed) {
  check_images(n, c, h, w, "augment_images");
  CNN_CHECK(spec.translate >= 0 && spec.translate < h && spec.translate < w,
            "augment_images: translate must be in [0, min(h, w)), got ", spec.translate, " for ", h, "x", w);
  CNN_CHECK(spec.cutout >= 0 && spec.cutout <= h && spec.cutout <= w,
            "augment_images: cutout must be in [0, min(h, w)], got ", spec.cutout, " for ", h, "x", w);
  remap(n, c, h, w, x, y,
        [&](int64_t i) { return augment::image_map(spec, seed, h, w, spec.first_index + i); });
}

template <class T>
void flip_images(int n, int c, int h, int w, const T* x, T* y) {
  check_images(n, c, h, w, "flip_images");
  augment::ImageMap m;
  m.flip = true;
  remap(n, c, h, w, x, y, [&](int64_t) { return m; });
}

template <class T>
void translate_images(int n, int c, int h, int w, const T* x, T* y, int dx, int dy) {
  check_images(n, c, h, w, "translate_images");
  CNN_CHECK(dx > -w && dx < w && dy > -h && dy < h, "translate_images: shift (", dx, ", ", dy,
            ") must be smaller than the image ", h, "x", w);
  augment::ImageMap m;
  m.shift_x = dx;
  m.shift_y = dy;
  remap(n, c, h, w, x, y, [&](int64_t) { return m; });
}

#define CNN_INSTANTIATE(T)                                                                          \
  template void augment_images<T>(int, int, int, int, const T*, T*, const AugmentSpec&, uint64_t); \
  template void flip_images<T>(int, int, int, int, const T*, T*);                                  \
  template void translate_images<T>(int, int, int, int, const T*, T*, int, int);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
