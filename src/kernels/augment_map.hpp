#pragma once
// The augmentation ops' per-image draws and pixel map (semantics in ops.hpp, AugmentSpec),
// written once for the CPU reference and the CUDA kernels so both pick the same pixels.
#include <cstdint>

#include "cnn/error.hpp"
#include "kernels/host_device.hpp"
#include "kernels/ops.hpp"
#include "kernels/random.hpp"

namespace cnn::augment {

// What happens to one image: read pixel (r + shift_y, q' + shift_x) with reflection, where
// q' = w - 1 - q when flipped, and zero the cutout rows [cut_y, cut_y + cut) x columns
// [cut_x, cut_x + cut) (cut = 0: none).
struct ImageMap {
  int shift_y = 0, shift_x = 0;
  bool flip = false;
  int cut = 0, cut_y = 0, cut_x = 0;
};

// Draw slots of one image (random_bits counter = image * kSlots + slot).
inline constexpr uint64_t kSlots = 8;
enum Slot : uint64_t { kShiftY = 0, kShiftX = 1, kFlip = 2, kCutY = 3, kCutX = 4 };

CNN_HOST_DEVICE uint64_t draw(uint64_t seed, int64_t image, Slot slot) {
  return random::random_bits(seed ^ random::kAugmentStream, uint64_t(image) * kSlots + slot);
}

CNN_HOST_DEVICE ImageMap image_map(const ops::AugmentSpec& s, uint64_t seed, int h, int w, int64_t image) {
  ImageMap m;
  if (s.translate > 0) {
    const uint32_t range = uint32_t(2 * s.translate + 1);
    m.shift_y = int(random::below(draw(seed, image, kShiftY), range)) - s.translate;
    m.shift_x = int(random::below(draw(seed, image, kShiftX), range)) - s.translate;
  }
  if (s.flip == ops::FlipMode::Random) m.flip = (draw(seed, image, kFlip) >> 63) != 0;
  else if (s.flip == ops::FlipMode::Alternate) m.flip = ((image + s.epoch) & 1) != 0;
  if (s.cutout > 0) {
    m.cut = s.cutout;
    m.cut_y = int(random::below(draw(seed, image, kCutY), uint32_t(h - s.cutout + 1)));
    m.cut_x = int(random::below(draw(seed, image, kCutX), uint32_t(w - s.cutout + 1)));
  }
  return m;
}

// Mirror an out-of-range index back in without repeating the edge; valid for
// -size < i < 2 size - 1 (shifts smaller than the image).
CNN_HOST_DEVICE int reflect(int i, int size) {
  if (i < 0) return -i;
  if (i >= size) return 2 * (size - 1) - i;
  return i;
}

// Offset within the input plane that output pixel (r, q) reads, or -1 for a zero.
CNN_HOST_DEVICE int source_pixel(const ImageMap& m, int h, int w, int r, int q) {
  if (m.cut > 0 && r >= m.cut_y && r < m.cut_y + m.cut && q >= m.cut_x && q < m.cut_x + m.cut) return -1;
  const int col = m.flip ? w - 1 - q : q;
  return reflect(r + m.shift_y, h) * w + reflect(col + m.shift_x, w);
}

// Host-side argument checks and fixed maps, shared by both backends' ops.
inline void check_images(int n, int c, int h, int w, const char* op) {
  CNN_CHECK(n >= 0 && c >= 0 && h > 0 && w > 0 && int64_t(h) * w <= INT32_MAX, op, ": bad image batch n=", n,
            " c=", c, " h=", h, " w=", w);
}

inline void check_augment_spec(const ops::AugmentSpec& spec, int h, int w) {
  CNN_CHECK(spec.translate >= 0 && spec.translate < h && spec.translate < w,
            "augment_images: translate must be in [0, min(h, w)), got ", spec.translate, " for ", h, "x", w);
  CNN_CHECK(spec.cutout >= 0 && spec.cutout <= h && spec.cutout <= w,
            "augment_images: cutout must be in [0, min(h, w)], got ", spec.cutout, " for ", h, "x", w);
}

inline ImageMap mirror_map() {
  ImageMap m;
  m.flip = true;
  return m;
}

inline ImageMap translation_map(int h, int w, int dx, int dy) {
  CNN_CHECK(dx > -w && dx < w && dy > -h && dy < h, "translate_images: shift (", dx, ", ", dy,
            ") must be smaller than the image ", h, "x", w);
  ImageMap m;
  m.shift_x = dx;
  m.shift_y = dy;
  return m;
}

}  // namespace cnn::augment
