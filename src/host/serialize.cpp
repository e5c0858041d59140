// Model files. The architecture is JSON (the schema of models/*.json); a saved model is a
// safetensors file: 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the raw little-endian float32 data. The architecture and
// a format version ride in the header's "__metadata__" (string values, as safetensors asks).
#include <bit>
#include <cstring>
#include <map>

#include <nlohmann/json.hpp>

#include "atomic_file.hpp"
#include "cnn/error.hpp"
#include "cnn/model.hpp"
#include "model_state.hpp"

namespace cnn {

static_assert(std::endian::native == std::endian::little, "model files are little-endian; big-endian hosts need byte swaps");

namespace {
constexpr const char* kFormat = "cnnfromscratch";
constexpr int kFormatVersion = 1;
constexpr size_t kMaxLayers = 10000;
constexpr size_t kMaxJsonBytes = size_t(64) << 20;
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;

Shape json_shape(const nlohmann::json& j, const char* what) {
  CNN_CHECK(j.is_array() && !j.empty() && j.size() <= 4, what, " must be an array of 1 to 4 positive integers, got ",
            j.dump());
  Shape s;
  for (const auto& d : j) {
    CNN_CHECK(d.is_number_integer() && d.get<int64_t>() > 0, what, " must hold positive integers, got ", j.dump());
    s.push_back(d.get<int64_t>());
  }
  return s;
}
}  // namespace

nlohmann::json Sequential::to_json() const {
  nlohmann::json j;
  j["format"] = kFormat;
  j["format_version"] = kFormatVersion;
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : layers_) layers.push_back(l->config());
  if (state_->compiled) {
    const CompileOptions& o = state_->opt;
    j["input_shape"] = o.input_shape;
    j["layers"] = layers;
    j["compile"] = {{"optimizer", o.optimizer},         {"loss", o.loss},
                    {"learning_rate", o.learning_rate}, {"momentum", o.momentum},
                    {"nesterov", o.nesterov},           {"beta1", o.beta1},
                    {"beta2", o.beta2},                 {"epsilon", o.epsilon},
                    {"weight_decay", o.weight_decay},   {"decoupled_weight_decay", o.decoupled_weight_decay},
                    {"label_smoothing", o.label_smoothing}, {"from_logits", o.from_logits},
                    {"seed", o.seed}};
  } else {
    j["layers"] = layers;
  }
  if (!class_names.empty()) j["class_names"] = class_names;
  return j;
}

Sequential Sequential::from_json(const nlohmann::json& j) {
  CNN_CHECK(j.is_object(), "model JSON must be an object, got ", j.type_name());
  for (const auto& item : j.items()) {
    static const char* known[] = {"format", "format_version", "name",     "description", "input_shape",
                                  "layers", "compile",        "training", "class_names"};
    bool ok = false;
    for (const char* k : known) ok = ok || item.key() == k;
    CNN_CHECK(ok, "model JSON: unknown key \"", item.key(),
              "\"; valid keys: name, description, input_shape, layers, compile, training, class_names, format, "
              "format_version");
  }
  if (j.contains("format_version")) {
    CNN_CHECK(j["format_version"].is_number_integer() && j["format_version"].get<int>() <= kFormatVersion,
              "model JSON: format_version ", j["format_version"].dump(), " is newer than this library reads (",
              kFormatVersion, ")");
  }
  CNN_CHECK(j.contains("layers") && j["layers"].is_array() && !j["layers"].empty(),
            "model JSON: \"layers\" must be a non-empty array");
  CNN_CHECK(j["layers"].size() <= kMaxLayers, "model JSON: ", j["layers"].size(), " layers is more than the ",
            kMaxLayers, " allowed");
  Sequential model;
  for (size_t i = 0; i < j["layers"].size(); ++i) {
    try {
      model.add(layer_from_config(j["layers"][i]));
    } catch (const Error& e) {
      fail("model JSON: layer ", i, ": ", e.what());
    }
  }
  if (j.contains("class_names")) {
    const auto& names = j["class_names"];
    CNN_CHECK(names.is_array() && names.size() <= 100000, "model JSON: \"class_names\" must be an array of strings");
    for (const auto& n : names) {
      CNN_CHECK(n.is_string(), "model JSON: \"class_names\" must be an array of strings");
      model.class_names.push_back(n.get<std::string>());
    }
  }
  if (!j.contains("input_shape")) return model;
  CompileOptions o;
  o.input_shape = json_shape(j["input_shape"], "model JSON: \"input_shape\"");
  if (j.contains("compile")) {
    const auto& c = j["compile"];
    CNN_CHECK(c.is_object(), "model JSON: \"compile\" must be an object");
    try {
      for (const auto& item : c.items()) {
        const std::string& k = item.key();
        const auto& v = item.value();
        if (k == "optimizer") o.optimizer = v.get<std::string>();
        else if (k == "loss") o.loss = v.get<std::string>();
        else if (k == "learning_rate") o.learning_rate = v.get<float>();
        else if (k == "momentum") o.momentum = v.get<float>();
        else if (k == "nesterov") o.nesterov = v.get<bool>();
        else if (k == "beta1") o.beta1 = v.get<float>();
        else if (k == "beta2") o.beta2 = v.get<float>();
        else if (k == "epsilon") o.epsilon = v.get<float>();
        else if (k == "weight_decay") o.weight_decay = v.get<float>();
        else if (k == "decoupled_weight_decay") o.decoupled_weight_decay = v.get<bool>();
        else if (k == "label_smoothing") o.label_smoothing = v.get<float>();
        else if (k == "from_logits") o.from_logits = v.get<bool>();
        else if (k == "seed") o.seed = v.get<uint64_t>();
        else
          fail("model JSON: unknown compile option \"", k,
               "\"; valid options: optimizer, loss, learning_rate, momentum, nesterov, beta1, beta2, epsilon, "
               "weight_decay, decoupled_weight_decay, label_smoothing, from_logits, seed");
      }
    } catch (const nlohmann::json::exception& e) {
      fail("model JSON: \"compile\" has a value of the wrong type: ", e.what());
    }
  }
  model.compile(o);
  return model;
}

Sequential Sequential::from_json_file(const std::string& path) {
  const std::string text = read_file(path, kMaxJsonBytes, "model JSON");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("model JSON '", path, "' is not valid JSON: ", e.what());
  }
  try {
    return from_json(j);
  } catch (const Error& e) {
    fail("'", path, "': ", e.what());
  }
}

void Sequential::save(const std::string& path) const {
  CNN_CHECK(state_->compiled, "save: compile the model first");
  const auto tensors = weights();
  nlohmann::json header;
  header["__metadata__"] = {{"format", kFormat},
                            {"format_version", std::to_string(kFormatVersion)},
                            {"architecture", to_json().dump()}};
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const uint64_t bytes = uint64_t(t.numel()) * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", t.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  char length[8];
  const uint64_t n = text.size();
  std::memcpy(length, &n, 8);
  std::vector<std::string_view> parts{{length, 8}, text};
  for (const auto& [name, t] : tensors)
    parts.emplace_back(reinterpret_cast<const char*>(t.data()), size_t(t.numel()) * sizeof(float));
  write_file_atomically(path, parts);
}

Sequential Sequential::load(const std::string& path) {
  const std::string bytes = read_file(path, size_t(1) << 34, "load");
  auto bad = [&](const auto&... why) -> Error {
    std::ostringstream os;
    os << "load: '" << path << "' is not a valid model file: ";
    (os << ... << why);
    return Error(os.str());
  };
  if (bytes.size() < 8) throw bad("it is ", bytes.size(), " bytes, shorter than the 8-byte header length");
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kMaxHeaderBytes) throw bad("header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes);
  if (header_len > bytes.size() - 8)
    throw bad("header length ", header_len, " runs past the end of the file (", bytes.size(), " bytes; truncated?)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(header_len));
  } catch (const nlohmann::json::parse_error& e) {
    throw bad("header is not valid JSON (", e.what(), ")");
  }
  if (!header.is_object() || !header.contains("__metadata__") || !header["__metadata__"].is_object())
    throw bad("no \"__metadata__\" object in the header (a safetensors file from another tool?)");
  const auto& meta = header["__metadata__"];
  if (meta.value("format", "") != kFormat) throw bad("__metadata__.format is not \"", kFormat, "\"");
  if (meta.value("format_version", "") != std::to_string(kFormatVersion))
    throw bad("format_version ", meta.value("format_version", "?"), " is not supported (this library reads ",
              kFormatVersion, ")");
  if (!meta.contains("architecture") || !meta["architecture"].is_string())
    throw bad("__metadata__.architecture is missing");
  nlohmann::json arch;
  try {
    arch = nlohmann::json::parse(meta["architecture"].get<std::string>());
  } catch (const nlohmann::json::parse_error& e) {
    throw bad("the architecture is not valid JSON (", e.what(), ")");
  }
  Sequential model;
  try {
    model = from_json(arch);
  } catch (const Error& e) {
    throw bad("architecture: ", e.what());
  }
  if (!model.compiled()) throw bad("the architecture has no input_shape");

  const uint64_t data_size = bytes.size() - 8 - header_len;
  const char* data = bytes.data() + 8 + header_len;
  std::vector<std::pair<std::string, Tensor>> loaded;
  for (const auto& [name, expected] : model.weights()) {
    if (!header.contains(name)) throw bad("tensor '", name, "' is missing");
    const auto& entry = header[name];
    if (!entry.is_object() || entry.value("dtype", "") != "F32")
      throw bad("tensor '", name, "' must have dtype F32");
    Shape shape;
    try {
      shape = entry.at("shape").get<Shape>();
    } catch (const nlohmann::json::exception&) {
      throw bad("tensor '", name, "' has no valid shape");
    }
    if (shape != expected.shape())
      throw bad("tensor '", name, "' has shape ", shape_str(shape), " but the architecture needs ",
                shape_str(expected.shape()));
    uint64_t begin = 0, end = 0;
    try {
      begin = entry.at("data_offsets").at(0).get<uint64_t>();
      end = entry.at("data_offsets").at(1).get<uint64_t>();
    } catch (const nlohmann::json::exception&) {
      throw bad("tensor '", name, "' has no valid data_offsets");
    }
    const uint64_t want = uint64_t(expected.numel()) * sizeof(float);
    if (end < begin || end - begin != want)
      throw bad("tensor '", name, "' spans ", end - begin, " bytes but its shape needs ", want);
    if (end > data_size)
      throw bad("tensor '", name, "' ends at byte ", end, " past the data section (", data_size, " bytes; truncated?)");
    Tensor t(expected.shape());
    std::memcpy(t.data(), data + begin, want);
    loaded.emplace_back(name, std::move(t));
  }
  model.set_weights(loaded);
  return model;
}

}  // namespace cnn
