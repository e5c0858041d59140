// Whole models on the GPU against the same models on the CPU: training steps (through the
// recorded CUDA graph after the first two), fit with uploads from pinned memory, Adam,
// dropout, evaluation with TTA, and files moving between devices.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "test_data_util.hpp"

namespace cnn {
namespace {

class GpuModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  }
};

double relative(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(b[i]) * b[i];
  }
  return std::sqrt(d / std::max(n, 1e-300));
}

// Two copies of a model with identical weights, one per device.
std::pair<Sequential, Sequential> twins(const std::string& json_file, const CompileOptions* options = nullptr) {
  Sequential cpu = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/" + json_file);
  if (options) cpu.compile(*options);
  Sequential gpu = Sequential::from_json(cpu.to_json());
  gpu.set_weights(cpu.weights());
  gpu.to(Device::CUDA);
  return {std::move(cpu), std::move(gpu)};
}

// Tolerance 1e-4 (the end-to-end bound): 20 steps compound float rounding that
// differs between cuBLAS/our kernels and the CPU's summation order.
TEST_F(GpuModel, TwentySgdStepsOfLeNet5AgreeWithTheCpu) {
  auto [cpu, gpu] = twins("lenet5.json");
  const auto data = test::make_quadrant_data(32 * 20, 3, 32, 32, 5);
  for (int step = 0; step < 20; ++step) {
    const Tensor x = data.x.slice(step * 32, step * 32 + 32), y = data.y.slice(step * 32, step * 32 + 32);
    const Tensor onehot = to_categorical(y, 10);
    const double a = cpu.train_on_batch(x, onehot), b = gpu.train_on_batch(x, onehot);
    ASSERT_NEAR(b, a, 1e-4 * std::abs(a)) << "step " << step;
  }
  EXPECT_LE(relative(gpu.parameters().to_vector(), cpu.parameters().to_vector()), 1e-4);
}

TEST_F(GpuModel, AdamAndAScheduleAgreeWithTheCpu) {
  CompileOptions o;
  o.optimizer = "adam";
  o.loss = "scce";
  o.learning_rate = 1e-3f;
  o.input_shape = {3, 32, 32};
  auto [cpu, gpu] = twins("cifar_cnn.json", &o);
  const auto data = test::make_quadrant_data(96, 3, 32, 32, 8);
  FitOptions f;
  f.epochs = 2;
  f.batch_size = 32;
  f.verbose = 0;
  f.lr_schedule.kind = "onecycle";
  const History a = cpu.fit(data.x, data.y, f), b = gpu.fit(data.x, data.y, f);
  for (int e = 0; e < 2; ++e) EXPECT_NEAR(b.loss[size_t(e)], a.loss[size_t(e)], 1e-4 * a.loss[size_t(e)]);
  EXPECT_LE(relative(gpu.parameters().to_vector(), cpu.parameters().to_vector()), 1e-4);
}

TEST_F(GpuModel, FitWithAugmentationDropoutAndTtaAgreesWithTheCpu) {
  auto build = [] {
    Sequential m({Conv2D(8, 3, 1, "same", "relu"), BatchNormalization(), MaxPooling2D(2), Dropout(0.2f), Flatten(),
                  Dense(4, "softmax")});
    m.compile("sgd", "scce", 0.05f, {3, 16, 16});
    return m;
  };
  Sequential cpu = build(), gpu = build();
  gpu.to(Device::CUDA);
  const auto data = test::make_quadrant_data(64, 3, 16, 16, 3);
  FitOptions f;
  f.epochs = 2;
  f.batch_size = 16;
  f.verbose = 0;
  f.augment.translate = 2;
  f.augment.flip = "random";
  f.augment.cutout = 4;
  const History a = cpu.fit(data.x, data.y, f), b = gpu.fit(data.x, data.y, f);
  EXPECT_NEAR(b.loss.back(), a.loss.back(), 1e-4 * a.loss.back());
  EXPECT_LE(relative(gpu.parameters().to_vector(), cpu.parameters().to_vector()), 1e-4);
  EvaluateOptions eo;
  eo.tta.flip = true;
  eo.tta.translate = 1;
  EXPECT_NEAR(gpu.evaluate(data.x, data.y, eo).loss, cpu.evaluate(data.x, data.y, eo).loss, 1e-4);
}

TEST_F(GpuModel, FitOnTheGpuMatchesFitOnTheCpuEpochByEpoch) {
  auto [cpu, gpu] = twins("lenet5_gray.json");
  const auto data = test::make_quadrant_data(200, 1, 32, 32, 2);
  FitOptions f;
  f.epochs = 2;
  f.batch_size = 32;  // 200 = 6 x 32 + 8: the last, smaller batch gets its own graph
  f.verbose = 0;
  f.validation_split = 0.2f;
  const Tensor y = to_categorical(data.y, 10);
  const History a = cpu.fit(data.x, y, f), b = gpu.fit(data.x, y, f);
  for (int e = 0; e < 2; ++e) {
    EXPECT_NEAR(b.loss[size_t(e)], a.loss[size_t(e)], 1e-4 * a.loss[size_t(e)]);
    EXPECT_NEAR(b.val_loss[size_t(e)], a.val_loss[size_t(e)], 1e-4 * a.val_loss[size_t(e)]);
  }
  EXPECT_LE(relative(gpu.parameters().to_vector(), cpu.parameters().to_vector()), 1e-4);
}

TEST_F(GpuModel, ModelsSavedOnOneDeviceLoadOnTheOther) {
  auto [cpu, gpu] = twins("lenet5.json");
  const auto data = test::make_quadrant_data(16, 3, 32, 32, 4);
  const std::string path = testing::TempDir() + "/gpu_saved.safetensors";
  gpu.save(path);
  Sequential on_cpu = Sequential::load(path);
  EXPECT_EQ(on_cpu.parameters().to_vector(), gpu.parameters().to_vector());
  EXPECT_LE(relative(gpu.predict(data.x).to_vector(), on_cpu.predict(data.x).to_vector()), 1e-5);
  cpu.save(path);
  Sequential on_gpu = Sequential::load(path);
  on_gpu.to(Device::CUDA);
  EXPECT_LE(relative(on_gpu.predict(data.x).to_vector(), cpu.predict(data.x).to_vector()), 1e-5);
  on_gpu.to(Device::CPU);  // and back
  EXPECT_EQ(on_gpu.predict(data.x).to_vector(), cpu.predict(data.x).to_vector());
}

TEST_F(GpuModel, CompareDevicesPassesForLeNet5AndTheLargerNet) {
  for (const char* file : {"lenet5.json", "cifar_cnn.json"}) {
    Sequential m = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/" + file);
    const CheckReport r = compare_devices(m, {});
    EXPECT_TRUE(r.passed()) << file << "\n" << r.table();
  }
}

}  // namespace
}  // namespace cnn
