// The precision policy on the GPU (ops.hpp round_to_precision says where it rounds): the
// rounding kernel gives the CPU's bits for every kind of float, and whole models under tf32 and
// bf16 agree with the CPU under the same policy.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/check.hpp"
#include "cnn/cnn.hpp"
#include "cnn/rng.hpp"
#include "gpu_compare.hpp"
#include "test_data_util.hpp"

namespace cnn {
namespace {
using gputest::relative;

using gputest::DeviceBuffer;
using gputest::GpuTest;

std::vector<uint32_t> bits_of(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
  return b;
}

// Random bit patterns cover every exponent, subnormals, infinities and NaN payloads; the
// listed values add the ties and the overflow to infinity. Compared bit for bit.
TEST_F(GpuTest, RoundToPrecisionMatchesTheCpuBitForBit) {
  const size_t n = 1 << 20;
  Rng rng(17);
  std::vector<float> x(n);
  for (auto& v : x) {
    const auto u = uint32_t(rng.next_u64());
    std::memcpy(&v, &u, sizeof v);
  }
  const float special[] = {0.0f, -0.0f, 1.0f, 1.00390625f, 1.0f + 0x1p-9f, 1.0f + 3 * 0x1p-9f, 1.0f + 0x1p-12f,
                           1.0f + 3 * 0x1p-12f, std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(), 1e-40f};
  std::copy(std::begin(special), std::end(special), x.begin());
  DeviceBuffer in(n * sizeof(float)), out(n * sizeof(float));
  in.upload(x);
  for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) {
    std::vector<float> cpu(n);
    ops::cpu::round_to_precision(p, int64_t(n), x.data(), cpu.data());
    out.upload(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()));
    ops::cuda::round_to_precision(ctx(), p, int64_t(n), static_cast<const float*>(in.get()),
                                  static_cast<float*>(out.get()));
    cuda::synchronize(ctx());
    const auto gpu_bits = bits_of(out.download<float>()), cpu_bits = bits_of(cpu);
    size_t mismatches = 0, first = 0;
    for (size_t i = 0; i < n; ++i)
      if (gpu_bits[i] != cpu_bits[i] && mismatches++ == 0) first = i;
    EXPECT_EQ(mismatches, 0u) << to_string(p) << ": first at " << first << ", input bits " << std::hex
                              << bits_of({x[first]})[0] << " cpu " << cpu_bits[first] << " gpu " << gpu_bits[first];
  }
}

class GpuPrecision : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable GPU: " << cuda_unavailable_reason();
  }
};

// Three SGD steps of LeNet-5 under each policy (the second captured into a CUDA graph, the
// third replayed): losses and parameters within the 1e-4 of the fp32 GPU model tests. Both
// devices round the same operands; only a value the two compute a few fp32 ulps apart can round
// to a neighbouring bf16 value, a rare flip whose effect on the loss and on the parameters
// after a step (lr times a gradient difference) stays far below 1e-4.
TEST_F(GpuPrecision, SgdStepsUnderTf32AndBf16AgreeWithTheCpuUnderTheSamePolicy) {
  for (const char* precision : {"tf32", "bf16"}) {
    CompileOptions o;
    o.optimizer = "sgd";
    o.momentum = 0.9f;
    o.learning_rate = 0.01f;
    o.loss = "scce";
    o.input_shape = {3, 32, 32};
    o.precision = precision;
    Sequential cpu = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/lenet5.json");
    cpu.compile(o);
    Sequential gpu = Sequential::from_json(cpu.to_json());
    EXPECT_EQ(gpu.precision(), parse_precision(precision));
    gpu.set_weights(cpu.weights());
    gpu.to(Device::CUDA);
    const auto data = test::make_quadrant_data(32 * 3, 3, 32, 32, 5);
    for (int step = 0; step < 3; ++step) {
      const Tensor x = data.x.slice(step * 32, step * 32 + 32), y = data.y.slice(step * 32, step * 32 + 32);
      const double a = cpu.train_on_batch(x, y), b = gpu.train_on_batch(x, y);
      ASSERT_NEAR(b, a, 1e-4 * std::abs(a)) << precision << " step " << step;
    }
    EXPECT_LE(relative(gpu.parameters().to_vector(), cpu.parameters().to_vector()), 1e-4) << precision;
  }
}

// `cnn check --precision P` for every model file: both copies keep the policy, and the
// tolerances are compare_devices' for it (4 units of the policy's rounding).
TEST_F(GpuPrecision, CompareDevicesPassesForEveryModelUnderEachPolicy) {
  for (const char* file : {"lenet5.json", "lenet5_gray.json", "cifar_cnn.json", "airbench94.json"}) {
    for (const char* precision : {"tf32", "bf16"}) {
      Sequential m = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/" + file);
      m.set_precision(precision);
      const CheckReport r = compare_devices(m, {});
      EXPECT_TRUE(r.passed()) << file << " " << precision << "\n" << r.table();
      std::printf("[ precision ] %s %s: worst row relative error %.3e\n", file, precision, [&] {
        double worst = 0;
        for (const auto& row : r.rows) worst = std::max(worst, row.relative_error);
        return worst;
      }());
    }
  }
}

}  // namespace
}  // namespace cnn
