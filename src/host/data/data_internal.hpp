#pragma once
// Helpers shared by the data-set loaders (data.cpp, cifar10.cpp, mnist.cpp, image_folder.cpp).
// Internal: not part of the public API, but the tests include it to load CIFAR-format files
// with fewer than 10,000 records per file.
#include <cstdint>
#include <string>

#include "cnn/data.hpp"

namespace cnn::detail {

// ITU-R BT.601 luma of 8-bit RGB, scaled to [0, 1].
inline float luma01(uint8_t r, uint8_t g, uint8_t b) {
  return (0.299f * float(r) + 0.587f * float(g) + 0.114f * float(b)) * (1.0f / 255.0f);
}

// Checks a train/test limit (>= 0) and returns how many of `available` items to keep.
int64_t apply_limit(int64_t limit, int64_t available, const char* what);

// Standardises train and test with the train set's per-channel statistics when asked.
void finish_image_data(TrainTest& data, const ImageDataOptions& options);

// load_cifar10 with a configurable number of records per file (10,000 in the real data set).
TrainTest load_cifar10_files(const std::string& dir, const ImageDataOptions& options,
                             int64_t records_per_file);

// The largest image load_image/load_image_folder accept (checked from the file header, before
// any pixel is decoded): at most kMaxImageSide pixels on a side and kMaxImagePixels in all.
inline constexpr int64_t kMaxImageSide = 16384;
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

}  // namespace cnn::detail
