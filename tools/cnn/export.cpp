// cnn export: a saved model (or a description, with its initial weights) as an ONNX file.
//   cnn export --model out/lenet5.safetensors --onnx lenet5.onnx [--opset 17] [--batch dynamic|N]
// The ONNX metadata takes the model file's "name" and "description" (a description's keys,
// or those kept in a saved model's architecture); without a name, the file's stem.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli.hpp"

namespace cnn::cli {
namespace {

// The model description inside a model file: the file itself (JSON), or a saved model's
// __metadata__.architecture. Null when it cannot be read (load_model reports why).
nlohmann::json description_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string text;
  if (is_saved_model(path)) {
    uint64_t length = 0;
    in.read(reinterpret_cast<char*>(&length), 8);
    if (!in || length > (uint64_t(1) << 27)) return nullptr;
    text.resize(size_t(length));
    in.read(text.data(), std::streamsize(length));
    const nlohmann::json header = nlohmann::json::parse(text, nullptr, false);
    if (!header.is_object() || !header.contains("__metadata__")) return nullptr;
    const nlohmann::json& meta = header["__metadata__"];
    if (!meta.is_object() || !meta.contains("architecture") || !meta["architecture"].is_string()) return nullptr;
    return nlohmann::json::parse(meta["architecture"].get<std::string>(), nullptr, false);
  }
  text.assign(std::istreambuf_iterator<char>(in), {});
  return nlohmann::json::parse(text, nullptr, false);
}

std::string string_key(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

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
    const nlohmann::json description = description_json(a->model);
    o.name = string_key(description, "name");
    if (o.name.empty()) o.name = std::filesystem::path(a->model).stem().string();
    o.description = string_key(description, "description");
    model.export_onnx(a->onnx, o);
    std::printf("Wrote %s (ONNX opset %d, batch %s): %zu layers of '%s'\n", a->onnx.c_str(), o.opset,
                o.batch ? std::to_string(o.batch).c_str() : "dynamic", model.size(), o.name.c_str());
    return 0;
  };
}

}  // namespace cnn::cli
