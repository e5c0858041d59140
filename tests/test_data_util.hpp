#pragma once
// Small synthetic image sets for model tests: class k puts a bright block in quadrant k
// of an otherwise noisy image, so a small CNN can learn it in a few epochs.
#include "cnn/rng.hpp"
#include "cnn/tensor.hpp"

namespace cnn::test {

struct SmallData {
  Tensor x, y;
};

inline SmallData make_quadrant_data(int n, int channels, int h, int w, uint64_t seed) {
  Rng rng(seed);
  SmallData d{Tensor({n, channels, h, w}), Tensor({n})};
  for (int i = 0; i < n; ++i) {
    const int label = int(rng.below(4));
    d.y.at({i}) = float(label);
    const int top = (label / 2) * (h / 2), left = (label % 2) * (w / 2);
    for (int c = 0; c < channels; ++c)
      for (int r = 0; r < h; ++r)
        for (int q = 0; q < w; ++q) {
          const bool inside = r >= top && r < top + h / 2 && q >= left && q < left + w / 2;
          d.x.at({i, c, r, q}) = float((inside ? 0.6 : 0.0) + 0.4 * rng.uniform());
        }
  }
  return d;
}

}  // namespace cnn::test
