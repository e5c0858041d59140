// Data-dependent initialisers (patch whitening) and the symmetric Jacobi eigen solver.
#include "cnn/initializers.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>

#include "cnn/error.hpp"
#include "cnn/layers.hpp"
#include "kernels/ops.hpp"
#include "model/state.hpp"

namespace cnn {

SymmetricEigen symmetric_eigen(const std::vector<double>& a_in, int n) {
  CNN_CHECK(n >= 1, "symmetric_eigen: the size must be >= 1, got ", n);
  const size_t N = size_t(n);
  CNN_CHECK(a_in.size() == N * N, "symmetric_eigen: expected ", N * N, " entries for ", n, "x", n, ", got ",
            a_in.size());
  // Work on a full symmetric copy built from the upper triangle.
  std::vector<double> a(N * N);
  double norm2 = 0;
  for (size_t i = 0; i < N; ++i)
    for (size_t j = i; j < N; ++j) {
      const double v = a_in[i * N + j];
      CNN_CHECK(std::isfinite(v), "symmetric_eigen: entry (", i, ", ", j, ") is not finite");
      a[i * N + j] = a[j * N + i] = v;
      norm2 += (i == j ? 1.0 : 2.0) * v * v;
    }
  std::vector<double> v(N * N, 0.0);
  for (size_t i = 0; i < N; ++i) v[i * N + i] = 1.0;

  auto off_diagonal2 = [&] {
    double s = 0;
    for (size_t i = 0; i < N; ++i)
      for (size_t j = i + 1; j < N; ++j) s += 2 * a[i * N + j] * a[i * N + j];
    return s;
  };
  // Cyclic sweeps over every (p, q), p < q: a rotation in the (p, q) plane zeroes a_pq. Each
  // sweep shrinks the off-diagonal mass (quadratically near the end); stop when it is at
  // round-off level relative to the whole matrix.
  const double target = norm2 * 1e-30;
  constexpr int kMaxSweeps = 100;
  int sweep = 0;
  for (; sweep < kMaxSweeps && off_diagonal2() > target; ++sweep) {
    for (size_t p = 0; p + 1 < N; ++p) {
      for (size_t q = p + 1; q < N; ++q) {
        const double apq = a[p * N + q];
        if (apq == 0.0) continue;
        const double app = a[p * N + p], aqq = a[q * N + q];
        // The rotation angle phi solves tan(2 phi) = 2 a_pq / (a_qq - a_pp); t = tan(phi) is the
        // root of t^2 + 2 theta t - 1 = 0 of smaller magnitude (the smaller rotation).
        const double theta = (aqq - app) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        // A' = J^T A J, with J the identity but J_pp = J_qq = c, J_pq = s, J_qp = -s.
        for (size_t k = 0; k < N; ++k) {
          if (k == p || k == q) continue;
          const double akp = a[k * N + p], akq = a[k * N + q];
          const double kp = c * akp - s * akq, kq = s * akp + c * akq;
          a[k * N + p] = a[p * N + k] = kp;
          a[k * N + q] = a[q * N + k] = kq;
        }
        a[p * N + p] = app - t * apq;
        a[q * N + q] = aqq + t * apq;
        a[p * N + q] = a[q * N + p] = 0.0;
        for (size_t k = 0; k < N; ++k) {  // V' = V J
          const double vkp = v[k * N + p], vkq = v[k * N + q];
          v[k * N + p] = c * vkp - s * vkq;
          v[k * N + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  CNN_CHECK(off_diagonal2() <= target, "symmetric_eigen: no convergence after ", kMaxSweeps, " sweeps");

  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return a[x * N + x] > a[y * N + y]; });
  SymmetricEigen out;
  out.values.resize(N);
  out.vectors.resize(N * N);
  for (size_t k = 0; k < N; ++k) {
    out.values[k] = a[order[k] * N + order[k]];
    for (size_t i = 0; i < N; ++i) out.vectors[i * N + k] = v[i * N + order[k]];
  }
  return out;
}

namespace {

// Sums over patches: count, sum p (D), sum p p^T (D x D, upper triangle filled), added to by
// ops::cpu::accumulate_patch_moments.
struct PatchMoments {
  double count = 0;
  std::vector<double> sum, outer;
  explicit PatchMoments(size_t d = 0) : sum(d, 0.0), outer(d * d, 0.0) {}
};

// Adds every kh x kw patch (stride 1, valid) of images [n, C, H, W] to m.
void accumulate_patches(const float* x, int64_t n, int C, int H, int W, int kh, int kw, PatchMoments& m) {
  ops::cpu::accumulate_patch_moments(n, C, H, W, kh, kw, x, &m.count, m.sum.data(), m.outer.data());
}

}  // namespace

std::vector<double> init_patch_whitening(Sequential& model, size_t layer_index, const Tensor& images, double eps,
                                         bool relative_eps) {
  const char* what = "init_patch_whitening";
  CNN_CHECK(model.compiled(), what, ": compile the model first (the layer's input shape is fixed at compile)");
  CNN_CHECK(layer_index < model.size(), what, ": layer ", layer_index, " does not exist (the model has ",
            model.size(), " layers)");
  const Layer& layer = model.layer(layer_index);
  const auto* conv = dynamic_cast<const Conv2D*>(&layer);
  CNN_CHECK(conv != nullptr, what, ": layer ", layer_index, " is a ", layer.type(), ", not a Conv2D");
  CNN_CHECK(std::isfinite(eps) && eps >= 0, what, ": eps must be finite and >= 0, got ", eps);
  const Shape& in = layer.input_shape();
  const int C = int(in[0]), H = int(in[1]), W = int(in[2]);
  const int kh = conv->options().kernel_size.h, kw = conv->options().kernel_size.w;
  const int64_t D = int64_t(C) * kh * kw;
  CNN_CHECK(conv->options().filters == 2 * D, what, ": layer ", layer_index, " (Conv2D) has ",
            conv->options().filters, " filters, but whitening its ", kh, "x", kw, "x", C, " patches needs 2 * ", D,
            " = ", 2 * D, " filters (each whitening filter and its negation)");

  const Shape& model_in = model.compile_options().input_shape;
  Shape expected{images.rank() >= 1 ? images.dim(0) : 0};
  expected.insert(expected.end(), model_in.begin(), model_in.end());
  CNN_CHECK(images.rank() == int(model_in.size()) + 1 && images.shape() == expected, what, ": images have shape ",
            shape_str(images.shape()), " but the model takes [N, ", shape_str(model_in).substr(1));
  const int64_t N = images.dim(0);
  const int64_t per_image = (H >= kh && W >= kw) ? int64_t(H - kh + 1) * (W - kw + 1) : 0;
  CNN_CHECK(N * per_image >= D + 1, what, ": too few patches: ", N, " image(s) with ", per_image, " ", kh, "x", kw,
            " patch(es) each give ", N * per_image, ", but a ", D, "x", D, " covariance needs at least ", D + 1);

  // The patch moments of the layer's input: the images themselves for layer 0, else the
  // output of the layer below (inference mode), a chunk of images at a time.
  PatchMoments m{size_t(D)};
  const Tensor host = images.to(Device::CPU);
  if (layer_index == 0) {
    accumulate_patches(host.data(), N, C, H, W, kh, kw, m);
  } else {
    constexpr int64_t kChunk = 256;
    for (int64_t at = 0; at < N; at += kChunk) {
      const std::vector<Tensor> outs = model.layer_outputs(host.slice(at, std::min(N, at + kChunk)));
      const Tensor& x = outs[layer_index - 1];
      accumulate_patches(x.data(), x.dim(0), C, H, W, kh, kw, m);
    }
  }

  // Covariance S = E[p p^T] - m m^T (upper triangle), then S = V diag(lambda) V^T.
  const size_t d = size_t(D);
  std::vector<double> mean(d), cov(d * d, 0.0);
  for (size_t r = 0; r < d; ++r) mean[r] = m.sum[r] / m.count;
  for (size_t r = 0; r < d; ++r)
    for (size_t s = r; s < d; ++s) cov[r * d + s] = m.outer[r * d + s] / m.count - mean[r] * mean[s];
  for (double v : cov)
    CNN_CHECK(std::isfinite(v), what, ": the patches of layer ", layer_index, "'s input hold a non-finite value");
  SymmetricEigen eig = symmetric_eigen(cov, int(D));
  for (double& l : eig.values) l = std::max(l, 0.0);  // round-off can leave tiny negatives
  if (relative_eps) eps *= std::accumulate(eig.values.begin(), eig.values.end(), 0.0) / double(D);
  CNN_CHECK(eig.values.front() > 0 || !relative_eps, what, ": the patches of layer ", layer_index,
            "'s input are all equal (zero covariance), so there is nothing to whiten");
  CNN_CHECK(eig.values.back() + eps > 0, what, ": the patch covariance is singular (its smallest eigenvalue is 0); "
            "use eps > 0");

  // Filters [2D, C, kh, kw]: row f is v_f / sqrt(lambda_f + eps) (v_f in (c, i, j) order, the
  // weight's own layout), row D + f its negation. Bias: -W m.
  std::vector<float> w(size_t(2 * D) * d), bias(size_t(2 * D));
  for (size_t f = 0; f < d; ++f) {
    const double scale = 1.0 / std::sqrt(eig.values[f] + eps);
    double wm = 0;
    for (size_t k = 0; k < d; ++k) {
      const double wk = eig.vectors[k * d + f] * scale;
      w[f * d + k] = float(wk);
      w[(d + f) * d + k] = float(-wk);
      wm += wk * mean[k];
    }
    bias[f] = float(-wm);
    bias[d + f] = float(wm);
  }
  const std::string prefix = "layers." + std::to_string(layer_index) + ".conv2d.";
  auto weights = model.weights();
  for (auto& [name, t] : weights) {
    if (name == prefix + "weight") t = Tensor::from_vector(t.shape(), w);
    else if (name == prefix + "bias") t = Tensor::from_vector(t.shape(), bias);
  }
  model.set_weights(weights);
  return eig.values;
}

namespace {
// 5e-4 as "5e-4", 2.5e-3 as "2.5e-3": the way airbench writes its constants.
std::string short_scientific(double v) {
  if (v == 0) return "0";
  const int exponent = int(std::floor(std::log10(std::fabs(v))));
  char out[48];
  std::snprintf(out, sizeof out, "%.6ge%d", v / std::pow(10.0, exponent), exponent);
  return out;
}
}  // namespace

std::string InitializationReport::describe() const {
  char out[256];
  std::snprintf(out, sizeof out,
                "Whitened layer %zu (Conv2D) with the patches of %lld training images in %.2f s "
                "(eigenvalues %.3g .. %.3g, eps %s x the mean)",
                layer, (long long)images, seconds, eigenvalues.front(), eigenvalues.back(),
                short_scientific(eps).c_str());
  return out;
}

std::vector<InitializationReport> apply_data_dependent_initializers(Sequential& model, const Tensor& x,
                                                                    const FitOptions& options) {
  const PatchWhiteningOptions& w = options.patch_whitening;
  CNN_CHECK(w.images >= 1, "fit: patch_whitening.images must be >= 1, got ", w.images);
  CNN_CHECK(std::isfinite(w.eps) && w.eps >= 0, "fit: patch_whitening.eps must be finite and >= 0, got ", w.eps);
  std::vector<InitializationReport> reports;
  if (!model.weights_fresh()) return reports;
  std::vector<size_t> layers;  // found first: whitening one layer makes the weights non-fresh
  for (size_t i = 0; i < model.size(); ++i) {
    const auto* conv = dynamic_cast<const Conv2D*>(&model.layer(i));
    if (conv && conv->options().kernel_initializer == "patch_whitening") layers.push_back(i);
  }
  if (!layers.empty()) {
    // The images fit trains on: those before the validation split.
    const int64_t n = x.dim(0), n_fit = n - int64_t(double(n) * options.validation_split);
    const Tensor images = x.slice(0, std::clamp<int64_t>(n_fit, 1, w.images));
    for (size_t i : layers) {
      const auto t0 = std::chrono::steady_clock::now();
      InitializationReport r{i, images.dim(0), w.eps, 0, init_patch_whitening(model, i, images, w.eps, true)};
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      reports.push_back(std::move(r));
    }
  }
  model.state().fresh_weights = false;
  return reports;
}

}  // namespace cnn
