// Patch whitening (cnn/initializers.hpp): the Jacobi eigen solver, the whitening conv's
// output covariance, its error messages, the "patch_whitening" kernel_initializer in model
// descriptions and in `cnn train`, and models/airbench94.json.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "cnn/pictures.hpp"
#include "cnn/rng.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

// ---- helpers ------------------------------------------------------------------------------------

using test::error_of;
#define EXPECT_ERROR_CONTAINS(statement, fragment)                                         \
  do {                                                                                     \
    const std::string msg_ = error_of([&] { statement; });                                 \
    EXPECT_NE(msg_.find(fragment), std::string::npos) << "message: " << msg_;              \
  } while (0)

std::vector<double> random_symmetric(int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> a(size_t(n) * size_t(n));
  for (int i = 0; i < n; ++i)
    for (int j = i; j < n; ++j) a[size_t(i * n + j)] = a[size_t(j * n + i)] = rng.uniform(-1, 1);
  return a;
}

// max |a - V diag(values) V^T|, max |V^T V - I|.
std::pair<double, double> eigen_errors(const std::vector<double>& a, const SymmetricEigen& e, int n) {
  double recon = 0, ortho = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double r = 0, o = 0;
      for (int k = 0; k < n; ++k) {
        r += e.vectors[size_t(i * n + k)] * e.values[size_t(k)] * e.vectors[size_t(j * n + k)];
        o += e.vectors[size_t(k * n + i)] * e.vectors[size_t(k * n + j)];
      }
      recon = std::max(recon, std::fabs(r - a[size_t(i * n + j)]));
      ortho = std::max(ortho, std::fabs(o - (i == j ? 1.0 : 0.0)));
    }
  return {recon, ortho};
}

// Images whose channels and neighbouring pixels are strongly correlated, with a non-zero mean:
// x_c(h, w) = offset_c + scale sum_k M[c][k] (z_k(h, w) + 0.7 z_k(h, w+1) + 0.4 z_k(h+1, w)).
Tensor correlated_images(int n, int channels, int h, int w, uint64_t seed, float scale = 0.2f) {
  Rng rng(seed);
  const double M[3][3] = {{1.0, 0.8, 0.5}, {0.7, 1.0, 0.6}, {0.4, 0.9, 1.0}};
  const double offset[3] = {0.5, 0.45, 0.4};
  std::vector<float> x(size_t(n) * channels * h * w);
  std::vector<double> z(size_t(channels) * (h + 1) * (w + 1));
  for (int i = 0; i < n; ++i) {
    for (auto& v : z) v = rng.uniform(-1, 1);
    auto zat = [&](int k, int y, int xx) { return z[(size_t(k) * (h + 1) + size_t(y)) * size_t(w + 1) + size_t(xx)]; };
    for (int c = 0; c < channels; ++c)
      for (int y = 0; y < h; ++y)
        for (int xx = 0; xx < w; ++xx) {
          double s = 0;
          for (int k = 0; k < channels; ++k)
            s += M[c % 3][k % 3] * (zat(k, y, xx) + 0.7 * zat(k, y, xx + 1) + 0.4 * zat(k, y + 1, xx));
          x[((size_t(i) * channels + size_t(c)) * size_t(h) + size_t(y)) * size_t(w) + size_t(xx)] =
              float(offset[c % 3] + scale * s);
        }
  }
  return Tensor::from_vector({n, channels, h, w}, x);
}

// Mean and covariance (over samples and positions) of channels [first, first + count) of y [N, C, H, W].
struct Moments {
  std::vector<double> mean, cov;  // cov: count x count
};
Moments channel_moments(const Tensor& y, int first, int count) {
  const int64_t N = y.dim(0), C = y.dim(1), P = y.dim(2) * y.dim(3);
  const std::vector<float> v = y.to_vector();
  Moments m;
  m.mean.assign(size_t(count), 0.0);
  m.cov.assign(size_t(count) * size_t(count), 0.0);
  auto at = [&](int64_t n, int c, int64_t p) { return double(v[size_t((n * C + first + c) * P + p)]); };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < P; ++p)
      for (int c = 0; c < count; ++c) m.mean[size_t(c)] += at(n, c, p) / double(N * P);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < P; ++p)
      for (int a = 0; a < count; ++a)
        for (int b = 0; b < count; ++b)
          m.cov[size_t(a * count + b)] +=
              (at(n, a, p) - m.mean[size_t(a)]) * (at(n, b, p) - m.mean[size_t(b)]) / double(N * P);
  return m;
}

// A model whose layer 0 is the whitening conv (linear, 2 * k*k*C filters, bias), then a head.
Sequential whitening_model(int channels, int h, int w, int k, bool use_bias = true) {
  Sequential m({Conv2D(Conv2DOptions{.filters = 2 * k * k * channels, .kernel_size = k, .use_bias = use_bias}),
                Flatten(), Dense(2)});
  CompileOptions o;
  o.loss = "scce";
  o.from_logits = true;
  o.input_shape = {channels, h, w};
  m.compile(o);
  return m;
}

Tensor weight_of(const Sequential& m, const std::string& name) {
  for (const auto& [n, t] : m.weights())
    if (n == name) return t;
  ADD_FAILURE() << "no weight " << name;
  return {};
}

// ---- the eigen solver -------------------------------------------------------------------------------

TEST(SymmetricEigen, ReconstructsRandomSymmetricMatrices) {
  for (int n : {1, 2, 12, 40}) {
    const std::vector<double> a = random_symmetric(n, uint64_t(n));
    const SymmetricEigen e = symmetric_eigen(a, n);
    ASSERT_EQ(e.values.size(), size_t(n));
    ASSERT_EQ(e.vectors.size(), size_t(n * n));
    const auto [recon, ortho] = eigen_errors(a, e, n);
    EXPECT_LT(recon, 1e-12) << "n = " << n;  // entries are O(1)
    EXPECT_LT(ortho, 1e-12) << "n = " << n;
    EXPECT_TRUE(std::is_sorted(e.values.rbegin(), e.values.rend())) << "values must be descending, n = " << n;
    // A v_k = lambda_k v_k, column by column.
    for (int k = 0; k < n; ++k)
      for (int i = 0; i < n; ++i) {
        double av = 0;
        for (int j = 0; j < n; ++j) av += a[size_t(i * n + j)] * e.vectors[size_t(j * n + k)];
        EXPECT_NEAR(av, e.values[size_t(k)] * e.vectors[size_t(i * n + k)], 1e-12);
      }
  }
}

TEST(SymmetricEigen, RepeatedEigenvaluesDiagonalInputAndTheLowerTriangleIgnored) {
  // I + u u^T: eigenvalues 1 + |u|^2 once and 1 (n - 1 times).
  const int n = 6;
  std::vector<double> a(size_t(n * n), 0.0);
  const double u[n] = {1, 2, 0, -1, 0.5, 3};
  double u2 = 0;
  for (int i = 0; i < n; ++i) {
    u2 += u[i] * u[i];
    for (int j = 0; j < n; ++j) a[size_t(i * n + j)] = (i == j) + u[i] * u[j];
  }
  SymmetricEigen e = symmetric_eigen(a, n);
  EXPECT_NEAR(e.values[0], 1 + u2, 1e-12);
  for (int k = 1; k < n; ++k) EXPECT_NEAR(e.values[size_t(k)], 1.0, 1e-12);
  EXPECT_LT(eigen_errors(a, e, n).first, 1e-12);
  // Garbage below the diagonal is not read.
  std::vector<double> upper = a;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) upper[size_t(i * n + j)] = 1e6;
  const SymmetricEigen e2 = symmetric_eigen(upper, n);
  EXPECT_EQ(e2.values, e.values);
  // A diagonal matrix comes back sorted, with unit vectors.
  e = symmetric_eigen({2, 0, 0, 0, -1, 0, 0, 0, 5}, 3);
  EXPECT_EQ(e.values, (std::vector<double>{5, 2, -1}));
  EXPECT_EQ(e.vectors, (std::vector<double>{0, 1, 0, 0, 0, 1, 1, 0, 0}));
}

TEST(SymmetricEigen, Errors) {
  EXPECT_ERROR_CONTAINS(symmetric_eigen({1, 2, 3}, 2), "expected 4 entries for 2x2, got 3");
  EXPECT_ERROR_CONTAINS(symmetric_eigen({}, 0), "size must be >= 1");
  EXPECT_ERROR_CONTAINS(symmetric_eigen({1, NAN, 0, 1}, 2), "entry (0, 1) is not finite");
}

// ---- init_patch_whitening -----------------------------------------------------------------------------

// The first C k k outputs of the whitened (linear) conv have identity covariance over the same
// patches, zero mean (the bias takes the mean out), and the second half is their negation.
TEST(PatchWhitening, OutputCovarianceIsTheIdentity) {
  const int C = 3, H = 10, W = 9, k = 2, D = C * k * k;
  const Tensor x = correlated_images(40, C, H, W, 11);
  Sequential m = whitening_model(C, H, W, k);
  // The input patches are far from white: check that the test means something.
  {
    Sequential id = whitening_model(C, H, W, 1);  // 1x1 "patches": the plain channel covariance
    std::vector<std::pair<std::string, Tensor>> w = id.weights();
    std::vector<float> eye(size_t(2 * C * C), 0.0f);
    for (int c = 0; c < C; ++c) eye[size_t(c * C + c)] = 1.0f;
    w[0].second = Tensor::from_vector(w[0].second.shape(), eye);
    id.set_weights(w);
    const Moments in = channel_moments(id.layer_outputs(x)[0], 0, C);
    EXPECT_GT(in.cov[1] / std::sqrt(in.cov[0] * in.cov[4]), 0.5);  // channels 0 and 1 correlate
  }
  const std::vector<double> lambda = init_patch_whitening(m, 0, x, 0.0);
  ASSERT_EQ(lambda.size(), size_t(D));
  EXPECT_TRUE(std::is_sorted(lambda.rbegin(), lambda.rend()));
  EXPECT_GT(lambda.front() / lambda.back(), 100.0);  // strongly correlated patches

  const Tensor y = m.layer_outputs(x)[0];  // [N, 2D, H-1, W-1]
  ASSERT_EQ(y.shape(), (Shape{40, 2 * D, H - 1, W - 1}));
  const Moments out = channel_moments(y, 0, D);
  double worst = 0, worst_mean = 0;
  for (int a = 0; a < D; ++a) {
    worst_mean = std::max(worst_mean, std::fabs(out.mean[size_t(a)]));
    for (int b = 0; b < D; ++b) worst = std::max(worst, std::fabs(out.cov[size_t(a * D + b)] - (a == b ? 1.0 : 0.0)));
  }
  // Tolerance: the weights are floats and the conv runs in float (relative rounding ~1e-7 on
  // terms up to |w| |x| ~ 1 / sqrt(lambda_min)); 1e-3 leaves a wide margin.
  EXPECT_LT(worst, 1e-3);
  EXPECT_LT(worst_mean, 1e-3);
  // The second half: negated weights and bias, so negated outputs.
  const std::vector<float> w = weight_of(m, "layers.0.conv2d.weight").to_vector();
  const std::vector<float> bias = weight_of(m, "layers.0.conv2d.bias").to_vector();
  for (size_t i = 0; i < size_t(D * D); ++i) ASSERT_EQ(w[size_t(D * D) + i], -w[i]);
  for (size_t f = 0; f < size_t(D); ++f) ASSERT_EQ(bias[size_t(D) + f], -bias[f]);
  const std::vector<float> yv = y.to_vector();
  const int64_t P = y.dim(2) * y.dim(3);
  double worst_neg = 0;
  for (int64_t n = 0; n < y.dim(0); ++n)
    for (int64_t c = 0; c < D; ++c)
      for (int64_t p = 0; p < P; ++p)
        worst_neg = std::max(worst_neg, double(std::fabs(yv[size_t((n * 2 * D + c) * P + p)] +
                                                          yv[size_t((n * 2 * D + D + c) * P + p)])));
  EXPECT_LT(worst_neg, 1e-5);
}

// With eps > 0 the variances are lambda / (lambda + eps); relative_eps scales eps by the mean
// eigenvalue, which makes the result independent of the inputs' scale.
TEST(PatchWhitening, EpsDampsTheWeakDirectionsAndRelativeEpsIsScaleFree) {
  const int C = 3, H = 8, W = 8, k = 2, D = C * k * k;
  const Tensor x = correlated_images(30, C, H, W, 5);
  auto variances = [&](const Tensor& images, double eps, bool relative, std::vector<double>* lambda) {
    Sequential m = whitening_model(C, H, W, k);
    *lambda = init_patch_whitening(m, 0, images, eps, relative);
    const Moments out = channel_moments(m.layer_outputs(images)[0], 0, D);
    std::vector<double> v(static_cast<size_t>(D));
    for (int a = 0; a < D; ++a) {
      v[size_t(a)] = out.cov[size_t(a * D + a)];
      for (int b = 0; b < D; ++b) {
        if (a != b) {
          EXPECT_LT(std::fabs(out.cov[size_t(a * D + b)]), 1e-4) << a << ", " << b;
        }
      }
    }
    return v;
  };
  std::vector<double> lambda;
  const double eps = 5e-4;
  std::vector<double> v = variances(x, eps, false, &lambda);
  for (int f = 0; f < D; ++f) EXPECT_NEAR(v[size_t(f)], lambda[size_t(f)] / (lambda[size_t(f)] + eps), 1e-4);
  EXPECT_LT(v.back(), 0.9);  // the weakest direction is visibly damped at this scale

  double mean_lambda = 0;
  for (double l : lambda) mean_lambda += l / D;
  v = variances(x, eps, true, &lambda);
  for (int f = 0; f < D; ++f)
    EXPECT_NEAR(v[size_t(f)], lambda[size_t(f)] / (lambda[size_t(f)] + eps * mean_lambda), 1e-4);
  // The same images x 10 (eigenvalues x 100) give the same output variances with relative_eps.
  Tensor x10 = x.clone();
  for (int64_t i = 0; i < x10.numel(); ++i) x10.data()[i] *= 10.0f;
  std::vector<double> lambda10;
  const std::vector<double> v10 = variances(x10, eps, true, &lambda10);
  for (int f = 0; f < D; ++f) {
    EXPECT_NEAR(lambda10[size_t(f)] / lambda[size_t(f)], 100.0, 1e-3);
    EXPECT_NEAR(v10[size_t(f)], v[size_t(f)], 1e-4);
  }
}

// A whitening conv deeper in the model whitens the patches of the output below it; without a
// bias the outputs keep their mean but the covariance is still the identity.
TEST(PatchWhitening, LaterLayerWithoutBias) {
  const int H = 9, W = 9;
  Sequential m({Conv2D(Conv2DOptions{.filters = 2, .kernel_size = 1, .activation = "tanh"}),
                Conv2D(Conv2DOptions{.filters = 2 * 2 * 2 * 2, .kernel_size = 2, .use_bias = false}), Flatten(),
                Dense(3)});
  CompileOptions o;
  o.loss = "scce";
  o.from_logits = true;
  o.input_shape = {3, H, W};
  m.compile(o);
  const Tensor x = correlated_images(30, 3, H, W, 9);
  const Tensor before = weight_of(m, "layers.0.conv2d.weight");
  init_patch_whitening(m, 1, x, 0.0);
  EXPECT_EQ(weight_of(m, "layers.0.conv2d.weight").to_vector(), before.to_vector());  // layer 0 untouched
  const Moments out = channel_moments(m.layer_outputs(x)[1], 0, 8);
  for (int a = 0; a < 8; ++a)
    for (int b = 0; b < 8; ++b) EXPECT_NEAR(out.cov[size_t(a * 8 + b)], a == b ? 1.0 : 0.0, 1e-3) << a << ", " << b;
}

TEST(PatchWhitening, ErrorsNameTheProblemAndChangeNothing) {
  const Tensor x = correlated_images(4, 3, 8, 8, 3);
  Sequential uncompiled({Conv2D(24, 2), Flatten(), Dense(2)});
  EXPECT_ERROR_CONTAINS(init_patch_whitening(uncompiled, 0, x), "init_patch_whitening: compile the model first");

  Sequential m = whitening_model(3, 8, 8, 2);
  const auto before = m.weights();
  EXPECT_ERROR_CONTAINS(init_patch_whitening(m, 3, x), "layer 3 does not exist (the model has 3 layers)");
  EXPECT_ERROR_CONTAINS(init_patch_whitening(m, 1, x), "layer 1 is a Flatten, not a Conv2D");
  EXPECT_ERROR_CONTAINS(init_patch_whitening(m, 0, x.slice(0, 2).reshape({2, 3, 16, 4})),
                        "images have shape [2, 3, 16, 4] but the model takes [N, 3, 8, 8]");
  EXPECT_ERROR_CONTAINS(init_patch_whitening(m, 0, x.reshape({4, 192})),
                        "images have shape [4, 192] but the model takes [N, 3, 8, 8]");
  EXPECT_ERROR_CONTAINS(init_patch_whitening(m, 0, x, -1.0), "eps must be finite and >= 0, got -1");
  EXPECT_ERROR_CONTAINS(init_patch_whitening(m, 0, x, NAN), "eps must be finite and >= 0");
  Tensor bad = x.clone();
  bad.data()[17] = NAN;
  EXPECT_ERROR_CONTAINS(init_patch_whitening(m, 0, bad), "hold a non-finite value");
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_EQ(m.weights()[i].second.to_vector(), before[i].second.to_vector()) << before[i].first;

  Sequential wide({Conv2D(Conv2DOptions{.filters = 32, .kernel_size = 2}), Flatten(), Dense(2)});
  wide.compile("sgd", "mse", 0.1f, {3, 8, 8});
  EXPECT_ERROR_CONTAINS(init_patch_whitening(wide, 0, x),
                        "has 32 filters, but whitening its 2x2x3 patches needs 2 * 12 = 24 filters");
  // 3x3x3 patches of 4x4 images: 4 per image, 27 + 1 needed.
  Sequential small({Conv2D(Conv2DOptions{.filters = 54, .kernel_size = 3}), Flatten(), Dense(2)});
  small.compile("sgd", "mse", 0.1f, {3, 4, 4});
  const Tensor tiny = correlated_images(6, 3, 4, 4, 1);
  EXPECT_ERROR_CONTAINS(init_patch_whitening(small, 0, tiny),
                        "too few patches: 6 image(s) with 4 3x3 patch(es) each give 24, but a 27x27 covariance "
                        "needs at least 28");
  EXPECT_NO_THROW(init_patch_whitening(small, 0, correlated_images(7, 3, 4, 4, 1)));
  // Constant images: a singular covariance needs eps > 0.
  Sequential flat = whitening_model(3, 8, 8, 2);
  EXPECT_ERROR_CONTAINS(init_patch_whitening(flat, 0, Tensor::full({4, 3, 8, 8}, 0.5f), 0.0),
                        "the patch covariance is singular");
  EXPECT_NO_THROW(init_patch_whitening(flat, 0, Tensor::full({4, 3, 8, 8}, 0.5f), 1e-3));
  EXPECT_ERROR_CONTAINS(init_patch_whitening(flat, 0, Tensor::full({4, 3, 8, 8}, 0.5f), 1e-3, true),
                        "input are all equal (zero covariance)");
}

// ---- model descriptions ------------------------------------------------------------------------------

nlohmann::json tiny_description(int filters = 24) {
  return nlohmann::json::parse(R"({"input_shape": [3, 8, 8], "layers": [
      {"type": "Conv2D", "filters": )" + std::to_string(filters) + R"(, "kernel_size": 2,
       "kernel_initializer": "patch_whitening", "trainable": false},
      {"type": "Activation", "activation": "gelu"},
      {"type": "GlobalAveragePooling2D"},
      {"type": "Dense", "units": 2}],
    "compile": {"optimizer": "sgd", "loss": "scce", "from_logits": true, "learning_rate": 0.1}})");
}

TEST(PatchWhiteningJson, CompilesLikeGlorotAndRoundTrips) {
  Sequential m = Sequential::from_json(tiny_description());
  ASSERT_TRUE(m.compiled());
  const std::vector<float> w = weight_of(m, "layers.0.conv2d.weight").to_vector();
  const double limit = std::sqrt(6.0 / (12 + 24 * 4));  // glorot_uniform: fan_in 12, fan_out 96
  double largest = 0;
  for (float v : w) largest = std::max(largest, double(std::fabs(v)));
  EXPECT_GT(largest, 0.5 * limit);
  EXPECT_LE(largest, limit);
  EXPECT_EQ(m.to_json()["layers"][0]["kernel_initializer"], "patch_whitening");
  EXPECT_EQ(Sequential::from_json(m.to_json()).to_json(), m.to_json());
  // And through a saved file, weights included.
  init_patch_whitening(m, 0, correlated_images(8, 3, 8, 8, 2));
  const fs::path file = fs::temp_directory_path() / ("whitening_" + std::to_string(::getpid()) + ".safetensors");
  m.save(file.string());
  Sequential loaded = Sequential::load(file.string());
  fs::remove(file);
  EXPECT_EQ(loaded.to_json()["layers"][0]["kernel_initializer"], "patch_whitening");
  EXPECT_EQ(loaded.to_json()["layers"][0]["trainable"], false);
  EXPECT_EQ(weight_of(loaded, "layers.0.conv2d.weight").to_vector(),
            weight_of(m, "layers.0.conv2d.weight").to_vector());
}

TEST(PatchWhiteningJson, ValidatedLikeTheOtherInitialisers) {
  EXPECT_ERROR_CONTAINS(Sequential::from_json(tiny_description(16)),
                        "kernel_initializer 'patch_whitening' needs filters = 2 * 2 * 2 * 3 = 24");
  nlohmann::json j = tiny_description();
  j["layers"][0]["kernel_initializer"] = "whitening";
  EXPECT_ERROR_CONTAINS(Sequential::from_json(j),
                        "unknown initializer 'whitening'; valid initializers: glorot_uniform, he_uniform, zeros, "
                        "ones, torch_uniform, torch_uniform_dirac, patch_whitening");
  j = tiny_description();
  j["layers"][3]["kernel_initializer"] = "patch_whitening";
  EXPECT_ERROR_CONTAINS(Sequential::from_json(j), "'patch_whitening' is for Conv2D layers only");
}

TEST(Airbench94Json, CompilesWithTheExpectedShapes) {
  Sequential m = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/airbench94.json");
  ASSERT_TRUE(m.compiled());
  ASSERT_EQ(m.size(), 26u);
  const Layer& whiten = m.layer(0);
  EXPECT_EQ(whiten.type(), "Conv2D");
  // Weights frozen, bias trained for 3 epochs (test_recipe_fidelity.cpp).
  EXPECT_TRUE(whiten.trainable);
  EXPECT_TRUE(whiten.bias_only);
  EXPECT_EQ(dynamic_cast<const Conv2D&>(whiten).options().kernel_initializer, "patch_whitening");
  EXPECT_EQ(whiten.output_shape(), (Shape{24, 31, 31}));
  // Each block: conv -> pool -> BN -> GELU -> conv -> BN -> GELU.
  const int widths[3] = {64, 256, 256}, sides[3] = {15, 7, 3};
  for (int b = 0; b < 3; ++b) {
    const size_t at = 2 + size_t(b) * 7;
    EXPECT_EQ(m.layer(at).type(), "Conv2D");
    EXPECT_EQ(m.layer(at + 1).type(), "MaxPooling2D");
    EXPECT_EQ(m.layer(at + 2).type(), "BatchNormalization");
    EXPECT_EQ(m.layer(at + 1).output_shape(), (Shape{widths[b], sides[b], sides[b]})) << "block " << b;
    EXPECT_EQ(m.layer(at + 6).output_shape(), (Shape{widths[b], sides[b], sides[b]})) << "block " << b;
    EXPECT_FALSE(dynamic_cast<const Conv2D&>(m.layer(at)).options().use_bias);
  }
  EXPECT_EQ(m.layer(23).output_shape(), (Shape{256, 1, 1}));
  EXPECT_EQ(m.layer(25).output_shape(), (Shape{10}));
  const auto& dense = dynamic_cast<const Dense&>(m.layer(25));
  EXPECT_FALSE(dense.options().use_bias);
  EXPECT_FLOAT_EQ(dense.options().scale, 1.0f / 9);
  const CompileOptions& o = m.compile_options();
  EXPECT_TRUE(o.from_logits);
  EXPECT_TRUE(o.nesterov);
  EXPECT_FLOAT_EQ(o.label_smoothing, 0.2f);
  EXPECT_FLOAT_EQ(o.momentum, 0.85f);
  // Whitening and a forward pass work on it.
  const Tensor x = correlated_images(3, 3, 32, 32, 4);
  init_patch_whitening(m, 0, x);
  const Tensor p = m.predict(x);
  ASSERT_EQ(p.shape(), (Shape{3, 10}));
  for (float v : p.to_vector()) EXPECT_TRUE(std::isfinite(v));
}

// ---- cnn train -----------------------------------------------------------------------------------------

struct Scratch {
  fs::path path = fs::temp_directory_path() / ("cnn_whitening_test_" + std::to_string(::getpid()));
  Scratch() { fs::create_directories(path); }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string run_cnn(const fs::path& dir, const std::string& args, int* code) {
  const fs::path out = dir / "stdout.txt";
  const std::string cmd = "cd '" + dir.string() + "' && '" CNN_BINARY_DIR "/cnn' " + args + " >'" + out.string() +
                          "' 2>&1";
  const int status = std::system(cmd.c_str());
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(PatchWhiteningCli, TrainWhitensFromTheTrainingImagesUnlessTheModelIsSaved) {
  Scratch s;
  // Two classes of 8x8 pictures with correlated colours.
  Rng rng(3);
  for (const char* split : {"train", "test"})
    for (int k = 0; k < 2; ++k) {
      const fs::path d = s.path / "data" / split / ("class" + std::to_string(k));
      fs::create_directories(d);
      for (int i = 0; i < 6; ++i) {
        Image img(8, 8);
        for (int y = 0; y < 8; ++y)
          for (int x = 0; x < 8; ++x) {
            const int g = int(rng.below(200)), r = std::min(255, g + int(rng.below(40)) + 40 * k);
            img.set(x, y, Color{uint8_t(r), uint8_t(g), uint8_t(g / 2 + int(rng.below(30)))});
          }
        save_png(img, (d / (std::to_string(i) + ".png")).string());
      }
    }
  std::ofstream(s.path / "tiny.json") << tiny_description().dump();
  int code = 0;
  std::string out = run_cnn(s.path, "train --model tiny.json --data data --epochs 1 --batch-size 4 "
                                    "--validation-split 0.25 --verbose 0 --save tiny.safetensors", &code);
  ASSERT_EQ(code, 0) << out;
  // 12 training images, the last quarter held out for validation: 9 whiten.
  EXPECT_NE(out.find("Whitened layer 0 (Conv2D) with the patches of 9 training images"), std::string::npos) << out;
  // The frozen layer keeps exactly what init_patch_whitening (relative eps, as cnn train) computes.
  Sequential expected = Sequential::from_json(tiny_description());
  const Dataset train = load_image_folder((s.path / "data" / "train").string(), 3, 8, 8);
  init_patch_whitening(expected, 0, train.x.slice(0, 9), 5e-4, true);
  Sequential saved = Sequential::load((s.path / "tiny.safetensors").string());
  const std::vector<float> a = weight_of(saved, "layers.0.conv2d.weight").to_vector(),
                           b = weight_of(expected, "layers.0.conv2d.weight").to_vector();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5f * (1 + std::fabs(b[i]))) << i;
  // Training a saved model further keeps its weights: no second whitening.
  out = run_cnn(s.path, "train --model tiny.safetensors --data data --epochs 1 --batch-size 4 --verbose 0 --save again.safetensors",
                &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(out.find("Whitened"), std::string::npos) << out;
}

}  // namespace
}  // namespace cnn
