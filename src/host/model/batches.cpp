#include "model/batches.hpp"

#include <algorithm>
#include <cmath>

#include "cnn/error.hpp"
#include "kernels/augment_map.hpp"

namespace cnn {

using State = Sequential::State;

void check_inputs(const State& s, const Tensor& x, const char* what) {
  CNN_CHECK(s.compiled, what, ": compile the model first");
  CNN_CHECK(!x.empty(), what, ": x is empty");
  Shape expected{-1};
  expected.insert(expected.end(), s.input_shape.begin(), s.input_shape.end());
  bool ok = x.rank() == int(expected.size());
  for (int i = 1; ok && i < x.rank(); ++i) ok = x.dim(i) == expected[size_t(i)];
  CNN_CHECK(ok, what, ": x has shape ", shape_str(x.shape()), " but the model expects [N, ",
            shape_str(s.input_shape).substr(1));
}

Targets prepare_targets(const State& s, const Tensor& y, int64_t rows, const char* what) {
  CNN_CHECK(!y.empty(), what, ": y is empty");
  CNN_CHECK(y.dim(0) == rows, what, ": y has ", y.dim(0), " rows but x has ", rows);
  const int64_t K = s.output_size();
  Targets t;
  t.rows = rows;
  t.cols = K;
  t.kind = s.target_kind();
  const Tensor host = y.to(Device::CPU);
  const bool label_shaped = y.rank() == 1 || (y.rank() == 2 && y.dim(1) == 1);
  // Integer labels: required by scce, also accepted by cce (same loss as one-hot rows).
  if (t.kind == ops::TargetKind::Labels || (s.loss == LossKind::CategoricalCE && label_shaped && K > 1)) {
    CNN_CHECK(label_shaped, what, ": loss '", s.opt.loss, "' needs integer class labels [N], got y of shape ",
              shape_str(y.shape()));
    t.kind = ops::TargetKind::Labels;
    t.labels.resize(size_t(rows));
    for (int64_t i = 0; i < rows; ++i) {
      const float v = host.data()[i];
      CNN_CHECK(std::isfinite(v) && v == std::floor(v) && v >= 0 && v < float(K), what, ": label ", v, " at row ", i,
                " is not a class index in [0, ", K, ")");
      t.labels[size_t(i)] = int32_t(v);
    }
    return t;
  }
  const bool matches = (y.rank() == 2 && y.dim(1) == K) || (K == 1 && y.rank() == 1);
  CNN_CHECK(matches, what, ": loss '", s.opt.loss, "' needs targets of shape [", rows, ", ", K,
            "] (one row per sample, one value per output unit), got ", shape_str(y.shape()));
  for (int64_t i = 0; i < host.numel(); ++i)
    CNN_CHECK(std::isfinite(host.data()[i]), what, ": target at flat index ", i, " is not finite");
  t.dense = host.reshape({rows, K});
  return t;
}

namespace {

// Host memory to fill for an upload to the GPU: pinned, and copied without a host
// synchronisation (cuda::upload_staging / upload).
void* staging_for(State& s, size_t bytes) {
#if CNN_WITH_CUDA
  return cuda::upload_staging(*s.cuda, bytes);
#else
  (void)s;
  (void)bytes;
  fail("CUDA upload requested, but ", cuda_unavailable_reason());
#endif
}
void upload_staged(State& s, void* device_dst, const void* staging, size_t bytes) {
#if CNN_WITH_CUDA
  cuda::upload(*s.cuda, device_dst, staging, bytes);
#else
  (void)s;
  (void)device_dst;
  (void)staging;
  (void)bytes;
#endif
}

}  // namespace

void load_batch(State& s, const Tensor& x, const Targets& t, const int64_t* rows, int n, int64_t mirror_epoch,
                bool to_augmented) {
  Arena<float>& a = s.arena;
  const int64_t in = s.input_size;
  const bool on_gpu = s.device != Device::CPU;
  float* images = to_augmented ? a.augmented.data() : a.input.data();
  float* dst = on_gpu ? static_cast<float*>(staging_for(s, size_t(n * in) * sizeof(float))) : images;
  const int64_t w = s.input_shape.back();
  for (int i = 0; i < n; ++i) {
    const float* src = x.data() + rows[i] * in;
    float* out = dst + int64_t(i) * in;
    if (mirror_epoch >= 0 && augment::alternate_flipped(rows[i], mirror_epoch)) {
      for (int64_t r = 0; r < in / w; ++r) std::reverse_copy(src + r * w, src + (r + 1) * w, out + r * w);
    } else {
      std::copy_n(src, in, out);
    }
  }
  if (on_gpu) upload_staged(s, images, dst, size_t(n * in) * sizeof(float));

  if (t.kind == ops::TargetKind::Labels) {
    const size_t bytes = size_t(n) * sizeof(int32_t);
    int32_t* labels = on_gpu ? static_cast<int32_t*>(staging_for(s, bytes)) : a.labels.data();
    for (int i = 0; i < n; ++i) labels[i] = t.labels[size_t(rows[i])];
    if (on_gpu) upload_staged(s, a.labels.data(), labels, bytes);
  } else {
    const int64_t k = t.cols;
    const size_t bytes = size_t(n * k) * sizeof(float);
    float* dense = on_gpu ? static_cast<float*>(staging_for(s, bytes)) : a.targets.data();
    for (int i = 0; i < n; ++i) std::copy_n(t.dense.data() + rows[i] * k, k, dense + int64_t(i) * k);
    if (on_gpu) upload_staged(s, a.targets.data(), dense, bytes);
  }
}

double accuracy_units(const State& s, ops::TargetKind kind, int64_t rows) {
  return kind == ops::TargetKind::Binary ? double(rows) * double(s.output_size()) : double(rows);
}

}  // namespace cnn
