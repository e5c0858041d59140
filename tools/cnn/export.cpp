// cnn export: a saved model (or a description, with its initial weights) as an ONNX file.
//   cnn export --model out/lenet5.safetensors --onnx lenet5.onnx [--opset 17] [--batch dynamic|N]
// The ONNX metadata takes the model's name and description (a description's "name" and
// "description", kept in the models saved from it); without a name, the file's stem.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "cli.hpp"

namespace cnn::cli {
namespace {

// "dynamic" -> 0, else a positive batch size.
int64_t parse_batch(const std::string& text) {
  if (text == "dynamic") return 0;
  char* end = nullptr;
  const long long n = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || n < 1 || n > INT32_MAX)
    throw UsageError("--batch must be 'dynamic' or a positive integer, got '" + text + "'");
  return n;
}

}  // namespace

Runner add_export(CLI::App& app) {
  struct Args {
    std::string model, onnx, batch = "dynamic";
    int opset = 17;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("export", "Write a model as an ONNX file (inference: running BatchNorm statistics, no Dropout)");
  sub->add_option("--model", a->model, "Saved model (.safetensors; a .json description exports its initial weights)")
      ->required();
  sub->add_option("--onnx", a->onnx, "The ONNX file to write")->required();
  sub->add_option("--opset", a->opset, "ai.onnx opset, 13 to 22 (default 17)");
  sub->add_option("--batch", a->batch, "The input's batch dimension: 'dynamic' (default) or a fixed size");
  return [a] {
    OnnxExportOptions o;
    o.opset = a->opset;
    o.batch = parse_batch(a->batch);
    Sequential model = load_model(a->model);
    CNN_CHECK(model.compiled(), "'", a->model, "' has no input_shape, so the graph's shapes are unknown");
    if (model.name.empty()) o.name = std::filesystem::path(a->model).stem().string();
    model.export_onnx(a->onnx, o);
    std::printf("Wrote %s (ONNX opset %d, batch %s): %zu layers of '%s'\n", a->onnx.c_str(), o.opset,
                o.batch ? std::to_string(o.batch).c_str() : "dynamic", model.size(),
                o.name.empty() ? model.name.c_str() : o.name.c_str());
    return 0;
  };
}

}  // namespace cnn::cli
