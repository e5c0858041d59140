// Whole models on the GPU against the same models on the CPU: training steps (through the
// recorded CUDA graph after the first two), fit with uploads from pinned memory, Adam,
// dropout, evaluation with TTA, and files moving between devices.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "gpu_compare.hpp"
#include "test_data_util.hpp"

namespace cnn {
namespace {
using gputest::relative;

class GpuModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  }
};

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
  CompileOptions sgd;  // the seed's optimizer, with momentum (lenet5.json itself trains with Adam)
  sgd.optimizer = "sgd";
  sgd.momentum = 0.9f;
  sgd.learning_rate = 0.01f;
  sgd.input_shape = {3, 32, 32};
  auto [cpu, gpu] = twins("lenet5.json", &sgd);
  const auto data = test::make_quadrant_data(32 * 20, 3, 32, 32, 5);
  for (int step = 0; step < 20; ++step) {
    const Tensor x = data.x.slice(step * 32, step * 32 + 32), y = data.y.slice(step * 32, step * 32 + 32);
    const Tensor onehot = to_categorical(y, 10);
    const double a = cpu.train_on_batch(x, onehot), b = gpu.train_on_batch(x, onehot);
    ASSERT_NEAR(b, a, 1e-4 * std::abs(a)) << "step " << step;
  }
  EXPECT_LE(relative(gpu.parameters().to_vector(), cpu.parameters().to_vector()), 1e-4);
}

// cuda_kernel_launches (what `cnn bench` reports per step): an eager step goes through the
// launch sites, a replay of the step's CUDA graph (from the third step at a batch size) does
// not, so a replayed step counts fewer launches than the eager one (the loss read may add one).
TEST_F(GpuModel, KernelLaunchesAreCountedForEagerStepsNotForGraphReplays) {
  CompileOptions sgd;
  sgd.optimizer = "sgd";
  sgd.learning_rate = 0.01f;
  sgd.input_shape = {3, 32, 32};
  auto [cpu, gpu] = twins("lenet5.json", &sgd);
  const auto data = test::make_quadrant_data(32, 3, 32, 32, 5);
  const Tensor onehot = to_categorical(data.y, 10);
  std::vector<int64_t> launches;
  for (int step = 0; step < 4; ++step) {
    const int64_t before = cuda_kernel_launches();
    gpu.train_on_batch(data.x, onehot);
    launches.push_back(cuda_kernel_launches() - before);
  }
  std::printf("launches per step: eager %lld, captured %lld, replayed %lld and %lld\n", (long long)launches[0],
              (long long)launches[1], (long long)launches[2], (long long)launches[3]);
  EXPECT_LT(launches[2], launches[0]);
  EXPECT_EQ(launches[3], launches[2]);
  // The count on paper (docs/PERFORMANCE.md, "Counting kernel launches"), each GEMM one:
  // forward 4 conv/pool (2 with the fast kernels, each pool in its conv's kernel) + the 3 Dense
  // layers as one chain, the fused loss (with the last Dense's bias gradient); backward the last
  // Dense 2, the two others 3 each (activation and bias gradient in one kernel), 2 pooling
  // passes (with the conv's ReLU gradient), conv2's input gradient, the two weight gradients
  // (3 kernels each by default, 2 with the fast kernels); SGD 1. Flatten launches nothing.
  const char* kernels = std::getenv("CNN_CUDA_CONV_KERNELS");
  const std::string mode = kernels ? kernels : "default";
  if (mode == "default" || mode == "fast") {
    EXPECT_EQ(launches[0], mode == "fast" ? 20 : 24) << mode;
  }
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
    // Per layer its output, input grad and one row per parameter (weight and bias of 5 conv and dense
    // layers in LeNet-5, of 7 in the larger net), then the loss and the updated parameters.
    const size_t layers = m.size(), with_params = std::string(file) == "lenet5.json" ? 5 : 7;
    EXPECT_EQ(r.checked_rows(), 2 * layers + 2 * with_params + 2) << file << "\n" << r.table();
  }
}

// SGD with a constant learning rate takes the CUDA-graph path (captured on the second step,
// replayed after): every op of the airbench94 layers must be capturable and replay correctly.
TEST_F(GpuModel, GraphReplayedStepsWithBatchNormGeluAndScaledDenseAgreeWithTheCpu) {
  CompileOptions o;
  o.optimizer = "sgd";
  o.momentum = 0.85f;
  o.nesterov = true;
  o.weight_decay = 1e-3f;
  o.label_smoothing = 0.2f;
  o.bias_lr_scale = 4.0f;
  o.from_logits = true;
  o.loss = "scce";
  o.learning_rate = 0.05f;
  o.input_shape = {3, 12, 12};
  auto build = [&] {
    Sequential m({Conv2D(8, 2, 1, "valid", "gelu"),
                  Conv2D({.filters = 16, .kernel_size = 3, .padding = "same", .use_bias = false}), MaxPooling2D(2),
                  BatchNormalization({.momentum = 0.4f, .epsilon = 1e-12f, .scale = false}), ActivationLayer("gelu"),
                  MaxPooling2D(3), Flatten(), Dense({.units = 4, .use_bias = false, .scale = 1.0f / 9})});
    m.compile(o);
    return m;
  };
  Sequential cpu = build();
  Sequential gpu = Sequential::from_json(cpu.to_json());
  gpu.compile(o);
  gpu.set_weights(cpu.weights());
  gpu.to(Device::CUDA);
  const auto data = test::make_quadrant_data(16 * 6, 3, 12, 12, 4);
  for (int step = 0; step < 6; ++step) {
    const Tensor x = data.x.slice(step * 16, step * 16 + 16), y = data.y.slice(step * 16, step * 16 + 16);
    const double a = cpu.train_on_batch(x, y), b = gpu.train_on_batch(x, y);
    ASSERT_NEAR(b, a, 1e-4 * std::abs(a)) << "step " << step;
  }
  EXPECT_LE(relative(gpu.parameters().to_vector(), cpu.parameters().to_vector()), 1e-4);
}

// Adam and SGD under a learning-rate schedule replay from CUDA graphs: their per-step scalars
// (the scheduled learning rate, Adam's bias corrections) are uploaded before each step, so a
// replay must give what eager steps give. The eager twin profiles (no graphs); the graphed one
// must launch fewer kernels (replays are not counted) and end within 1e-6 of it (cuBLAS may
// pick another algorithm inside a capture), where a replay baking in the captured step's
// scalars would be off by the whole learning-rate and bias-correction change.
TEST_F(GpuModel, ScheduledAdamAndSgdStepsReplayFromGraphsAsEagerStepsRun) {
  for (const char* optimizer : {"adam", "sgd"}) {
    auto make = [&] {
      Sequential m({Conv2D(4, 3, 1, "same", "relu"), MaxPooling2D(2), Flatten(), Dense(4, "softmax")});
      m.compile({.optimizer = optimizer, .loss = "scce", .learning_rate = 0.01f, .input_shape = {1, 8, 8},
                 .momentum = 0.9f});
      return m;
    };
    Sequential cpu = make(), eager = make(), graphed = make();
    eager.set_weights(cpu.weights());
    graphed.set_weights(cpu.weights());
    eager.to(Device::CUDA);
    graphed.to(Device::CUDA);
    eager.set_profiling(true);
    const auto data = test::make_quadrant_data(96, 1, 8, 8, 12);
    FitOptions f;
    f.epochs = 3;  // 18 steps of 16
    f.batch_size = 16;
    f.verbose = 0;
    f.lr_schedule.kind = std::string(optimizer) == "adam" ? "cosine" : "onecycle";
    cpu.fit(data.x, data.y, f);
    int64_t before = cuda_kernel_launches();
    eager.fit(data.x, data.y, f);
    const int64_t eager_launches = cuda_kernel_launches() - before;
    before = cuda_kernel_launches();
    graphed.fit(data.x, data.y, f);
    const int64_t graphed_launches = cuda_kernel_launches() - before;
    EXPECT_LT(graphed_launches, eager_launches / 2) << optimizer << ": the steps did not replay from graphs";
    const std::vector<float> g = graphed.parameters().to_vector();
    EXPECT_LE(relative(g, eager.parameters().to_vector()), 1e-6) << optimizer;
    EXPECT_LE(relative(g, cpu.parameters().to_vector()), 1e-4) << optimizer;
  }
}

// Exact resume on the GPU: 2 epochs, a checkpoint, a fresh model resuming for 2 more, against
// 4 straight epochs. Bit-identity is promised on the CPU only (cuBLAS may choose its algorithm
// per call), so on the GPU the weights must agree to 1e-6 relative.
TEST_F(GpuModel, TwoPlusResumePlusTwoEpochsAgreesWithFourStraight) {
  for (const char* optimizer : {"sgd", "adam"}) {
    auto make = [&] {
      Sequential m({Conv2D(4, 3, 1, "same", "relu"), MaxPooling2D(2), Flatten(), Dense(4, "softmax")});
      m.compile({.optimizer = optimizer, .loss = "scce", .learning_rate = 0.01f, .input_shape = {1, 8, 8},
                 .momentum = 0.9f});
      m.to(Device::CUDA);
      return m;
    };
    const auto data = test::make_quadrant_data(96, 1, 8, 8, 11);
    FitOptions f;
    f.batch_size = 16;
    f.verbose = 0;
    f.epochs = 4;
    Sequential straight = make();
    const History h4 = straight.fit(data.x, data.y, f);
    const std::string ckpt = testing::TempDir() + "/gpu_resume_" + optimizer + ".ckpt";
    Sequential first = make();
    f.epochs = 2;
    f.checkpoint_path = ckpt;
    first.fit(data.x, data.y, f);
    Sequential second = make();
    f.epochs = 4;
    f.resume_from = ckpt;
    const History resumed = second.fit(data.x, data.y, f);
    EXPECT_LE(relative(second.parameters().to_vector(), straight.parameters().to_vector()), 1e-6) << optimizer;
    ASSERT_EQ(resumed.epochs(), 4);
    EXPECT_NEAR(resumed.loss.back(), h4.loss.back(), 1e-6 * h4.loss.back()) << optimizer;
  }
}

// A batch whose activations cannot fit (1 GiB per sample, 300 samples) must fail with the
// allocator's numbers and a batch size to try, and leave the model usable at a small batch.
TEST_F(GpuModel, OutOfMemoryAtFitSaysWhichBatchSizeToTry) {
  Sequential m({Conv2D(4096, 3, 1, "same", "relu"), GlobalAveragePooling2D(), Dense(2, "softmax")});
  m.compile({.optimizer = "sgd", .loss = "scce", .learning_rate = 0.01f, .input_shape = {1, 256, 256}});
  m.to(Device::CUDA);
  const int n = 300;
  Tensor x({n, 1, 256, 256});
  Tensor y({n});
  FitOptions f;
  f.epochs = 1;
  f.batch_size = n;
  f.verbose = 0;
  try {
    m.fit(x, y, f);
    FAIL() << "fit of 300 GiB of activations succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("batch size 300 need"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Try a batch size of "), std::string::npos) << msg;
  }
  f.batch_size = 2;
  Tensor x2 = x.slice(0, 4), y2 = y.slice(0, 4);
  EXPECT_NO_THROW(m.fit(x2, y2, f));
}

}  // namespace
}  // namespace cnn
