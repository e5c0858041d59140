// gradcheck on whole models (CPU, double), the broken-layer hook, and the CPU/GPU comparison.
#include <gtest/gtest.h>

#include "cnn/cnn.hpp"
#include "host/model/runner_test_seam.hpp"

namespace cnn {
namespace {

Sequential lenet5(int channels) {
  Sequential m = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/" +
                                            (channels == 1 ? "lenet5_gray.json" : "lenet5.json"));
  return m;
}

TEST(Gradcheck, PassesForEveryLayerOfLeNet5) {
  Sequential m = lenet5(3);
  GradcheckOptions o;
  o.batch_size = 3;
  o.max_elements = 24;
  const CheckReport r = gradcheck(m, o);
  EXPECT_TRUE(r.passed()) << r.table();
  EXPECT_EQ(r.rows.size(), 8u + 5 * 2);  // 8 input grads + weight and bias of 2 conv and 3 dense layers
  EXPECT_EQ(r.checked_rows(), 8u + 5 * 2) << r.table();
}

TEST(Gradcheck, PassesForTheLargerCifarNet) {
  Sequential m = Sequential::from_json_file(std::string(CNN_SOURCE_DIR) + "/models/cifar_cnn.json");
  GradcheckOptions o;
  o.batch_size = 2;
  o.max_elements = 8;
  const CheckReport r = gradcheck(m, o);
  EXPECT_TRUE(r.passed()) << r.table();
  EXPECT_EQ(r.checked_rows(), 11u + 7 * 2) << r.table();  // 11 input grads + weight and bias of 5 conv and 2 dense layers
}

TEST(Gradcheck, PassesForEveryLossAndActivationCombination) {
  struct Case {
    std::string loss, act;
    bool from_logits;
  };
  for (const Case& c : std::vector<Case>{{"cce", "softmax", false}, {"scce", "softmax", false}, {"cce", "sigmoid", false},
                                         {"mse", "tanh", false}, {"bce", "sigmoid", false}, {"bce", "softmax", false},
                                         {"scce", "linear", true}, {"bce", "linear", true}}) {
    Sequential m({Conv2D(Conv2DOptions{.filters = 3, .kernel_size = {2, 3}, .strides = {2, 1}, .padding = "same",
                                       .activation = "leaky_relu", .alpha = 0.1f}),
                  AveragePooling2D(2, 1, "same"), Conv2D(2, 3, 1, "valid", "gelu"), Flatten(), Dense(5, "sigmoid"),
                  Dense(4, c.act)});
    CompileOptions o;
    o.loss = c.loss;
    o.from_logits = c.from_logits;
    o.label_smoothing = c.loss == "cce" || c.loss == "scce" ? 0.1f : 0.0f;
    o.input_shape = {2, 7, 6};
    m.compile(o);
    GradcheckOptions g;
    g.batch_size = 3;
    const CheckReport r = gradcheck(m, g);
    EXPECT_TRUE(r.passed()) << c.loss << " + " << c.act << "\n" << r.table();
    EXPECT_EQ(r.checked_rows(), 6u + 4 * 2) << r.table();  // 6 input grads + weight and bias of 2 conv and 2 dense layers
  }
}

TEST(Gradcheck, ABrokenLayerFailsAndIsNamed) {
  Sequential m = lenet5(1);
  const test_seam::ScopedGradientFault fault(5, 1.01);  // Dense(120): gradients 1% too large
  GradcheckOptions o;
  o.max_elements = 8;
  const CheckReport r = gradcheck(m, o);
  EXPECT_FALSE(r.passed());
  for (const auto& row : r.rows) {
    const bool broken = row.layer == 5 && row.quantity != "input grad";
    EXPECT_EQ(row.pass, !broken) << r.table();
    if (broken) {
      EXPECT_EQ(row.layer_type, "Dense");
    }
  }
  EXPECT_NE(r.table().find("FAIL"), std::string::npos);
}

TEST(CheckReport, PassesOnlyWhenSomethingWasCheckedAndEveryRowPassed) {
  CheckReport r;
  EXPECT_FALSE(r.passed()) << "an empty report checked nothing";
  EXPECT_EQ(r.checked_rows(), 0u);
  r.rows.push_back({.layer = 0, .layer_type = "Dense", .quantity = "weight grad", .shape = {3}, .checked = 0});
  EXPECT_FALSE(r.passed()) << "a row of 0 elements checked nothing";
  EXPECT_EQ(r.checked_rows(), 0u);
  r.rows.push_back({.layer = 0, .layer_type = "Dense", .quantity = "bias grad", .shape = {3}, .checked = 3});
  EXPECT_TRUE(r.passed()) << r.table();
  EXPECT_EQ(r.checked_rows(), 1u);
  r.rows.push_back({.layer = 1, .layer_type = "Dense", .quantity = "input grad", .shape = {2}, .checked = 2, .pass = false});
  EXPECT_FALSE(r.passed()) << r.table();
  EXPECT_EQ(r.checked_rows(), 2u);
}

TEST(CompareDevices, SaysClearlyWhenThereIsNoGpu) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present; the gpu-labelled suite compares devices";
  Sequential m = lenet5(1);
  try {
    compare_devices(m);
    FAIL() << "compare_devices ran without a GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no GPU"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cnn
