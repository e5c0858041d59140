// Model files. The architecture is JSON (the schema of models/*.json); a saved model is a
// safetensors file: 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the raw little-endian float32 data. The architecture and
// a format version ride in the header's "__metadata__" (string values, as safetensors asks).
#include <bit>
#include <cfloat>
#include <climits>
#include <cmath>
#include <sstream>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "io/atomic_file.hpp"
#include "cnn/error.hpp"
#include "cnn/model.hpp"
#include "model/state.hpp"

namespace cnn {

static_assert(std::endian::native == std::endian::little, "model files are little-endian; big-endian hosts need byte swaps");

namespace {
constexpr const char* kFormat = "cnnfromscratch";
constexpr int kFormatVersion = 1;
constexpr size_t kMaxLayers = 10000;
constexpr size_t kMaxJsonBytes = size_t(64) << 20;
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;
// A description is refused before compile allocates anything when it nests deeper than this
// (our own are 4 deep; the JSON library prints and compares recursively), when a layer would
// take or give more than kMaxSampleValues values per sample (the kernels index a sample with
// int), or when its parameters exceed a budget: kMaxDescribedParams for a bare description,
// which costs nothing to write, and what its data section holds for a model file.
constexpr int kMaxJsonDepth = 64;
constexpr int64_t kMaxSampleValues = int64_t{1} << 30;
constexpr int64_t kMaxDescribedParams = int64_t{1} << 26;  // 67,108,864 (256 MiB of float32)

// A JSON value for an error message, cut short when long.
std::string brief(const nlohmann::json& j) {
  std::string s = j.dump();
  if (s.size() > 200) s = s.substr(0, 200) + "...";
  return s;
}

// An integer in [lo, hi] (no rounding, no wrap-around), or nothing.
std::optional<int64_t> json_int(const nlohmann::json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= uint64_t(INT64_MAX) && int64_t(u) >= lo && int64_t(u) <= hi) return int64_t(u);
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= lo && i <= hi) return i;
  }
  return std::nullopt;
}

// A string member, or "" when absent or not a string.
std::string json_string(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return "";
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// True when j nests deeper than `limit` (worked out without recursion).
bool nests_deeper_than(const nlohmann::json& j, int limit) {
  std::vector<std::pair<const nlohmann::json*, int>> todo{{&j, 1}};
  while (!todo.empty()) {
    const auto [v, depth] = todo.back();
    todo.pop_back();
    if (depth > limit) return true;
    if (v->is_structured())
      for (const auto& child : *v) todo.emplace_back(&child, depth + 1);
  }
  return false;
}

Shape json_shape(const nlohmann::json& j, const char* what) {
  CNN_CHECK(j.is_array() && !j.empty() && j.size() <= 4, what, " must be an array of 1 to 4 positive integers, got ",
            brief(j));
  Shape s;
  for (const auto& d : j) {
    const auto v = json_int(d, 1, INT64_MAX);
    CNN_CHECK(v.has_value(), what, " must hold positive integers, got ", brief(j));
    s.push_back(*v);
  }
  return s;
}

int64_t saturating_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return INT64_MAX;
  return n;
}

// Works out every layer's shapes and the parameter count, refusing what is too large, before
// compile allocates anything. Errors compile would report (with the layer and the shapes) are
// left to it.
void check_size(Sequential& model, const Shape& input, int64_t max_params, const std::string& budget) {
  CNN_CHECK(saturating_numel(input) <= kMaxSampleValues, "model JSON: \"input_shape\" ", shape_str(input),
            " has more than ", kMaxSampleValues, " values per sample; refused before allocating");
  Shape shape = input;
  int64_t params = 0;
  for (size_t i = 0; i < model.size(); ++i) {
    Layer& l = model.layer(i);
    try {
      shape = l.build(shape);
    } catch (const Error&) {
      return;
    }
    for (const ParamSpec& p : l.param_specs())
      if (__builtin_add_overflow(params, saturating_numel(p.shape), &params)) params = INT64_MAX;
    CNN_CHECK(params <= max_params, "model JSON: the layers up to layer ", i, " (", l.type(), ") already hold ",
              params == INT64_MAX ? std::string("over 2^63") : std::to_string(params), " parameters, more than ",
              budget, "; refused before allocating them");
    CNN_CHECK(saturating_numel(shape) <= kMaxSampleValues, "model JSON: layer ", i, " (", l.type(), ") outputs ",
              shape_str(shape), " per sample, more than ", kMaxSampleValues, " values; refused before allocating");
  }
}

// Sequential::from_json with a parameter budget (see check_size).
Sequential describe(const nlohmann::json& j, int64_t max_params, const std::string& budget);
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
                    {"bias_lr_scale", o.bias_lr_scale},
                    {"seed", o.seed}};
    // Written only when not the default, so fp32 models save exactly as before the policy existed.
    if (state_->precision != Precision::FP32) j["compile"]["precision"] = to_string(state_->precision);
    if (!o.bias_lr_scales_weight_decay) j["compile"]["bias_lr_scales_weight_decay"] = false;
  } else {
    j["layers"] = layers;
  }
  if (!class_names.empty()) j["class_names"] = class_names;
  if (!name.empty()) j["name"] = name;
  if (!description.empty()) j["description"] = description;
  return j;
}

Sequential Sequential::from_json(const nlohmann::json& j) {
  return describe(j, kMaxDescribedParams,
                  "the " + std::to_string(kMaxDescribedParams) + " a model description may ask for");
}

// ---- The "training" section ------------------------------------------------------------

TrainingRecipe::TrainingRecipe() {
  fit.epochs = 10;
  fit.batch_size = 32;
  fit.validation_split = 0.1f;
}

namespace {

// Reads one object of the training section ("training", "training.augment", ...): refuses
// keys it does not list, and reads each present key into its field with the checks that
// make a bad file fail here, naming "<section>.<key>", rather than later in fit.
class SectionReader {
 public:
  SectionReader(const nlohmann::json& j, std::string section, std::initializer_list<const char*> keys)
      : j_(j), section_(std::move(section)) {
    CNN_CHECK(j.is_object(), section_, " must be an object, got ", brief(j));
    std::string valid;
    for (const char* k : keys) valid += (valid.empty() ? "" : ", ") + std::string(k);
    for (const auto& item : j.items()) {
      bool known = false;
      for (const char* k : keys) known = known || item.key() == k;
      CNN_CHECK(known, section_, ": unknown key \"", item.key(), "\"; valid keys: ", valid);
    }
  }
  const nlohmann::json* find(const char* key) const {
    const auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  std::string name(const char* key) const { return section_ + "." + key; }

  // An integer in [lo, hi].
  template <class Int>
  void integer(const char* key, Int& out, int64_t lo, int64_t hi) const {
    if (const auto* v = find(key)) {
      const auto i = json_int(*v, lo, hi);
      CNN_CHECK(i.has_value(), name(key), " must be an integer in [", lo, ", ", hi, "], got ", brief(*v));
      out = Int(*i);
    }
  }
  // A finite number in [lo, hi] (hi_open: [lo, hi)); JSON cannot spell NaN, but 1e999 parses as inf.
  template <class Real>
  void real(const char* key, Real& out, double lo, double hi, bool hi_open = false) const {
    if (const auto* v = find(key)) {
      const double d = v->is_number() ? v->get<double>() : std::nan("");
      const bool in_range = std::isfinite(d) && std::fabs(d) <= FLT_MAX && d >= lo && (hi_open ? d < hi : d <= hi);
      CNN_CHECK(in_range, name(key), " must be a finite number in [", lo, ", ", hi, hi_open ? ")" : "]", ", got ",
                brief(*v));
      out = v->get<Real>();
    }
  }
  void boolean(const char* key, bool& out) const {
    if (const auto* v = find(key)) {
      CNN_CHECK(v->is_boolean(), name(key), " must be true or false, got ", brief(*v));
      out = v->get<bool>();
    }
  }
  // A name, checked by `parse` (which raises the error listing the valid names).
  template <class Parse>
  void choice(const char* key, std::string& out, Parse parse) const {
    if (const auto* v = find(key)) {
      CNN_CHECK(v->is_string(), name(key), " must be a string, got ", brief(*v));
      parse(v->get<std::string>(), section_);
      out = v->get<std::string>();
    }
  }

 private:
  const nlohmann::json& j_;
  std::string section_;
};

constexpr int64_t kIntMax = INT32_MAX;
constexpr double kMaxEpochs = 1e6;  // fit's bound

}  // namespace

TrainingRecipe read_training_recipe(const nlohmann::json& training) {
  TrainingRecipe out;
  FitOptions& f = out.fit;
  const SectionReader top(training, "training",
                          {"epochs", "batch_size", "drop_last", "validation_split", "shuffle", "seed", "lr_schedule", "augment",
                           "weight_averaging", "tta", "patch_whitening"});
  top.real("epochs", f.epochs, 0, kMaxEpochs);  // 9.9: the last epoch in part (FitOptions::epochs)
  top.integer("batch_size", f.batch_size, 1, kIntMax);
  top.real("validation_split", f.validation_split, 0, 1, true);
  top.boolean("shuffle", f.shuffle);
  top.boolean("drop_last", f.drop_last);
  top.integer("seed", f.seed, 0, INT64_MAX);
  if (const auto* l = top.find("lr_schedule")) {
    const SectionReader r(*l, "training.lr_schedule",
                          {"kind", "step_epochs", "gamma", "min_factor", "warmup", "start_factor", "end_factor"});
    LRSchedule& s = f.lr_schedule;
    r.choice("kind", s.kind, [](const std::string& n, const std::string& where) { parse_schedule(n, where); });
    r.integer("step_epochs", s.step_epochs, 1, kIntMax);
    r.real("gamma", s.gamma, 0, FLT_MAX);
    r.real("min_factor", s.min_factor, 0, FLT_MAX);
    r.real("warmup", s.warmup, 0, 1, true);
    r.real("start_factor", s.start_factor, 0, FLT_MAX);
    r.real("end_factor", s.end_factor, 0, FLT_MAX);
  }
  if (const auto* a = top.find("augment")) {
    const SectionReader r(*a, "training.augment", {"translate", "flip", "cutout"});
    r.integer("translate", f.augment.translate, 0, kIntMax);
    r.choice("flip", f.augment.flip, [](const std::string& n, const std::string& where) { parse_flip(n, where); });
    r.integer("cutout", f.augment.cutout, 0, kIntMax);
  }
  if (const auto* w = top.find("weight_averaging")) {
    const SectionReader r(*w, "training.weight_averaging",
                          {"method", "decay", "every", "alpha", "alpha_decay", "alpha_decay_power"});
    WeightAveragingOptions o;
    r.choice("method", o.method,
             [](const std::string& n, const std::string& where) { parse_averaging_method(n, where); });
    r.real("decay", o.decay, 0, 1, true);
    r.integer("every", o.every, 1, kIntMax);
    r.real("alpha", o.alpha, 0, 1);
    CNN_CHECK(o.alpha > 0, "training.weight_averaging.alpha must be in (0, 1], got ", o.alpha);
    r.real("alpha_decay", o.alpha_decay, 0, 1, true);
    r.real("alpha_decay_power", o.alpha_decay_power, 0, FLT_MAX);
    CNN_CHECK(o.alpha_decay_power > 0, "training.weight_averaging.alpha_decay_power must be positive, got ",
              o.alpha_decay_power);
    f.weight_averaging = o;
  }
  if (const auto* t = top.find("tta")) {
    const SectionReader r(*t, "training.tta", {"flip", "translate", "shifted_share"});
    r.boolean("flip", out.tta.flip);
    r.integer("translate", out.tta.translate, 0, kIntMax);
    r.real("shifted_share", out.tta.shifted_share, 0, 1);
    CNN_CHECK(out.tta.shifted_share < 0 || out.tta.translate > 0,
              "training.tta.shifted_share needs shifted views: set training.tta.translate > 0");
  }
  if (const auto* p = top.find("patch_whitening")) {
    const SectionReader r(*p, "training.patch_whitening", {"images", "eps"});
    r.integer("images", f.patch_whitening.images, 1, INT64_MAX);
    r.real("eps", f.patch_whitening.eps, 0, FLT_MAX);
  }
  return out;
}

namespace {
nlohmann::json parse_json_file(const std::string& path);

// A saved model starts with its 8-byte header length, then the header's '{'.
bool is_saved_model_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char first[9] = {};
  in.read(first, 9);
  return in.gcount() == 9 && first[8] == '{';
}
}  // namespace

TrainingRecipe read_training_recipe_file(const std::string& path) {
  if (is_saved_model_file(path)) return {};
  const nlohmann::json j = parse_json_file(path);
  if (!j.is_object() || !j.contains("training")) return {};
  try {
    return read_training_recipe(j["training"]);
  } catch (const Error& e) {
    fail("'", path, "': ", e.what());
  }
}

namespace {
Sequential describe(const nlohmann::json& j, int64_t max_params, const std::string& budget) {
  CNN_CHECK(j.is_object(), "model JSON must be an object, got ", j.type_name());
  CNN_CHECK(!nests_deeper_than(j, kMaxJsonDepth), "model JSON: nested more than ", kMaxJsonDepth,
            " levels deep (a model description needs 4)");
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
    CNN_CHECK(json_int(j["format_version"], INT64_MIN, kFormatVersion).has_value(), "model JSON: format_version ",
              brief(j["format_version"]), " is newer than this library reads (", kFormatVersion, ")");
  }
  CNN_CHECK(j.contains("layers") && j["layers"].is_array() && !j["layers"].empty(),
            "model JSON: \"layers\" must be a non-empty array");
  CNN_CHECK(j["layers"].size() <= kMaxLayers, "model JSON: ", j["layers"].size(), " layers is more than the ",
            kMaxLayers, " allowed");
  if (j.contains("training")) read_training_recipe(j["training"]);  // refuse a bad recipe at load
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
  for (const char* key : {"name", "description"}) {
    if (!j.contains(key)) continue;
    CNN_CHECK(j[key].is_string(), "model JSON: \"", key, "\" must be a string, got ", brief(j[key]));
    (std::string(key) == "name" ? model.name : model.description) = j[key].get<std::string>();
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
        // Numbers must fit: a float option a finite float, the seed a non-negative integer.
        auto real = [&] {
          CNN_CHECK(!v.is_number() || std::fabs(v.get<double>()) <= FLT_MAX, "model JSON: compile option \"", k,
                    "\" must be a finite number, got ", brief(v));
          return v.get<float>();
        };
        if (k == "optimizer") o.optimizer = v.get<std::string>();
        else if (k == "loss") o.loss = v.get<std::string>();
        else if (k == "learning_rate") o.learning_rate = real();
        else if (k == "momentum") o.momentum = real();
        else if (k == "nesterov") o.nesterov = v.get<bool>();
        else if (k == "beta1") o.beta1 = real();
        else if (k == "beta2") o.beta2 = real();
        else if (k == "epsilon") o.epsilon = real();
        else if (k == "weight_decay") o.weight_decay = real();
        else if (k == "decoupled_weight_decay") o.decoupled_weight_decay = v.get<bool>();
        else if (k == "label_smoothing") o.label_smoothing = real();
        else if (k == "from_logits") o.from_logits = v.get<bool>();
        else if (k == "bias_lr_scale") o.bias_lr_scale = real();
        else if (k == "precision") o.precision = v.get<std::string>();
        else if (k == "bias_lr_scales_weight_decay") o.bias_lr_scales_weight_decay = v.get<bool>();
        else if (k == "seed") {
          CNN_CHECK(v.is_number_unsigned() || !v.is_number(), "model JSON: compile option \"seed\" must be a ",
                    "non-negative integer, got ", brief(v));
          o.seed = v.get<uint64_t>();
        } else
          fail("model JSON: unknown compile option \"", k,
               "\"; valid options: optimizer, loss, learning_rate, momentum, nesterov, beta1, beta2, epsilon, "
               "weight_decay, decoupled_weight_decay, label_smoothing, from_logits, bias_lr_scale, bias_lr_scales_weight_decay, seed, precision");
      }
    } catch (const nlohmann::json::exception& e) {
      fail("model JSON: \"compile\" has a value of the wrong type: ", e.what());
    }
  }
  check_size(model, o.input_shape, max_params, budget);
  model.compile(o);
  return model;
}
}  // namespace

namespace {
nlohmann::json parse_json_file(const std::string& path) {
  const std::string text = read_file(path, kMaxJsonBytes, "model JSON");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number too large
    fail("model JSON '", path, "' is not valid JSON: ", e.what());
  }
}
}  // namespace

Sequential Sequential::from_json_file(const std::string& path) {
  const nlohmann::json j = parse_json_file(path);
  try {
    return from_json(j);
  } catch (const Error& e) {
    fail("'", path, "': ", e.what());
  }
}

namespace {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes tensors (CPU) in safetensors layout with our metadata, atomically.
void write_model_file(const std::string& path, const NamedTensors& tensors, const nlohmann::json& architecture,
                      const nlohmann::json* checkpoint) {
  nlohmann::json header;
  header["__metadata__"] = {{"format", kFormat},
                            {"format_version", std::to_string(kFormatVersion)},
                            {"architecture", architecture.dump()}};
  if (checkpoint) header["__metadata__"]["checkpoint"] = checkpoint->dump();
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

// A model file read and checked: its header, metadata and the byte range of the data.
class ModelFile {
 public:
  explicit ModelFile(const std::string& path) : path_(path) {
    bytes_ = read_file(path, size_t(1) << 34, "load");
    if (bytes_.size() < 8) throw bad("it is ", bytes_.size(), " bytes, shorter than the 8-byte header length");
    uint64_t header_len;
    std::memcpy(&header_len, bytes_.data(), 8);
    if (header_len > kMaxHeaderBytes) throw bad("header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes);
    if (header_len > bytes_.size() - 8)
      throw bad("header length ", header_len, " runs past the end of the file (", bytes_.size(), " bytes; truncated?)");
    try {
      header_ = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + 8 + std::ptrdiff_t(header_len));
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number too large
      throw bad("header is not valid JSON (", e.what(), ")");
    }
    if (!header_.is_object() || !header_.contains("__metadata__") || !header_["__metadata__"].is_object())
      throw bad("no \"__metadata__\" object in the header (a safetensors file from another tool?)");
    const auto& meta = header_["__metadata__"];
    if (json_string(meta, "format") != kFormat) throw bad("__metadata__.format is not \"", kFormat, "\"");
    if (json_string(meta, "format_version") != std::to_string(kFormatVersion))
      throw bad("format_version ", meta.contains("format_version") ? json_string(meta, "format_version") : "(none)",
                " is not supported (this library reads ", kFormatVersion, ")");
    data_begin_ = 8 + header_len;
    data_size_ = bytes_.size() - data_begin_;
  }

  template <class... Why>
  Error bad(const Why&... why) const {
    std::ostringstream os;
    os << "load: '" << path_ << "' is not a valid model file: ";
    (os << ... << why);
    return Error(os.str());
  }

  // A JSON document stored as a string in __metadata__ (null when absent).
  nlohmann::json metadata_json(const char* key) const {
    const auto& meta = header_["__metadata__"];
    if (!meta.contains(key)) return nullptr;
    if (!meta[key].is_string()) throw bad("__metadata__.", key, " must be a string");
    try {
      return nlohmann::json::parse(meta[key].get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw bad("__metadata__.", key, " is not valid JSON (", e.what(), ")");
    }
  }

  bool has(const std::string& name) const { return header_.contains(name); }

  Tensor tensor(const std::string& name, const Shape& expected) const {
    if (!header_.contains(name)) throw bad("tensor '", name, "' is missing");
    const auto& entry = header_[name];
    if (json_string(entry, "dtype") != "F32") throw bad("tensor '", name, "' must have dtype F32");
    Shape shape;
    const auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) throw bad("tensor '", name, "' has no valid shape");
    for (const auto& d : *shape_it) {
      const auto v = json_int(d, 0, INT64_MAX);
      if (!v) throw bad("tensor '", name, "' has no valid shape");
      shape.push_back(*v);
    }
    if (shape != expected)
      throw bad("tensor '", name, "' has shape ", shape_str(shape), " but the architecture needs ", shape_str(expected));
    const auto offsets = entry.find("data_offsets");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned())
      throw bad("tensor '", name, "' has no valid data_offsets");
    const uint64_t begin = (*offsets)[0].get<uint64_t>(), end = (*offsets)[1].get<uint64_t>();
    const uint64_t want = uint64_t(shape_numel(expected)) * sizeof(float);
    if (end < begin || end - begin != want)
      throw bad("tensor '", name, "' spans ", end - begin, " bytes but its shape needs ", want);
    if (end > data_size_)
      throw bad("tensor '", name, "' ends at byte ", end, " past the data section (", data_size_, " bytes; truncated?)");
    Tensor t(expected);
    std::memcpy(t.data(), bytes_.data() + data_begin_ + begin, want);
    return t;
  }

  Sequential model() const {
    const nlohmann::json arch = metadata_json("architecture");
    if (arch.is_null()) throw bad("__metadata__.architecture is missing");
    // The weights must be in the file, so its data section bounds what compile may allocate.
    Sequential m;
    try {
      m = describe(arch, int64_t(data_size_ / sizeof(float)),
                   "the " + std::to_string(data_size_ / sizeof(float)) + " whose weights fit in the file's " +
                       std::to_string(data_size_) +
                       "-byte data section (more would run past the data section: truncated or forged?)");
    } catch (const Error& e) {
      throw bad("architecture: ", e.what());
    }
    if (!m.compiled()) throw bad("the architecture has no input_shape");
    NamedTensors loaded;
    for (const auto& [name, expected] : m.weights()) loaded.emplace_back(name, tensor(name, expected.shape()));
    m.set_weights(loaded);
    return m;
  }

 private:
  std::string path_, bytes_;
  nlohmann::json header_;
  uint64_t data_begin_ = 0, data_size_ = 0;
};

nlohmann::json history_json(const History& h) {
  auto col = [](const std::vector<double>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (double x : v) a.push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr));
    return a;
  };
  return {{"loss", col(h.loss)},       {"accuracy", col(h.accuracy)}, {"val_loss", col(h.val_loss)},
          {"val_accuracy", col(h.val_accuracy)}, {"seconds", col(h.seconds)}, {"learning_rate", col(h.learning_rate)}};
}

// A checkpoint's history; nothing when it is not an object of arrays.
std::optional<History> history_from_json(const nlohmann::json& j) {
  History h;
  if (!j.is_object()) return std::nullopt;
  bool ok = true;
  auto col = [&](const char* key, std::vector<double>& out) {
    if (!j.contains(key)) return;
    if (!j[key].is_array()) ok = false;
    else for (const auto& x : j[key]) out.push_back(x.is_number() ? x.get<double>() : std::nan(""));
  };
  col("loss", h.loss);
  col("accuracy", h.accuracy);
  col("val_loss", h.val_loss);
  col("val_accuracy", h.val_accuracy);
  col("seconds", h.seconds);
  col("learning_rate", h.learning_rate);
  if (!ok) return std::nullopt;
  return h;
}

}  // namespace

void Sequential::save(const std::string& path) const {
  CNN_CHECK(state_->compiled, "save: compile the model first");
  write_model_file(path, weights(), to_json(), nullptr);
}

Sequential Sequential::load(const std::string& path) { return ModelFile(path).model(); }

void Sequential::save_checkpoint(const std::string& path, const TrainingProgress& progress) const {
  const State& s = *state_;
  CNN_CHECK(s.compiled, "save_checkpoint: compile the model first");
  NamedTensors tensors = weights();
  if (!s.opt_m.empty()) tensors.emplace_back("optimizer.m", s.opt_m.to(Device::CPU));
  if (!s.opt_v.empty()) tensors.emplace_back("optimizer.v", s.opt_v.to(Device::CPU));
  nlohmann::json ckpt = {{"epoch", progress.epoch}, {"optimizer_step", s.step}, {"history", history_json(progress.history)}};
  if (progress.world_size != 1) ckpt["world_size"] = progress.world_size;  // a distributed run's (single: left out)
  write_model_file(path, tensors, to_json(), &ckpt);
}

Sequential Sequential::load_checkpoint(const std::string& path, TrainingProgress* progress) {
  const ModelFile file(path);
  Sequential m = file.model();
  const nlohmann::json ckpt = file.metadata_json("checkpoint");
  if (ckpt.is_null()) throw file.bad("it is a saved model, not a training checkpoint (no __metadata__.checkpoint)");
  State& s = *m.state_;
  try {
    const auto step = json_int(ckpt.at("optimizer_step"), 0, INT64_MAX);
    const auto epoch = json_int(ckpt.at("epoch"), 0, INT_MAX);
    if (!step || !epoch)
      throw file.bad("the checkpoint's epoch ", brief(ckpt.at("epoch")), " and optimizer_step ",
                     brief(ckpt.at("optimizer_step")), " must be non-negative integers");
    const auto history = history_from_json(ckpt.at("history"));
    if (!history) throw file.bad("the checkpoint's history must be an object of arrays");
    const auto world = ckpt.contains("world_size") ? json_int(ckpt.at("world_size"), 1, INT_MAX) : std::optional<int64_t>(1);
    if (!world) throw file.bad("the checkpoint's world_size ", brief(ckpt.at("world_size")), " must be a positive integer");
    s.step = *step;
    if (progress) {
      progress->epoch = int(*epoch);
      progress->history = *history;
      progress->world_size = int(*world);
    }
  } catch (const nlohmann::json::exception& e) {
    throw file.bad("the checkpoint record is incomplete (", e.what(), ")");
  }
  if (!s.opt_m.empty()) s.opt_m.copy_from(file.tensor("optimizer.m", s.opt_m.shape()));
  if (!s.opt_v.empty()) s.opt_v.copy_from(file.tensor("optimizer.v", s.opt_v.shape()));
  return m;
}

void Sequential::restore_checkpoint(const std::string& path, TrainingProgress* progress) {
  Sequential saved = load_checkpoint(path, progress);
  auto layers_of = [](const nlohmann::json& j) { return j.at("layers").dump() + j.at("input_shape").dump(); };
  CNN_CHECK(layers_of(saved.to_json()) == layers_of(to_json()), "resume: the checkpoint '", path,
            "' holds a different architecture than this model");
  set_weights(saved.weights());
  State& s = *state_;
  const State& src = *saved.state_;
  CNN_CHECK(s.opt_m.empty() == src.opt_m.empty() && s.opt_v.empty() == src.opt_v.empty(), "resume: the checkpoint '",
            path, "' was written with a different optimizer (", src.opt.optimizer, ") than this model uses (",
            s.opt.optimizer, ")");
  if (!s.opt_m.empty()) s.opt_m.copy_from(src.opt_m);
  if (!s.opt_v.empty()) s.opt_v.copy_from(src.opt_v);
  s.step = src.step;
}

}  // namespace cnn
