#pragma once
// Tensor: float32 data with a shape (NCHW for images, rank 1 to 4) on one device.
// Copies share storage, as in PyTorch; clone() makes an independent copy. Storage is
// freed when the last tensor that refers to it goes away.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "cnn/types.hpp"

namespace cnn {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);
// Throws cnn::Error naming `what` when a dimension is zero or negative or the rank is not 1-4.
void check_shape(const Shape& shape, const std::string& what);

class Tensor {
 public:
  Tensor() = default;  // empty: rank 0, no storage
  explicit Tensor(Shape shape, Device device = Device::CPU);  // zero-filled

  static Tensor zeros(Shape shape, Device device = Device::CPU);
  static Tensor full(Shape shape, float value, Device device = Device::CPU);
  static Tensor from_vector(Shape shape, const std::vector<float>& values);  // CPU
  // A CPU tensor over host memory the caller owns, without a copy (how numpy arrays enter from
  // Python): `owner` is kept alive while any tensor shares the storage, and released then.
  // fit, evaluate and predict only read the tensors they are given.
  static Tensor borrow(float* data, Shape shape, std::shared_ptr<void> owner);

  Tensor clone() const;
  // A copy on `device` (this tensor itself, sharing storage, if it is already there).
  Tensor to(Device device) const;
  std::vector<float> to_vector() const;  // host copy of the elements
  void copy_from(const Tensor& src);     // same element count; any pair of devices
  void fill(float value);

  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return numel_; }
  bool empty() const { return numel_ == 0; }
  Device device() const { return device_; }

  float* data();
  const float* data() const;

  // Checked element access, CPU tensors only: t.at({n, c, h, w}).
  float& at(std::initializer_list<int64_t> index);
  float at(std::initializer_list<int64_t> index) const;

  // Same storage, new shape with the same element count; one dimension may be -1.
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) along dimension 0, sharing storage.
  Tensor slice(int64_t begin, int64_t end) const;
  // New CPU tensor holding the given rows of dimension 0, in order.
  Tensor gather_rows(const std::vector<int64_t>& rows) const;

 private:
  struct Storage;
  int64_t flat_index(std::initializer_list<int64_t> index) const;

  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  int64_t numel_ = 0;
  Shape shape_;
  Device device_ = Device::CPU;
};

}  // namespace cnn
