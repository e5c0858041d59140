#pragma once
// Data sets: CIFAR-10 and MNIST in their official binary layouts, and folders of images
// (one subfolder per class). Images come out as float NCHW tensors scaled to [0, 1].
#include <cstdint>
#include <string>
#include <vector>

#include "cnn/tensor.hpp"

namespace cnn {

struct Dataset {
  Tensor x;  // [N, C, H, W], float
  Tensor y;  // [N], class index per image (stored as float, exact integers)
  std::vector<std::string> class_names;

  int64_t size() const { return x.empty() ? 0 : x.dim(0); }
  int num_classes() const { return static_cast<int>(class_names.size()); }
  // The first n images (all when n <= 0 or n >= size()).
  Dataset head(int64_t n) const;
};

struct TrainTest {
  Dataset train, test;
};

struct ImageDataOptions {
  bool grayscale = false;    // average RGB into one channel (ITU-R BT.601 luma weights)
  bool standardize = false;  // per-channel (x - mean) / std, with the TRAIN set's statistics
  int64_t train_limit = 0;   // keep only the first N training images (0: all)
  int64_t test_limit = 0;    // keep only the first N test images (0: all)
};

// Where a data set lives. Search order: `explicit_dir` when not empty (it must exist), then
// $CNN_DATA/<name>, ./data/<name>, then <checkout>/../shared/data/<name>. Throws cnn::Error
// listing every place looked at when none holds the data.
std::string find_data_dir(const std::string& name, const std::string& explicit_dir = "");

// CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin, batches.meta.txt). Every file
// is checked for size; an error names the file, the expected and the actual size.
TrainTest load_cifar10(const std::string& dir, const ImageDataOptions& options = {});

// MNIST IDX files (train-images-idx3-ubyte, ... plain or .gz), 28x28 grayscale.
TrainTest load_mnist(const std::string& dir, const ImageDataOptions& options = {});

// A folder with one subfolder per class holding PNG/JPEG/BMP images; classes sorted by name.
// Each image is resized (nearest neighbour) to height x width with `channels` (1 or 3).
Dataset load_image_folder(const std::string& dir, int channels, int height, int width);

// One image file as a [1, channels, height, width] tensor in [0, 1], resized when
// height/width > 0 (else its own size).
Tensor load_image(const std::string& path, int channels, int height = 0, int width = 0);

// [N] class indices -> [N, num_classes] one-hot rows. Errors name an out-of-range label.
Tensor to_categorical(const Tensor& labels, int num_classes);

// Per-channel mean and standard deviation of [N, C, H, W] images; and applying them.
struct ChannelStats {
  std::vector<float> mean, stddev;
};
ChannelStats channel_stats(const Tensor& images);
void standardize(Tensor& images, const ChannelStats& stats);

}  // namespace cnn
