// Writes the seed corpora of the fuzzers into <out>/<target>/ (tests/fuzz/corpus is its output,
// committed; rerun it after a format change):  fuzz_make_corpus tests/fuzz/corpus <models dir>
// Every seed is a small valid input, laid out as its harness expects.
#include <stb/stb_image_write.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "seed_models.hpp"

namespace fs = std::filesystem;
using namespace cnn;
using Bytes = std::string;

namespace {

Bytes read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write(const fs::path& p, const Bytes& b) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary).write(b.data(), std::streamsize(b.size()));
  std::cout << p.string() << " (" << b.size() << " bytes)\n";
}

Bytes idx(uint32_t magic, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes b;
  for (uint32_t v : std::vector<uint32_t>{magic}) b += {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  for (uint32_t v : dims) b += {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  return b + payload;
}

Bytes gzip(const Bytes& raw) {
  const fs::path tmp = fs::temp_directory_path() / "cnn_make_corpus.gz";
  gzFile f = gzopen(tmp.c_str(), "wb9");
  gzwrite(f, raw.data(), unsigned(raw.size()));
  gzclose(f);
  Bytes b = read_all(tmp);
  fs::remove(tmp);
  return b;
}

void stb_to_string(void* context, void* data, int size) {
  static_cast<Bytes*>(context)->append(static_cast<const char*>(data), size_t(size));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: fuzz_make_corpus <corpus dir> <models dir>\n";
    return 2;
  }
  const fs::path out = argv[1], models = argv[2];
  const fs::path tmp = fs::temp_directory_path() / "cnn_make_corpus.safetensors";

  // Model files and checkpoints (model seeds without the .safetensors extension, which
  // .gitignore ignores).
  {
    Sequential sgd = fuzz::seed_conv_model("sgd"), adam = fuzz::seed_conv_model("adam");
    Sequential dense = fuzz::seed_dense_model();
    dense.class_names = {"no", "yes"};
    sgd.save(tmp.string());
    write(out / "model_file" / "conv_model", read_all(tmp));
    dense.save(tmp.string());
    write(out / "model_file" / "dense_model", read_all(tmp));
    TrainingProgress p;
    p.epoch = 2;
    p.history.loss = {1.5, 0.75};
    p.history.accuracy = {0.5, 0.625};
    p.history.seconds = {0.125, 0.25};
    p.history.learning_rate = {0.01, 0.01};
    sgd.save_checkpoint(tmp.string(), p);
    write(out / "model_file" / "conv_sgd_momentum.ckpt", read_all(tmp));
    adam.save_checkpoint(tmp.string(), p);
    write(out / "model_file" / "conv_adam.ckpt", read_all(tmp));
    dense.save_checkpoint(tmp.string(), {1, {}});
    write(out / "model_file" / "dense.ckpt", read_all(tmp));
    fs::remove(tmp);
  }

  // Model JSON: the shipped descriptions and a few small ones.
  for (const auto& e : fs::directory_iterator(models))
    if (e.path().extension() == ".json") write(out / "model_json" / e.path().filename(), read_all(e.path()));
  write(out / "model_json" / "pooling.json",
        R"({"input_shape": [2, 9, 7], "layers": [{"type": "AveragePooling2D", "pool_size": [2, 3], "strides": [1, 2], "padding": "same"},)"
        R"( {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Activation", "activation": "leaky_relu", "alpha": 0.1},)"
        R"( {"type": "Flatten"}, {"type": "Dense", "units": 1, "activation": "linear", "use_bias": false}],)"
        R"( "compile": {"loss": "bce", "from_logits": true, "optimizer": "sgd", "momentum": 0.5, "nesterov": true}})");
  write(out / "model_json" / "uncompiled.json",
        R"({"name": "n", "layers": [{"type": "Conv2D", "filters": 3, "kernel_size": [1, 2], "strides": 2, "trainable": false,)"
        R"( "name": "c", "kernel_initializer": "he_uniform"}, {"type": "Flatten"}, {"type": "Dense", "units": 2}],)"
        R"( "class_names": ["a", "b"]})");
  write(out / "model_json" / "fuzz_seed_model.json", fuzz::seed_conv_model("adam").to_json().dump());
  write(out / "model_json" / "normalised.json",
        R"({"input_shape": [2, 6, 6], "layers": [{"type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "same"},)"
        R"( {"type": "BatchNormalization", "momentum": 0.9, "epsilon": 0.001}, {"type": "Activation", "activation": "relu"},)"
        R"( {"type": "Dropout", "rate": 0.25}, {"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 2,)"
        R"( "activation": "softmax", "scale": 0.5}], "compile": {"optimizer": "adam", "loss": "scce"}})");
  write(out / "model_json" / "global_max.json",
        R"({"input_shape": [1, 5, 4], "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": [2, 1]},)"
        R"( {"type": "GlobalMaxPooling2D"}, {"type": "Dense", "units": 3, "activation": "softmax"}]})");

  // CIFAR-10: flags, limits, meta length, meta, records (label byte + 3,072 pixel bytes).
  {
    Bytes meta;
    for (int i = 0; i < 10; ++i) meta += "c" + std::to_string(i) + "\n";
    auto records = [](int n) {
      Bytes b;
      for (int r = 0; r < n; ++r) {
        b += char(r % 10);
        for (int k = 0; k < 3072; ++k) b += char((k * 7 + r * 13) % 256);
      }
      return b;
    };
    write(out / "cifar10" / "one_record", Bytes{char(0), char(0), char(0)} + records(1));
    write(out / "cifar10" / "two_records_meta_gray", Bytes{char(4 | 8 | 16), char(1 | (1 << 3)), char(meta.size())} + meta + records(2));
    write(out / "cifar10" / "three_records_two_files", Bytes{char(1), char(2), char(0)} + records(3));
  }

  // MNIST: flags, split (little-endian), images file, labels file.
  {
    Bytes pixels;
    for (int i = 0; i < 2 * 3 * 3; ++i) pixels += char(i * 14);
    const Bytes images = idx(0x803, {2, 3, 3}, pixels), labels = idx(0x801, {2}, Bytes{char(7), char(1)});
    auto seed = [&](uint8_t flags) {
      return Bytes{char(flags), char(images.size() & 0xff), char(images.size() >> 8)} + images + labels;
    };
    write(out / "mnist" / "plain", seed(0));
    write(out / "mnist" / "gz_by_harness", seed(1 | (1 << 2)));
    write(out / "mnist" / "plain_standardize_limit", seed(32 | (1 << 6)));
    const Bytes gz_images = gzip(images), gz_labels = gzip(labels);
    write(out / "mnist" / "raw_gz",
          Bytes{char(2 | (2 << 2) | 16), char(gz_images.size() & 0xff), char(gz_images.size() >> 8)} + gz_images +
              gz_labels);
  }

  // Images: flags (extension, channels), height, width, file bytes.
  {
    std::vector<unsigned char> rgb, grey, rgba;
    for (int i = 0; i < 4 * 3; ++i) rgb.push_back((unsigned char)(i * 20));
    for (int i = 0; i < 4; ++i) grey.push_back((unsigned char)(i * 60));
    for (int i = 0; i < 3 * 2 * 4; ++i) rgba.push_back((unsigned char)(i * 10));
    Bytes png, png_grey, png_rgba, jpg, bmp;
    stbi_write_png_to_func(stb_to_string, &png, 2, 2, 3, rgb.data(), 2 * 3);
    stbi_write_png_to_func(stb_to_string, &png_grey, 2, 2, 1, grey.data(), 2);
    stbi_write_png_to_func(stb_to_string, &png_rgba, 3, 2, 4, rgba.data(), 3 * 4);
    stbi_write_jpg_to_func(stb_to_string, &jpg, 2, 2, 3, rgb.data(), 90);
    stbi_write_bmp_to_func(stb_to_string, &bmp, 2, 2, 3, rgb.data());
    write(out / "image_folder" / "png_rgb", Bytes{char(0), char(3), char(3)} + png);
    write(out / "image_folder" / "png_grey_as_grey", Bytes{char(4), char(1), char(2)} + png_grey);
    write(out / "image_folder" / "png_rgba", Bytes{char(0), char(5), char(4)} + png_rgba);
    write(out / "image_folder" / "jpg", Bytes{char(1), char(2), char(2)} + jpg);
    write(out / "image_folder" / "bmp_as_grey", Bytes{char(2 | 4), char(4), char(4)} + bmp);
  }
  return 0;
}
