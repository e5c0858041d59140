// Training-batch augmentation and the test-time flips/translations on the GPU. The draws
// and the pixel map are the CPU's own functions (src/kernels/augment_map.hpp), so a seed
// gives the CPU's batch bit for bit (the kernel only copies or zeroes values).
//
// One block per image plane (grid-stride over planes): every thread of the block derives
// the image's map once, then handles a strided share of the plane's pixels.
#include <climits>

#include "kernels/augment_map.hpp"
#include "kernels/cuda/common.cuh"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;

// use_draws: the map of image i comes from (spec, seed, spec.first_index + i); otherwise every
// image uses `fixed`.
__global__ void remap_images_kernel(int n, int c, int h, int w, const float* __restrict__ x, float* __restrict__ y,
                                    bool use_draws, ops::AugmentSpec spec, uint64_t seed, augment::ImageMap fixed) {
  const int64_t planes = int64_t(n) * c, plane = int64_t(h) * w;
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const int64_t image = p / c;
    const augment::ImageMap m = use_draws ? augment::image_map(spec, seed, h, w, spec.first_index + image) : fixed;
    const float* in = x + p * plane;
    float* out = y + p * plane;
    for (int j = int(threadIdx.x); j < plane; j += kThreads) {
      const int r = j / w, q = j - r * w;
      const int src = augment::source_pixel(m, h, w, r, q);
      out[j] = src < 0 ? 0.f : in[src];
    }
  }
}

void remap(Context& ctx, int n, int c, int h, int w, const float* x, float* y, bool use_draws,
           const ops::AugmentSpec& spec, uint64_t seed, const augment::ImageMap& fixed) {
  const int64_t planes = int64_t(n) * c;
  if (planes == 0) return;
  const int64_t cap = int64_t(ctx.sm_count) * 32;
  const unsigned blocks = unsigned(planes < cap ? planes : cap);
  remap_images_kernel<<<blocks, kThreads, 0, ctx.stream>>>(n, c, h, w, x, y, use_draws, spec, seed, fixed);
  CNN_CUDA_CHECK_LAUNCH("remap_images_kernel");
}

}  // namespace

void augment_images(Context& ctx, int n, int c, int h, int w, const float* x, float* y, const AugmentSpec& spec,
                    uint64_t seed) {
  augment::check_images(n, c, h, w, "augment_images");
  augment::check_augment_spec(spec, h, w);
  remap(ctx, n, c, h, w, x, y, true, spec, seed, augment::ImageMap{});
}

void flip_images(Context& ctx, int n, int c, int h, int w, const float* x, float* y) {
  augment::check_images(n, c, h, w, "flip_images");
  remap(ctx, n, c, h, w, x, y, false, AugmentSpec{}, 0, augment::mirror_map());
}

void translate_images(Context& ctx, int n, int c, int h, int w, const float* x, float* y, int dx, int dy) {
  augment::check_images(n, c, h, w, "translate_images");
  remap(ctx, n, c, h, w, x, y, false, AugmentSpec{}, 0, augment::translation_map(h, w, dx, dy));
}

}  // namespace cnn::ops::cuda
