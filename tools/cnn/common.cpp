#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cli.hpp"

namespace cnn::cli {
namespace fs = std::filesystem;

CLI::Validator finite_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || *end != '\0') return "";  // not a number: the type conversion reports it
        return std::isfinite(v) ? std::string() : "must be a finite number, got " + text;
      },
      "");
}

bool is_saved_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char first[9] = {};
  in.read(first, 9);
  // JSON starts with '{' (after optional spaces); safetensors with an 8-byte length then '{'.
  return in.gcount() == 9 && first[8] == '{';
}

Sequential load_model(const std::string& path) {
  if (!fs::exists(path)) fail("model file '", path, "' does not exist");
  return is_saved_model(path) ? Sequential::load(path) : Sequential::from_json_file(path);
}

void add_precision_flag(CLI::App* sub, std::optional<std::string>& precision) {
  sub->add_option("--precision", precision,
                  "Precision of the conv/dense products: fp32, tf32 or bf16 (default: the model's compile.precision, "
                  "else fp32)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
}

void apply_precision(Sequential& model, const std::optional<std::string>& precision) {
  if (precision) model.set_precision(*precision);
}

TrainTest load_data_for(const Shape& input_shape, const std::string& dir_arg, int64_t train_limit, int64_t test_limit) {
  CNN_CHECK(input_shape.size() == 3, "the model's input shape ", shape_str(input_shape),
            " is not an image shape [channels, height, width]");
  const int channels = int(input_shape[0]), h = int(input_shape[1]), w = int(input_shape[2]);
  CNN_CHECK(channels == 1 || channels == 3, "the model takes ", channels, " input channels; data sets have 1 or 3");
  ImageDataOptions opt;
  opt.train_limit = train_limit;
  opt.test_limit = test_limit;
  opt.grayscale = channels == 1;
  TrainTest data;
  const std::string dir = find_data_dir("cifar-10-batches-bin", dir_arg);  // an explicit dir must exist
  auto has = [&](const char* name) { return fs::exists(fs::path(dir) / name); };
  if (has("data_batch_1.bin") || has("test_batch.bin")) {
    data = load_cifar10(dir, opt);
  } else if (has("train-images-idx3-ubyte") || has("train-images-idx3-ubyte.gz")) {
    CNN_CHECK(channels == 1, "MNIST images have 1 channel but the model takes ", channels);
    data = load_mnist(dir, opt);
  } else if (has("train") && fs::is_directory(fs::path(dir) / "train")) {
    data.train = load_image_folder((fs::path(dir) / "train").string(), channels, h, w).head(train_limit);
    if (fs::is_directory(fs::path(dir) / "test"))
      data.test = load_image_folder((fs::path(dir) / "test").string(), channels, h, w).head(test_limit);
  } else {
    fail("'", dir, "' holds no data set this tool knows: CIFAR-10 binary (data_batch_1.bin ...), MNIST IDX "
         "(train-images-idx3-ubyte[.gz] ...), or an image folder with train/<class>/ (and test/<class>/)");
  }
  const Shape got = data.train.size() ? Shape(data.train.x.shape().begin() + 1, data.train.x.shape().end())
                                      : Shape(data.test.x.shape().begin() + 1, data.test.x.shape().end());
  CNN_CHECK(got == input_shape, "the model takes inputs ", shape_str(input_shape), " but the images in '", dir,
            "' are ", shape_str(got));
  return data;
}

}  // namespace cnn::cli
