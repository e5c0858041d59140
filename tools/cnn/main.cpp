// cnn: the command line for CNNFromScratch.
//   cnn train --model models/lenet5.json --epochs 10      train on CIFAR-10 (found or fetched)
//   cnn eval --model out/lenet5.safetensors               accuracy, per class, confusion matrix
//   cnn predict --model out/lenet5.safetensors cat.png    top-3 classes
//   cnn summary --model models/lenet5.json                Keras-style table
//   cnn export --model out/lenet5.safetensors --onnx lenet5.onnx   ONNX file
// Exit codes: 0 success, 1 bad data/model files or a failed run, 2 bad arguments,
// 3 `cnn check` without a GPU.
#include <cstdio>
#include <map>

#include "cli.hpp"

int main(int argc, char** argv) {
  CLI::App app{"CNNFromScratch: train and use convolutional networks on the CPU or an NVIDIA GPU", "cnn"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cnn 0.1.0");
  // Bad arguments: the error, then the usage of the subcommand given (or of cnn); exit 2.
  app.failure_message(
      [](const CLI::App* a, const CLI::Error& e) { return "cnn: " + std::string(e.what()) + "\n\n" + a->help(); });
  std::map<CLI::App*, cnn::cli::Runner> runners;
  using namespace cnn::cli;
  for (auto add : {add_train, add_eval, add_predict, add_summary, add_data_dir, add_gradcheck, add_check, add_bench,
                    add_show_data, add_plot, add_visualize, add_export}) {
    const size_t before = app.get_subcommands({}).size();
    auto runner = add(app);
    runners[app.get_subcommands({})[before]] = runner;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    for (auto* sub : app.get_subcommands()) return runners.at(sub)();
  } catch (const cnn::cli::UsageError& e) {
    std::fprintf(stderr, "cnn: %s\n\n%s", e.what(), app.help().c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cnn: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
