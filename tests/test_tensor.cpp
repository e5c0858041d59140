// Tensor: shapes, checked access, views, copies, devices, and its errors.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "cnn/error.hpp"
#include "cnn/tensor.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {

using test::error_of;

TEST(Tensor, ZeroFilledWithShapeAndCheckedAccess) {
  Tensor t({2, 3, 4, 5});
  EXPECT_EQ(t.numel(), 120);
  EXPECT_EQ(t.rank(), 4);
  EXPECT_EQ(t.dim(-1), 5);
  EXPECT_EQ(t.at({1, 2, 3, 4}), 0.0f);
  t.at({1, 2, 3, 4}) = 7;
  EXPECT_EQ(t.data()[119], 7.0f);
  EXPECT_NE(error_of([&] { t.at({2, 0, 0, 0}); }).find("index [2, 0, 0, 0] out of range for shape [2, 3, 4, 5]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { t.at({0, 0}); }).find("2 indices for a tensor of shape [2, 3, 4, 5]"), std::string::npos);
  EXPECT_NE(error_of([&] { t.dim(4); }).find("index 4 out of range"), std::string::npos);
}

TEST(Tensor, RejectsBadShapes) {
  EXPECT_NE(error_of([] { Tensor({2, 0}); }).find("shape [2, 0] has a dimension <= 0"), std::string::npos);
  EXPECT_NE(error_of([] { Tensor({-1}); }).find("dimension <= 0"), std::string::npos);
  EXPECT_NE(error_of([] { Tensor({1, 1, 1, 1, 1}); }).find("rank 1 to 4"), std::string::npos);
  EXPECT_NE(error_of([] { Tensor({1 << 30, 1 << 30, 4}); }).find("too large"), std::string::npos);
  EXPECT_NE(error_of([] { Tensor::from_vector({2, 2}, {1, 2, 3}); }).find("holds 4 elements but 3 values"),
            std::string::npos);
}

TEST(Tensor, CopiesShareStorageAndCloneDoesNot) {
  Tensor a = Tensor::from_vector({2, 2}, {1, 2, 3, 4});
  Tensor shared = a;
  Tensor deep = a.clone();
  a.at({0, 0}) = 9;
  EXPECT_EQ(shared.at({0, 0}), 9.0f);
  EXPECT_EQ(deep.at({0, 0}), 1.0f);
  Tensor moved = std::move(deep);
  EXPECT_EQ(moved.to_vector(), (std::vector<float>{1, 2, 3, 4}));
}

TEST(Tensor, ReshapeSliceAndGather) {
  Tensor a = Tensor::from_vector({3, 2}, {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(a.reshape({-1}).shape(), (Shape{6}));
  EXPECT_EQ(a.reshape({2, -1}).shape(), (Shape{2, 3}));
  EXPECT_NE(error_of([&] { a.reshape({4, 2}); }).find("cannot view [3, 2] (6 elements) as [4, 2]"), std::string::npos);
  Tensor rows = a.slice(1, 3);
  EXPECT_EQ(rows.to_vector(), (std::vector<float>{3, 4, 5, 6}));
  rows.at({0, 0}) = -3;
  EXPECT_EQ(a.at({1, 0}), -3.0f);  // a view
  EXPECT_NE(error_of([&] { a.slice(2, 5); }).find("rows [2, 5) out of range"), std::string::npos);
  EXPECT_EQ(a.gather_rows({2, 0}).to_vector(), (std::vector<float>{5, 6, 1, 2}));
}

TEST(Tensor, BorrowReadsTheCallersMemoryAndReleasesTheOwnerWithTheLastView) {
  std::vector<float> memory = {1, 2, 3, 4, 5, 6};
  bool released = false;
  {
    std::shared_ptr<void> owner(&released, [](void* flag) { *static_cast<bool*>(flag) = true; });
    Tensor t = Tensor::borrow(memory.data(), {2, 3}, std::move(owner));
    EXPECT_EQ(t.data(), memory.data());
    EXPECT_EQ(t.at({1, 2}), 6);
    Tensor rows = t.slice(1, 2);
    t = Tensor();
    EXPECT_FALSE(released);  // the slice still views the memory
    EXPECT_EQ(rows.to_vector(), (std::vector<float>{4, 5, 6}));
  }
  EXPECT_TRUE(released);
  EXPECT_EQ(memory[5], 6);  // never freed or written by the tensor
  EXPECT_CONTAINS(test::error_of([&] { Tensor::borrow(memory.data(), {6}, nullptr); }), "no owner");
  EXPECT_CONTAINS(test::error_of([&] { Tensor::borrow(memory.data(), {0, 3}, std::make_shared<int>(0)); }),
                  "dimension <= 0");
}

TEST(Tensor, CudaWithoutAGpuIsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present";
  const std::string msg = error_of([] { Tensor({2}, Device::CUDA); });
  EXPECT_NE(msg.find("CUDA"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("NO ERROR THROWN"), std::string::npos);
  EXPECT_NE(error_of([] { parse_device("tpu"); }).find("valid devices: cpu, cuda"), std::string::npos);
}

}  // namespace
}  // namespace cnn
