// init_patch_whitening on a model that lives on the GPU: the weights it writes (computed on the
// host) are the CPU model's, bit for bit, for layer 0 and for a later layer (whose input
// patches come from the GPU forward pass), and airbench94 runs forward after it.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "cnn/rng.hpp"

namespace cnn {
namespace {

class GpuWhitening : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  }
};

Tensor images(int n, int c, int h, int w, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(size_t(n) * size_t(c) * size_t(h) * size_t(w));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(0.5 + 0.3 * rng.uniform(-1, 1) + (i % 2 ? 0.1 : 0.0));
  return Tensor::from_vector({n, c, h, w}, v);
}

TEST_F(GpuWhitening, LayerZeroGivesTheCpuWeightsOnTheGpu) {
  Sequential cpu = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/airbench94.json");
  Sequential gpu = Sequential::from_json(cpu.to_json());
  gpu.set_weights(cpu.weights());
  gpu.to(Device::CUDA);
  const Tensor x = images(16, 3, 32, 32, 1);
  init_patch_whitening(cpu, 0, x, 5e-4, true);
  init_patch_whitening(gpu, 0, x.to(Device::CUDA), 5e-4, true);
  const auto a = cpu.weights(), b = gpu.weights();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].second.to_vector(), b[i].second.to_vector()) << a[i].first;
  const std::vector<float> pc = cpu.predict(x).to_vector(), pg = gpu.predict(x).to_vector();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) EXPECT_NEAR(pg[i], pc[i], 1e-3) << i;
}

// (The filters themselves may differ from the CPU's: the GPU's layer-0 outputs differ by float
// rounding, and nearly equal eigenvalues make their eigenvectors sensitive to that. What the
// filters do is compared instead: the whitened outputs' covariance is the identity.)
TEST_F(GpuWhitening, LaterLayerWhitensTheGpuOutputBelowIt) {
  Sequential gpu({Conv2D(Conv2DOptions{.filters = 2, .kernel_size = 1, .activation = "tanh"}),
                  Conv2D(Conv2DOptions{.filters = 16, .kernel_size = 2}), Flatten(), Dense(3)});
  gpu.compile("sgd", "mse", 0.1f, {3, 9, 9});
  gpu.to(Device::CUDA);
  const Tensor x = images(20, 3, 9, 9, 2);
  init_patch_whitening(gpu, 1, x, 0.0);
  const Tensor y = gpu.layer_outputs(x)[1];  // [20, 16, 8, 8] on the host
  const std::vector<float> v = y.to_vector();
  const int64_t N = y.dim(0), C = y.dim(1), P = y.dim(2) * y.dim(3);
  constexpr int D = 8;
  double mean[D] = {};
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < D; ++c)
      for (int64_t p = 0; p < P; ++p) mean[c] += v[size_t((n * C + c) * P + p)] / double(N * P);
  for (int a = 0; a < D; ++a)
    for (int b = 0; b < D; ++b) {
      double cov = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t p = 0; p < P; ++p)
          cov += (v[size_t((n * C + a) * P + p)] - mean[a]) * (v[size_t((n * C + b) * P + p)] - mean[b]) / double(N * P);
      EXPECT_NEAR(cov, a == b ? 1.0 : 0.0, 1e-3) << a << ", " << b;
    }
}

}  // namespace
}  // namespace cnn
