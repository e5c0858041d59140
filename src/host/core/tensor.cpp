#include "cnn/tensor.hpp"

#include <algorithm>
#include <cstring>

#include "cnn/error.hpp"
#include "kernels/device_memory.hpp"

namespace cnn {

std::string shape_str(const Shape& shape) { return shape_str<int64_t>(shape); }

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return shape.empty() ? 0 : n;
}

void check_shape(const Shape& shape, const std::string& what) {
  CNN_CHECK(!shape.empty() && shape.size() <= 4, what, ": shape ", shape_str(shape),
            " must have rank 1 to 4");
  for (int64_t d : shape)
    CNN_CHECK(d > 0, what, ": shape ", shape_str(shape), " has a dimension <= 0");
  // Refuse sizes whose byte count would overflow or that no machine holds (> 2^40 floats).
  int64_t n = 1;
  for (int64_t d : shape) {
    CNN_CHECK(d <= (int64_t{1} << 40) / n, what, ": shape ", shape_str(shape),
              " is too large (more than 2^40 elements)");
    n *= d;
  }
}

struct Tensor::Storage {
  float* ptr = nullptr;
  Device device = Device::CPU;
  std::shared_ptr<void> owner;  // set for borrowed memory, which is the owner's to free
  Storage(int64_t count, Device d) : device(d) {
    const size_t bytes = static_cast<size_t>(count) * sizeof(float);
    ptr = static_cast<float*>(memory::allocate(bytes, d));
    memory::set_zero(ptr, bytes, d);
  }
  Storage(float* borrowed, std::shared_ptr<void> o) : ptr(borrowed), owner(std::move(o)) {}
  ~Storage() {
    if (!owner) memory::release(ptr, device);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

Tensor::Tensor(Shape shape, Device device) : shape_(std::move(shape)), device_(device) {
  check_shape(shape_, "Tensor");
  numel_ = shape_numel(shape_);
  storage_ = std::make_shared<Storage>(numel_, device_);
}

Tensor Tensor::borrow(float* data, Shape shape, std::shared_ptr<void> owner) {
  Tensor t;
  check_shape(shape, "Tensor::borrow");
  t.shape_ = std::move(shape);
  t.numel_ = shape_numel(t.shape_);
  CNN_CHECK(data != nullptr || t.numel_ == 0, "Tensor::borrow: null data for ", t.numel_, " elements");
  CNN_CHECK(owner != nullptr, "Tensor::borrow: no owner to keep the memory alive");
  t.storage_ = std::make_shared<Storage>(data, std::move(owner));
  return t;
}

Tensor Tensor::zeros(Shape shape, Device device) { return Tensor(std::move(shape), device); }

Tensor Tensor::full(Shape shape, float value, Device device) {
  Tensor t(std::move(shape), device);
  t.fill(value);
  return t;
}

Tensor Tensor::from_vector(Shape shape, const std::vector<float>& values) {
  Tensor t(std::move(shape));
  CNN_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "Tensor::from_vector: shape ",
            shape_str(t.shape()), " holds ", t.numel(), " elements but ", values.size(),
            " values were given");
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

Tensor Tensor::clone() const {
  if (empty()) return {};
  Tensor t(shape_, device_);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == device_ || empty()) return *this;
  Tensor t(shape_, device);
  t.copy_from(*this);
  return t;
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> out(static_cast<size_t>(numel_));
  if (numel_)
    memory::copy(out.data(), Device::CPU, data(), device_, out.size() * sizeof(float));
  return out;
}

void Tensor::copy_from(const Tensor& src) {
  CNN_CHECK(src.numel() == numel_, "Tensor::copy_from: source ", shape_str(src.shape()),
            " and destination ", shape_str(shape_), " differ in element count");
  if (numel_)
    memory::copy(data(), device_, src.data(), src.device(), static_cast<size_t>(numel_) * sizeof(float));
}

void Tensor::fill(float value) {
  if (empty()) return;
  if (device_ == Device::CPU) {
    std::fill(data(), data() + numel_, value);
  } else {
    std::vector<float> host(static_cast<size_t>(numel_), value);
    memory::copy(data(), device_, host.data(), Device::CPU, host.size() * sizeof(float));
  }
}

int64_t Tensor::dim(int i) const {
  const int r = rank();
  CNN_CHECK(i >= -r && i < r, "Tensor::dim: index ", i, " out of range for shape ", shape_str(shape_));
  return shape_[static_cast<size_t>(i < 0 ? i + r : i)];
}

float* Tensor::data() { return storage_ ? storage_->ptr + offset_ : nullptr; }
const float* Tensor::data() const { return storage_ ? storage_->ptr + offset_ : nullptr; }

int64_t Tensor::flat_index(std::initializer_list<int64_t> index) const {
  CNN_CHECK(device_ == Device::CPU, "Tensor::at: element access needs a CPU tensor (this one is on ",
            to_string(device_), "); use .to(cnn::Device::CPU)");
  CNN_CHECK(static_cast<int>(index.size()) == rank(), "Tensor::at: ", index.size(),
            " indices for a tensor of shape ", shape_str(shape_));
  int64_t flat = 0;
  size_t axis = 0;
  for (int64_t i : index) {
    CNN_CHECK(i >= 0 && i < shape_[axis], "Tensor::at: index ", shape_str(std::vector<int64_t>(index)),
              " out of range for shape ", shape_str(shape_));
    flat = flat * shape_[axis] + i;
    ++axis;
  }
  return flat;
}

float& Tensor::at(std::initializer_list<int64_t> index) { return data()[flat_index(index)]; }
float Tensor::at(std::initializer_list<int64_t> index) const { return data()[flat_index(index)]; }

Tensor Tensor::reshape(Shape shape) const {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      CNN_CHECK(infer < 0, "Tensor::reshape: more than one -1 in ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0 && known > 0 && numel_ % known == 0) shape[static_cast<size_t>(infer)] = numel_ / known;
  check_shape(shape, "Tensor::reshape");
  CNN_CHECK(shape_numel(shape) == numel_, "Tensor::reshape: cannot view ", shape_str(shape_), " (",
            numel_, " elements) as ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  CNN_CHECK(rank() >= 1 && begin >= 0 && begin < end && end <= shape_[0], "Tensor::slice: rows [",
            begin, ", ", end, ") out of range for shape ", shape_str(shape_));
  Tensor t = *this;
  const int64_t row = numel_ / shape_[0];
  t.offset_ += begin * row;
  t.shape_[0] = end - begin;
  t.numel_ = (end - begin) * row;
  return t;
}

Tensor Tensor::gather_rows(const std::vector<int64_t>& rows) const {
  CNN_CHECK(device_ == Device::CPU, "Tensor::gather_rows: needs a CPU tensor");
  CNN_CHECK(rank() >= 1 && !rows.empty(), "Tensor::gather_rows: no rows requested from ", shape_str(shape_));
  Shape out_shape = shape_;
  out_shape[0] = static_cast<int64_t>(rows.size());
  Tensor out(out_shape);
  const int64_t row = numel_ / shape_[0];
  for (size_t i = 0; i < rows.size(); ++i) {
    CNN_CHECK(rows[i] >= 0 && rows[i] < shape_[0], "Tensor::gather_rows: row ", rows[i],
              " out of range for shape ", shape_str(shape_));
    std::memcpy(out.data() + static_cast<int64_t>(i) * row, data() + rows[i] * row, row * sizeof(float));
  }
  return out;
}

}  // namespace cnn
