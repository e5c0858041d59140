#pragma once
// Shared pieces of the `cnn` command: loading models and data sets the way every
// subcommand does, and the error type for bad arguments (exit code 2).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "cnn/cnn.hpp"
#include "cnn/pictures.hpp"

namespace cnn::cli {

// A bad combination of arguments that CLI11 cannot see: printed with the usage, exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A model from a JSON description (models/*.json) or a saved .safetensors file.
Sequential load_model(const std::string& path);
bool is_saved_model(const std::string& path);

// The data set in `dir` (CIFAR-10 binary, MNIST IDX, or a folder of class folders), shaped for
// `input_shape` (channels 1 makes CIFAR grayscale). An empty dir searches for CIFAR-10.
TrainTest load_data_for(const Shape& input_shape, const std::string& dir, int64_t train_limit, int64_t test_limit);

// For every float flag, before its range check: refuses NaN and infinity (CLI11's Range and
// PositiveNumber let NaN through, since every comparison with NaN is false). The error names
// the flag: "--lr: must be a finite number, got nan".
CLI::Validator finite_number();

// --precision fp32|tf32|bf16 (the compile option "precision"): unset leaves the model's policy;
// apply_precision switches a loaded model to the flag's, keeping its weights.
void add_precision_flag(CLI::App* sub, std::optional<std::string>& precision);
void apply_precision(Sequential& model, const std::optional<std::string>& precision);

// Registers each subcommand's options and returns the function that runs it.
using Runner = std::function<int()>;
Runner add_train(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_predict(CLI::App& app);
Runner add_summary(CLI::App& app);
Runner add_data_dir(CLI::App& app);
Runner add_gradcheck(CLI::App& app);
Runner add_check(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_show_data(CLI::App& app);  // pictures.cpp
Runner add_plot(CLI::App& app);
Runner add_visualize(CLI::App& app);
Runner add_export(CLI::App& app);  // export.cpp

// Writes a picture as PNG (creating the folder) and prints "Wrote PATH (WxH): what".
void save_picture(const Image& image, const std::string& path, const std::string& what);

}  // namespace cnn::cli
