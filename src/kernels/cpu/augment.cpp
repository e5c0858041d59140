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
  augment::check_images(n, c, h, w, "augment_images");
  augment::check_augment_spec(spec, h, w);
  remap(n, c, h, w, x, y,
        [&](int64_t i) { return augment::image_map(spec, seed, h, w, spec.first_index + i); });
}

template <class T>
void flip_images(int n, int c, int h, int w, const T* x, T* y) {
  augment::check_images(n, c, h, w, "flip_images");
  const augment::ImageMap m = augment::mirror_map();
  remap(n, c, h, w, x, y, [&](int64_t) { return m; });
}

template <class T>
void translate_images(int n, int c, int h, int w, const T* x, T* y, int dx, int dy) {
  augment::check_images(n, c, h, w, "translate_images");
  const augment::ImageMap m = augment::translation_map(h, w, dx, dy);
  remap(n, c, h, w, x, y, [&](int64_t) { return m; });
}

#define CNN_INSTANTIATE(T)                                                                          \
  template void augment_images<T>(int, int, int, int, const T*, T*, const AugmentSpec&, uint64_t); \
  template void flip_images<T>(int, int, int, int, const T*, T*);                                  \
  template void translate_images<T>(int, int, int, int, const T*, T*, int, int);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
