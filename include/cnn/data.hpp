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
  // The first n images (all when n <= 0 or n >= size()); the tensors share storage with this
  // data set, as Tensor::slice does.
  Dataset head(int64_t n) const;
};

struct TrainTest {
  Dataset train, test;
};

struct ImageDataOptions {
  bool grayscale = false;    // one channel: 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 luma)
  bool standardize = false;  // per-channel (x - mean) / std, with the (loaded) TRAIN set's statistics
  int64_t train_limit = 0;   // keep only the first N training images (0: all)
  int64_t test_limit = 0;    // keep only the first N test images (0: all)
};

// Where a data set lives. Search order: `explicit_dir` when not empty (it must exist), then
// $CNN_DATA/<name>, ./data/<name>, then <checkout>/../shared/data/<name>, where <checkout> is
// the source tree the library was built from (CMake compiles its path in as CNN_SOURCE_DIR).
// The first existing directory wins. Throws cnn::Error listing every place looked at when
// none exists. Names: "cifar-10-batches-bin" (tools/get_cifar10.sh), "mnist" (tools/get_mnist.sh).
std::string find_data_dir(const std::string& name, const std::string& explicit_dir = "");

// CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin, batches.meta.txt). Every file
// is checked for size; an error names the file, the expected and the actual size. Missing
// files are named; class names come from batches.meta.txt (the standard ten without it).
// With limits only the records needed are read.
TrainTest load_cifar10(const std::string& dir, const ImageDataOptions& options = {});

// MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte; each plain or .gz), 28x28 grayscale, class names "0".."9". Magic
// numbers, counts and sizes are checked; errors name the file.
TrainTest load_mnist(const std::string& dir, const ImageDataOptions& options = {});

// A folder with one subfolder per class holding PNG/JPEG/BMP images (.png .jpg .jpeg .bmp,
// any case; other files and hidden folders are ignored); classes and files sorted by name.
// Each image is resized (nearest neighbour) to height x width with `channels` (1 or 3; grey
// from colour by BT.601 luma). Images over 16384 pixels a side are refused from their header,
// before decoding; an unreadable file raises cnn::Error naming it and stb_image's reason.
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
