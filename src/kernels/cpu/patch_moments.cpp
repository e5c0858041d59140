// Patch statistics for patch whitening (cnn::init_patch_whitening), in double.
#include <algorithm>
#include <vector>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {

// Blocks of images on the CPU threads, each summing into its own partial moments; the
// partials are added in block order, so the result does not depend on the thread count.
void accumulate_patch_moments(int64_t n, int c, int h, int w, int k_h, int k_w, const float* x, double* count,
                              double* sum, double* outer) {
  const size_t D = size_t(c) * size_t(k_h) * size_t(k_w);
  const int ho = h - k_h + 1, wo = w - k_w + 1;
  const int64_t blocks = std::min<int64_t>(n, 16);
  struct Partial {
    double count = 0;
    std::vector<double> sum, outer;
  };
  std::vector<Partial> part(size_t(blocks), Partial{0, std::vector<double>(D, 0.0), std::vector<double>(D * D, 0.0)});
  const double work = double(n) / double(blocks) * ho * wo * double(D) * double(D + 1) / 2;
  parallel_for(blocks, threads_for(blocks, work), [&](int64_t b) {
    Partial& pm = part[size_t(b)];
    std::vector<double> p(D);
    const int64_t begin = n * b / blocks, end = n * (b + 1) / blocks;
    for (int64_t img = begin; img < end; ++img) {
      const float* xi = x + img * int64_t(c) * h * w;
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox) {
          size_t d = 0;
          for (int ch = 0; ch < c; ++ch)
            for (int i = 0; i < k_h; ++i)
              for (int j = 0; j < k_w; ++j) p[d++] = double(xi[(int64_t(ch) * h + oy + i) * w + ox + j]);
          for (size_t r = 0; r < D; ++r) {
            pm.sum[r] += p[r];
            double* row = pm.outer.data() + r * D;
            const double pr = p[r];
            for (size_t s = r; s < D; ++s) row[s] += pr * p[s];
          }
        }
      pm.count += double(ho) * wo;
    }
  });
  for (const Partial& pm : part) {
    *count += pm.count;
    for (size_t i = 0; i < D; ++i) sum[i] += pm.sum[i];
    for (size_t i = 0; i < D * D; ++i) outer[i] += pm.outer[i];
  }
}

}  // namespace cnn::ops::cpu
