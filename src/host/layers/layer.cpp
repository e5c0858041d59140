#include "cnn/layer.hpp"

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "cnn/error.hpp"
#include "cnn/layers.hpp"
#include "kernels/device_memory.hpp"

namespace cnn {

Layer::~Layer() = default;

int64_t Layer::param_count() const {
  int64_t n = 0;
  for (const auto& p : param_specs()) n += shape_numel(p.shape);
  return n;
}

nlohmann::json Layer::common_config() const {
  nlohmann::json c = {{"type", type()}};
  if (!trainable) c["trainable"] = false;
  else if (bias_only) c["trainable"] = "bias";
  if (trainable_epochs >= 0) c["trainable_epochs"] = trainable_epochs;
  if (bias_lr_scale > 0) c["bias_lr_scale"] = bias_lr_scale;
  if (!name.empty()) c["name"] = name;
  return c;
}

std::string to_string(Initializer init) {
  switch (init) {
    case Initializer::GlorotUniform: return "glorot_uniform";
    case Initializer::HeUniform: return "he_uniform";
    case Initializer::Zeros: return "zeros";
    case Initializer::Ones: return "ones";
    case Initializer::TorchUniform: return "torch_uniform";
    case Initializer::TorchUniformDirac: return "torch_uniform_dirac";
  }
  return "?";
}

Initializer parse_initializer(const std::string& name) {
  if (name == "glorot_uniform") return Initializer::GlorotUniform;
  if (name == "he_uniform") return Initializer::HeUniform;
  if (name == "zeros") return Initializer::Zeros;
  if (name == "ones") return Initializer::Ones;
  if (name == "torch_uniform") return Initializer::TorchUniform;
  if (name == "torch_uniform_dirac") return Initializer::TorchUniformDirac;
  fail("unknown initializer '", name, "'; valid initializers: ", kValidInitializers);
}

LayerScratch::Block::~Block() { memory::release(ptr, device); }

template <class T>
T* LayerScratch::get(int64_t count, Device device) {
  auto& block = std::is_same_v<T, float> ? float_ : double_;
  const size_t bytes = size_t(count) * sizeof(T);
  if (!block || block->bytes < bytes || block->device != device) {
    block.reset();
    block = std::make_unique<Block>();
    block->ptr = memory::allocate(bytes, device);
    block->bytes = bytes;
    block->device = device;
  }
  return static_cast<T*>(block->ptr);
}
template float* LayerScratch::get<float>(int64_t, Device);
template double* LayerScratch::get<double>(int64_t, Device);

namespace {
// A JSON value for an error message, cut short when long.
std::string brief(const nlohmann::json& j) {
  std::string s = j.dump();
  if (s.size() > 200) s = s.substr(0, 200) + "...";
  return s;
}
}  // namespace

std::shared_ptr<Layer> layer_from_config(const nlohmann::json& c) {
  CNN_CHECK(c.is_object() && c.contains("type") && c["type"].is_string(),
            "layer config must be an object with a \"type\" string, got: ", brief(c));
  const std::string type = c["type"].get<std::string>();
  static const std::map<std::string, std::set<std::string>> known_keys = {
      {"Conv2D", {"filters", "kernel_size", "strides", "padding", "activation", "alpha", "use_bias", "kernel_initializer"}},
      {"Dense", {"units", "activation", "alpha", "use_bias", "kernel_initializer", "scale"}},
      {"Flatten", {}},
      {"MaxPooling2D", {"pool_size", "strides", "padding"}},
      {"AveragePooling2D", {"pool_size", "strides", "padding"}},
      {"Activation", {"activation", "alpha"}},
      {"BatchNormalization", {"momentum", "keras_momentum", "epsilon", "scale", "center"}},
      {"Dropout", {"rate"}},
      {"GlobalAveragePooling2D", {}},
      {"GlobalMaxPooling2D", {}},
  };
  if (auto it = known_keys.find(type); it != known_keys.end()) {
    for (const auto& item : c.items()) {
      const std::string& key = item.key();
      if (key == "type" || key == "trainable" || key == "name" || key == "trainable_epochs" ||
          key == "bias_lr_scale" || it->second.count(key))
        continue;
      std::string valid;
      for (const auto& k : it->second) valid += (valid.empty() ? "" : ", ") + k;
      fail(type, ": unknown option \"", key, "\"; valid options: ", valid.empty() ? "(none)" : valid,
           ", trainable, trainable_epochs, bias_lr_scale, name");
    }
  }
  // Integers are read in full (a value beyond int is refused, not wrapped around); window
  // sides and strides are at most kMaxWindow, which keeps the parameter and shape arithmetic
  // of any layer the reader accepts within 64 bits. Sign errors are left to the layers.
  constexpr int64_t kMaxWindow = 65536;
  auto int_of = [&](const nlohmann::json& v, const char* key, int64_t max) {
    const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(max)
                                             : v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= max;
    CNN_CHECK(fits, type, ": \"", key, "\" ", v.dump(), " is out of range (at most ", max, ")");
    return int(v.get<int64_t>());
  };
  auto size2 = [&](const char* key, Size2 fallback) -> Size2 {
    if (!c.contains(key) || c[key].is_null()) return fallback;
    const auto& v = c[key];
    if (v.is_number_integer()) return Size2(int_of(v, key, kMaxWindow));
    CNN_CHECK(v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer(), type,
              ": \"", key, "\" must be an integer or [height, width], got ", brief(v));
    return Size2(int_of(v[0], key, kMaxWindow), int_of(v[1], key, kMaxWindow));
  };
  auto str = [&](const char* key, const std::string& fallback) {
    if (!c.contains(key)) return fallback;
    CNN_CHECK(c[key].is_string(), type, ": \"", key, "\" must be a string, got ", brief(c[key]));
    return c[key].get<std::string>();
  };
  auto integer = [&](const char* key) {
    CNN_CHECK(c.contains(key) && c[key].is_number_integer(), type, ": \"", key, "\" must be an integer");
    return int_of(c[key], key, INT32_MAX);
  };
  auto number = [&](const char* key, float fallback) {
    if (!c.contains(key)) return fallback;
    // In float range (a larger double would not convert to float defined-ly).
    CNN_CHECK(c[key].is_number() && std::fabs(c[key].get<double>()) <= FLT_MAX, type, ": \"", key,
              "\" must be a finite number, got ", c[key].dump());
    return c[key].get<float>();
  };
  auto boolean = [&](const char* key, bool fallback) {
    if (!c.contains(key)) return fallback;
    CNN_CHECK(c[key].is_boolean(), type, ": \"", key, "\" must be true or false");
    return c[key].get<bool>();
  };

  std::shared_ptr<Layer> layer;
  if (type == "Conv2D") {
    layer = std::make_shared<Conv2D>(Conv2DOptions{integer("filters"), size2("kernel_size", 3), size2("strides", 1),
                                                   str("padding", "valid"), str("activation", "linear"),
                                                   number("alpha", kDefaultLeakyAlpha), boolean("use_bias", true),
                                                   str("kernel_initializer", "glorot_uniform")});
  } else if (type == "Dense") {
    layer = std::make_shared<Dense>(DenseOptions{integer("units"), str("activation", "linear"),
                                                 number("alpha", kDefaultLeakyAlpha), boolean("use_bias", true),
                                                 str("kernel_initializer", "glorot_uniform"), number("scale", 1.0f)});
  } else if (type == "Flatten") {
    layer = std::make_shared<Flatten>();
  } else if (type == "MaxPooling2D" || type == "AveragePooling2D") {
    const Size2 pool = size2("pool_size", 2);
    Pooling2DOptions o{pool, c.contains("strides") && !c["strides"].is_null() ? std::optional<Size2>(size2("strides", pool))
                                                                              : std::nullopt,
                       str("padding", "valid")};
    if (type == "MaxPooling2D") layer = std::make_shared<MaxPooling2D>(o);
    else layer = std::make_shared<AveragePooling2D>(o);
  } else if (type == "Activation") {
    layer = std::make_shared<ActivationLayer>(str("activation", "linear"), number("alpha", kDefaultLeakyAlpha));
  } else if (type == "BatchNormalization") {
    // "momentum" in PyTorch's convention (the new batch's weight); "keras_momentum" in Keras's
    // (the old value's weight), converted.
    CNN_CHECK(!(c.contains("momentum") && c.contains("keras_momentum")), type,
              ": give \"momentum\" (PyTorch's convention) or \"keras_momentum\" (Keras's: 1 - momentum), not both");
    BatchNormOptions o;
    o.momentum = c.contains("keras_momentum") ? 1.0f - number("keras_momentum", 0.0f) : number("momentum", o.momentum);
    o.epsilon = number("epsilon", o.epsilon);
    o.scale = boolean("scale", true);
    o.center = boolean("center", true);
    layer = std::make_shared<BatchNormalization>(o);
  } else if (type == "Dropout") {
    CNN_CHECK(c.contains("rate"), type, ": \"rate\" is required");
    layer = std::make_shared<Dropout>(number("rate", 0.0f));
  } else if (type == "GlobalAveragePooling2D") {
    layer = std::make_shared<GlobalAveragePooling2D>();
  } else if (type == "GlobalMaxPooling2D") {
    layer = std::make_shared<GlobalMaxPooling2D>();
  } else {
    fail("unknown layer type '", type,
         "'; valid types: Conv2D, Dense, Flatten, MaxPooling2D, AveragePooling2D, Activation, BatchNormalization, "
         "Dropout, GlobalAveragePooling2D, GlobalMaxPooling2D");
  }
  // "trainable": true | false | "bias" (weights frozen, bias trained).
  if (c.contains("trainable") && c["trainable"].is_string()) {
    CNN_CHECK(c["trainable"] == "bias", type, ": \"trainable\" must be true, false or \"bias\", got ",
              brief(c["trainable"]));
    layer->bias_only = true;
  } else {
    CNN_CHECK(!c.contains("trainable") || c["trainable"].is_boolean(), type,
              ": \"trainable\" must be true, false or \"bias\", got ", brief(c["trainable"]));
    layer->trainable = boolean("trainable", true);
  }
  if (c.contains("trainable_epochs")) {
    const auto& v = c["trainable_epochs"];
    CNN_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX, type,
              ": \"trainable_epochs\" must be an integer >= 0, got ", brief(v));
    layer->trainable_epochs = int(v.get<int64_t>());
  }
  if (c.contains("bias_lr_scale")) {
    const float s = number("bias_lr_scale", 0.0f);
    CNN_CHECK(std::isfinite(s) && s > 0, type, ": \"bias_lr_scale\" must be > 0, got ", brief(c["bias_lr_scale"]));
    layer->bias_lr_scale = s;
  }
  layer->name = str("name", "");
  return layer;
}

}  // namespace cnn
