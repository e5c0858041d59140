// Hostile inputs: every reader of outside bytes refuses absurd sizes, offsets and values with a
// cnn::Error that says what is wrong, before allocating for them. Where the platform allows,
// the refusals run under an address-space limit a few hundred MiB above what the process
// uses, so that an allocation made before the check would fail the test instead of passing
// unnoticed (not under sanitizers or valgrind, which reserve large address ranges).
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "cnn/data.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Caps the address space at the current size plus `headroom` for the object's lifetime.
class AddressSpaceLimit {
 public:
  explicit AddressSpaceLimit(size_t headroom) {
    const char* preload = std::getenv("LD_PRELOAD");
    if (kSanitized || (preload != nullptr && std::strstr(preload, "vgpreload") != nullptr)) return;
    size_t pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%zu", &pages) != 1) pages = 0;
      std::fclose(f);
    }
    if (pages == 0 || ::getrlimit(RLIMIT_AS, &old_) != 0) return;
    rlimit lim = old_;
    lim.rlim_cur = rlim_t(pages) * rlim_t(::sysconf(_SC_PAGESIZE)) + headroom;
    if (old_.rlim_max != RLIM_INFINITY && lim.rlim_cur > old_.rlim_max) return;
    active_ = ::setrlimit(RLIMIT_AS, &lim) == 0;
  }
  ~AddressSpaceLimit() {
    if (active_) ::setrlimit(RLIMIT_AS, &old_);
  }
  AddressSpaceLimit(const AddressSpaceLimit&) = delete;
  AddressSpaceLimit& operator=(const AddressSpaceLimit&) = delete;

 private:
  rlimit old_{};
  bool active_ = false;
};

constexpr size_t kHeadroom = size_t(512) << 20;

// Runs f under the address-space limit; returns the cnn::Error's message. Any other exception
// (std::bad_alloc from an allocation made before a check, a JSON library exception) fails.
std::string refusal(const std::function<void()>& f) {
  AddressSpaceLimit limit(kHeadroom);
  return test::error_of(f);
}

fs::path temp_file(const std::string& name) {
  const fs::path dir = fs::path(testing::TempDir()) / ("robustness_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// ---- Model files ----------------------------------------------------------------------------------

struct ModelBytes {
  json header;
  std::string data;
};

ModelBytes saved_model_bytes(bool checkpoint = false) {
  Sequential m({Flatten(), Dense(4, "relu"), Dense(2, "softmax")});
  CompileOptions o;
  o.optimizer = "adam";
  o.input_shape = {1, 4, 4};
  m.compile(o);
  const fs::path path = temp_file("base.safetensors");
  if (checkpoint) m.save_checkpoint(path.string(), {2, {}});
  else m.save(path.string());
  const std::string bytes = file_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

std::string model_file(const json& header, const std::string& data) {
  const std::string h = header.dump();
  const uint64_t n = h.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + h + data;
}

// The error loading `bytes` as a model file (and as a checkpoint when asked).
std::string load_refusal(const std::string& bytes, bool as_checkpoint = false) {
  const fs::path path = temp_file("hostile.safetensors");
  write_bytes(path, bytes);
  return refusal([&] {
    if (as_checkpoint) Sequential::load_checkpoint(path.string());
    else Sequential::load(path.string());
  });
}

TEST(RobustModelFiles, HeaderClaimingHugeLayersIsRefusedBeforeAllocating) {
  const ModelBytes good = saved_model_bytes();
  for (const auto& [layer, units] : {std::pair{1, int64_t(1) << 30}, std::pair{2, int64_t(INT32_MAX)}}) {
    ModelBytes bad = good;
    json arch = json::parse(bad.header["__metadata__"]["architecture"].get<std::string>());
    arch["layers"][layer]["units"] = units;
    bad.header["__metadata__"]["architecture"] = arch.dump();
    // The tensors claim to match, with offsets far past the end.
    const std::string name = "layers." + std::to_string(layer) + ".dense.weight";
    const int64_t in = layer == 1 ? 16 : 4;
    bad.header[name]["shape"] = {units, in};
    bad.header[name]["data_offsets"] = {0, uint64_t(units) * uint64_t(in) * 4};
    const std::string msg = load_refusal(model_file(bad.header, bad.data));
    EXPECT_CONTAINS(msg, "not a valid model file");
    EXPECT_CONTAINS(msg, "past the data section");
    EXPECT_CONTAINS(msg, "refused before allocating");
  }
}

TEST(RobustModelFiles, ConvolutionClaimingHugeFiltersAndKernelsIsRefused) {
  ModelBytes m = saved_model_bytes();
  json arch = json::parse(m.header["__metadata__"]["architecture"].get<std::string>());
  arch["input_shape"] = {3, 8, 8};
  arch["layers"].insert(arch["layers"].begin(), json{{"type", "Conv2D"},
                                                     {"filters", INT32_MAX},
                                                     {"kernel_size", {65536, 65536}},
                                                     {"padding", "same"}});
  m.header["__metadata__"]["architecture"] = arch.dump();
  const std::string msg = load_refusal(model_file(m.header, m.data));
  EXPECT_CONTAINS(msg, "refused before allocating");
}

TEST(RobustModelFiles, TensorOffsetsPastTheEndOrWrappingAreRefused) {
  const ModelBytes good = saved_model_bytes();
  const std::string name = "layers.1.dense.weight";  // [4, 16]: 256 bytes
  ModelBytes far = good;
  far.header[name]["data_offsets"] = {uint64_t(1) << 40, (uint64_t(1) << 40) + 256};
  EXPECT_CONTAINS(load_refusal(model_file(far.header, far.data)), "past the data section");
  ModelBytes wrap = good;
  wrap.header[name]["data_offsets"] = {UINT64_MAX - 127, 128};  // begin + 256 wraps around to 128
  EXPECT_CONTAINS(load_refusal(model_file(wrap.header, wrap.data)), "spans");
  ModelBytes negative = good;
  negative.header[name]["data_offsets"] = {-256, 0};
  EXPECT_CONTAINS(load_refusal(model_file(negative.header, negative.data)), "no valid data_offsets");
  ModelBytes huge_shape = good;
  huge_shape.header[name]["shape"] = {1e300, 16};
  EXPECT_CONTAINS(load_refusal(model_file(huge_shape.header, huge_shape.data)), "no valid shape");
  // The header length itself: larger than the file, and larger than the limit.
  std::string file = model_file(good.header, good.data);
  const uint64_t too_long = file.size();
  std::memcpy(file.data(), &too_long, 8);
  EXPECT_CONTAINS(load_refusal(file), "runs past the end of the file");
  const uint64_t absurd = UINT64_MAX;
  std::memcpy(file.data(), &absurd, 8);
  EXPECT_CONTAINS(load_refusal(file), "exceeds the limit");
}

TEST(RobustModelFiles, MistypedHeaderFieldsAreRefusedWithCnnErrors) {
  const ModelBytes good = saved_model_bytes();
  ModelBytes b = good;
  b.header["__metadata__"]["format"] = 7;
  EXPECT_CONTAINS(load_refusal(model_file(b.header, b.data)), "__metadata__.format is not");
  b = good;
  b.header["__metadata__"]["format_version"] = 1;  // a number, not the string "1"
  EXPECT_CONTAINS(load_refusal(model_file(b.header, b.data)), "is not supported");
  b = good;
  b.header["layers.2.dense.bias"]["dtype"] = json::array();
  EXPECT_CONTAINS(load_refusal(model_file(b.header, b.data)), "must have dtype F32");
  b = good;
  b.header["__metadata__"]["architecture"] = "{\"layers\": [1e999]}";
  EXPECT_CONTAINS(load_refusal(model_file(b.header, b.data)), "architecture is not valid JSON");
  // A number too large for a double in the header itself.
  std::string h = good.header.dump();
  h.insert(1, "\"x\": 1e999, ");
  std::string length(8, '\0');
  const uint64_t n = h.size();
  std::memcpy(length.data(), &n, 8);
  EXPECT_CONTAINS(load_refusal(length + h + good.data), "header is not valid JSON");
}

TEST(RobustModelFiles, CheckpointRecordMustHoldNonNegativeIntegersAndArrays) {
  const ModelBytes good = saved_model_bytes(true);
  const json record = json::parse(good.header["__metadata__"]["checkpoint"].get<std::string>());
  auto with_record = [&](const json& r) {
    ModelBytes b = good;
    b.header["__metadata__"]["checkpoint"] = r.dump();
    return load_refusal(model_file(b.header, b.data), true);
  };
  for (const json& epoch : {json(1e300), json(-1), json("2"), json(uint64_t(1) << 40)}) {
    json r = record;
    r["epoch"] = epoch;
    EXPECT_CONTAINS(with_record(r), "must be non-negative integers");
  }
  json r = record;
  r["optimizer_step"] = -5;
  EXPECT_CONTAINS(with_record(r), "must be non-negative integers");
  r = record;
  r["history"] = 3;
  EXPECT_CONTAINS(with_record(r), "history must be an object of arrays");
  r = record;
  r["history"]["loss"] = "high";
  EXPECT_CONTAINS(with_record(r), "history must be an object of arrays");
  r = record;
  r.erase("optimizer_step");
  EXPECT_CONTAINS(with_record(r), "incomplete");
}

// ---- Model JSON --------------------------------------------------------------------------------------

std::string json_refusal(const json& j) {
  return refusal([&] { Sequential::from_json(j); });
}

json one_layer(const json& layer, const json& input_shape = {1, 8, 8}) {
  return {{"input_shape", input_shape}, {"layers", {layer, {{"type", "Flatten"}}, {{"type", "Dense"}, {"units", 2}, {"activation", "softmax"}}}}};
}

TEST(RobustModelJson, MillionLayersAreRefusedBeforeBuildingAny) {
  json j = {{"layers", json::array()}};
  j["layers"].get_ref<json::array_t&>().resize(1000000);  // nulls: the count is checked first
  EXPECT_CONTAINS(json_refusal(j), "1000000 layers is more than the 10000 allowed");
  // The same from a file.
  std::string text = "{\"layers\": [";
  for (int i = 0; i < 1000000; ++i) text += i ? ",{}" : "{}";
  text += "]}";
  const fs::path path = temp_file("million.json");
  write_bytes(path, text);
  EXPECT_CONTAINS(refusal([&] { Sequential::from_json_file(path.string()); }), "more than the 10000 allowed");
}

TEST(RobustModelJson, NegativeAndZeroSizesAreRefused) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"type", "Conv2D"}, {"filters", -1}}, "filters must be positive"},
      {{{"type", "Conv2D"}, {"filters", 0}}, "filters must be positive"},
      {{{"type", "Conv2D"}, {"filters", 2}, {"kernel_size", -3}}, "kernel_size must be positive"},
      {{{"type", "Conv2D"}, {"filters", 2}, {"kernel_size", {3, 0}}}, "kernel_size must be positive"},
      {{{"type", "Conv2D"}, {"filters", 2}, {"strides", 0}}, "strides must be positive"},
      {{{"type", "MaxPooling2D"}, {"pool_size", -2}}, "pool_size must be positive"},
      {{{"type", "AveragePooling2D"}, {"strides", {1, -1}}}, "strides must be positive"},
      {{{"type", "Dense"}, {"units", 0}}, "units must be positive"},
      {{{"type", "Dense"}, {"units", INT64_MIN}}, "out of range"},
  };
  for (const auto& [layer, expected] : cases) EXPECT_CONTAINS(json_refusal(one_layer(layer)), expected);
  for (const json& shape : {json{0}, json{1, -8, 8}, json{1, 8, 8, 8, 8}, json{2.5}})
    EXPECT_CONTAINS(json_refusal(one_layer({{"type", "Activation"}}, shape)), "input_shape");
}

TEST(RobustModelJson, SizesBeyondIntAreRefusedNotWrappedAround) {
  // 2^32 + 4 used to be read as 4.
  EXPECT_CONTAINS(json_refusal(one_layer({{"type", "Conv2D"}, {"filters", (int64_t(1) << 32) + 4}})), "out of range");
  EXPECT_CONTAINS(json_refusal(one_layer({{"type", "Dense"}, {"units", (int64_t(1) << 32) + 2}}, {8})), "out of range");
  EXPECT_CONTAINS(json_refusal(one_layer({{"type", "MaxPooling2D"}, {"pool_size", {2, (int64_t(1) << 32) + 2}}})),
                  "out of range");
  EXPECT_CONTAINS(json_refusal(one_layer({{"type", "Conv2D"}, {"filters", 1}, {"kernel_size", 70000}})),
                  "out of range");
}

TEST(RobustModelJson, HugeArchitecturesAreRefusedBeforeAllocating) {
  // A billion weights.
  std::string msg = json_refusal(
      {{"input_shape", {3, 32, 32}}, {"layers", {{{"type", "Flatten"}}, {{"type", "Dense"}, {"units", 400000}}}}});
  EXPECT_CONTAINS(msg, "parameters, more than the 67108864 a model description may ask for");
  EXPECT_CONTAINS(msg, "refused before allocating");
  // Filters x kernel area beyond 2^63.
  msg = json_refusal(one_layer(
      {{"type", "Conv2D"}, {"filters", INT32_MAX}, {"kernel_size", 65536}, {"padding", "same"}}, {3, 1, 1}));
  EXPECT_CONTAINS(msg, "refused before allocating");
  // Per-sample sizes beyond what the kernels index.
  EXPECT_CONTAINS(json_refusal(one_layer({{"type", "Activation"}}, {1 << 20, 1 << 20, 4})), "values per sample");
  EXPECT_CONTAINS(json_refusal(one_layer({{"type", "Conv2D"}, {"filters", 1 << 20}, {"padding", "same"}}, {1, 4096, 4096})),
                  "per sample, more than");
  EXPECT_CONTAINS(json_refusal(one_layer({{"type", "Activation"}}, {(int64_t(1) << 31) + 1, 1, 1})),
                  "values per sample");
}

TEST(RobustModelJson, DeepNestingIsRefusedWithoutRecursing) {
  // 200,000 nested arrays: printing or comparing them recursively would overflow the stack.
  const int depth = 200000;
  const std::string deep = std::string(size_t(depth), '[') + std::string(size_t(depth), ']');
  const std::string text = "{\"layers\": [" + deep + "]}";
  const fs::path path = temp_file("deep.json");
  write_bytes(path, text);
  EXPECT_CONTAINS(refusal([&] { Sequential::from_json_file(path.string()); }), "nested more than 64 levels");
  EXPECT_CONTAINS(json_refusal(json::parse(text)), "nested more than 64 levels");
  json description = one_layer({{"type", "Activation"}});
  description["name"] = json::parse(deep);
  EXPECT_CONTAINS(json_refusal(description), "nested more than 64 levels");
}

TEST(RobustModelJson, NumbersOutOfRangeAreRefused) {
  json j = one_layer({{"type", "Activation"}});
  j["compile"] = {{"learning_rate", 1e39}};
  EXPECT_CONTAINS(json_refusal(j), "\"learning_rate\" must be a finite number");
  for (const json& seed : {json(-1), json(1.5), json(1e300)}) {
    j["compile"] = {{"seed", seed}};
    EXPECT_CONTAINS(json_refusal(j), "\"seed\" must be a non-negative integer");
  }
  EXPECT_CONTAINS(json_refusal(one_layer({{"type", "Activation"}, {"activation", "leaky_relu"}, {"alpha", 1e39}})),
                  "must be a finite number");
  j = one_layer({{"type", "Activation"}});
  j["format_version"] = (uint64_t(1) << 32) + 1;  // used to be read as 1
  EXPECT_CONTAINS(json_refusal(j), "newer than this library reads");
  const fs::path path = temp_file("overflow.json");
  write_bytes(path, R"({"layers": [{"type": "Dense", "units": 1e999}]})");
  EXPECT_CONTAINS(refusal([&] { Sequential::from_json_file(path.string()); }), "is not valid JSON");
}

TEST(RobustModelJson, ShippedDescriptionsStillLoadAndRoundTrip) {
  for (const auto& e : fs::directory_iterator(fs::path(CNN_SOURCE_DIR) / "models")) {
    if (e.path().extension() != ".json") continue;
    Sequential m = Sequential::from_json_file(e.path().string());
    EXPECT_EQ(Sequential::from_json(m.to_json()).to_json(), m.to_json()) << e.path();
  }
}

// ---- Images ---------------------------------------------------------------------------------------

std::string be32(uint32_t v) { return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; }

// A PNG signature and IHDR for w x h 8-bit RGBA, then `rest`.
std::string png_header(uint32_t w, uint32_t h) {
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + "IHDR" + be32(w) + be32(h) + std::string("\x08\x06\0\0\0", 5) +
         be32(0);
}

void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
}

std::string tiny_png() {
  const unsigned char rgb[12] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
  std::string png;
  stbi_write_png_to_func(append_bytes, &png, 2, 2, 3, rgb, 6);
  return png;
}

TEST(RobustImages, TinyFilesClaimingHugeSizesAreRefusedBeforeDecoding) {
  // JPEG: SOI, then a baseline frame header claiming 65535 x 65535 (the format's largest) and
  // 16000 x 16000 pixels (within the side limits, but 20 bytes cannot hold them).
  for (const uint32_t side : {65535u, 16000u}) {
    std::string jpg = "\xFF\xD8\xFF\xC0";
    jpg += std::string("\x00\x11\x08", 3) + char(side >> 8) + char(side) + char(side >> 8) + char(side);
    jpg += std::string("\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01", 10);
    const fs::path path = temp_file("huge.jpg");
    write_bytes(path, jpg);
    const std::string msg = refusal([&] { load_image(path.string(), 3); });
    EXPECT_CONTAINS(msg, "huge.jpg");
    EXPECT_CONTAINS(msg, std::to_string(side) + "x" + std::to_string(side));
    EXPECT_CONTAINS(msg, "refused before decoding");
  }
  // PNG: 16384 x 16384 RGBA (1 GiB decoded, 4 GiB as floats) in a 70-byte file.
  const fs::path path = temp_file("huge.png");
  write_bytes(path, png_header(16384, 16384) + be32(0) + "IEND" + be32(0));
  for (const auto& f : std::vector<std::function<void()>>{[&] { load_image(path.string(), 3); },
                                                          [&] { load_image(path.string(), 1, 8, 8); }}) {
    const std::string msg = refusal(f);
    EXPECT_CONTAINS(msg, "16384x16384");
    EXPECT_CONTAINS(msg, "truncated or corrupt; refused before decoding");
  }
}

std::string tiny_jpeg() {
  std::vector<unsigned char> rgb(8 * 8 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = (unsigned char)(i * 7);
  std::string jpg;
  stbi_write_jpg_to_func(append_bytes, &jpg, 8, 8, 3, rgb.data(), 90);
  return jpg;
}

// stb_image 2.27 (Debian 12) overruns a Huffman table given more than 256 codes, and decodes
// with uninitialised tables when a scan names one no DHT segment defined (reads out of bounds,
// or its assert aborts the process): the loader refuses both before stb_image sees the file.
TEST(RobustImages, CorruptJpegHuffmanTablesAreRefusedBeforeDecoding) {
  const std::string good = tiny_jpeg();
  const fs::path path = temp_file("huffman.jpg");
  write_bytes(path, good);
  EXPECT_EQ(load_image(path.string(), 3).shape(), (Shape{1, 3, 8, 8}));
  const size_t dht = good.find("\xFF\xC4"), sos = good.find("\xFF\xDA");
  ASSERT_NE(dht, std::string::npos);
  ASSERT_NE(sos, std::string::npos);
  ASSERT_EQ(good[dht + 4], '\0');  // the first table: DC 0, 12 codes, none of 16 bits
  std::string over = good;
  over[dht + 4 + 16] = char(250);  // 250 codes of 16 bits more
  write_bytes(path, over);
  std::string msg = refusal([&] { load_image(path.string(), 3, 4, 4); });
  EXPECT_CONTAINS(msg, "huffman.jpg is a corrupt JPEG: a Huffman table holds 262 codes (at most 256)");
  std::string undefined = good;
  undefined[sos + 6] = char(0x22);  // the first component decodes with tables DC 2 and AC 2
  write_bytes(path, undefined);
  msg = refusal([&] { load_image(path.string(), 3, 4, 4); });
  EXPECT_CONTAINS(msg, "a scan uses a Huffman table that no DHT segment defines");
}

TEST(RobustImages, PngChunkClaimingMoreThanTheFileIsRefused) {
  std::string png = tiny_png();
  // After the IHDR chunk (8 + 25 bytes): an IDAT claiming 2 GiB, for which stb_image would
  // allocate before finding the file ends.
  png.insert(33, be32(0x7FFFFFF0) + "IDAT");
  const fs::path path = temp_file("chunk.png");
  write_bytes(path, png);
  const std::string msg = refusal([&] { load_image(path.string(), 3, 2, 2); });
  EXPECT_CONTAINS(msg, "'IDAT' chunk at byte 33 claims 2147483632 bytes");
  EXPECT_CONTAINS(msg, "truncated or corrupt");
  write_bytes(path, tiny_png());
  EXPECT_EQ(load_image(path.string(), 3).shape(), (Shape{1, 3, 2, 2}));  // the intact file loads
}

TEST(RobustImages, TruncatedBmpIsRefusedNotDecodedAsBlack) {
  // A 54-byte BMP claiming 600 x 600 24-bit pixels (1 MB), which stb_image decodes as black.
  std::string bmp = "BM";
  auto le32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) bmp += char(v >> (8 * i));
  };
  le32(54);
  le32(0);
  le32(54);
  le32(40);
  le32(600);
  le32(600);
  bmp += std::string("\x01\x00\x18\x00", 4);
  for (int i = 0; i < 6; ++i) le32(0);
  const fs::path path = temp_file("class") / "a" / "short.bmp";
  write_bytes(path, bmp);
  std::string msg = refusal([&] { load_image(path.string(), 3, 4, 4); });
  EXPECT_CONTAINS(msg, "short.bmp");
  EXPECT_CONTAINS(msg, "600x600 BMP that needs 1080054 bytes, but the file has 54");
  msg = refusal([&] { load_image_folder(path.parent_path().parent_path().string(), 3, 4, 4); });
  EXPECT_CONTAINS(msg, "truncated");
  // With its pixels it loads.
  bmp.append(600 * 1800, '\x7f');
  write_bytes(path, bmp);
  EXPECT_FLOAT_EQ(load_image(path.string(), 3, 4, 4).at({0, 1, 2, 3}), 127 / 255.0f);
}

TEST(RobustImages, OnlyPngJpegAndBmpContentIsDecoded) {
  // A valid 1x1 GIF and a valid PGM under image names: stb_image would decode both.
  const std::string gif("GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00"
                        "\x00\x02\x02\x44\x01\x00;",
                        35);
  const std::string pgm = "P5 2 2 255\n\x10\x20\x30\x40";
  for (const auto& [name, bytes] : {std::pair{"gif.png", gif}, std::pair{"pgm.jpg", pgm}}) {
    const fs::path path = temp_file(name);
    write_bytes(path, bytes);
    const std::string msg = refusal([&] { load_image(path.string(), 3); });
    EXPECT_CONTAINS(msg, name);
    EXPECT_CONTAINS(msg, "is not a readable PNG/JPEG/BMP image");
  }
}

// ---- MNIST ------------------------------------------------------------------------------------------

std::string idx(uint32_t magic, const std::vector<uint32_t>& dims, const std::string& payload) {
  std::string s = be32(magic);
  for (uint32_t d : dims) s += be32(d);
  return s + payload;
}

TEST(RobustMnist, PlainFilesClaimingBillionsOfImagesAreRefusedFromTheirSize) {
  const fs::path dir = temp_file("mnist_huge");
  fs::create_directories(dir);
  write_bytes(dir / "train-images-idx3-ubyte", idx(0x803, {2000000000u, 28, 28}, std::string(784, '\1')));
  write_bytes(dir / "train-labels-idx1-ubyte", idx(0x801, {2000000000u}, std::string(1, '\1')));
  write_bytes(dir / "t10k-images-idx3-ubyte", idx(0x803, {1, 28, 28}, std::string(784, '\1')));
  write_bytes(dir / "t10k-labels-idx1-ubyte", idx(0x801, {1}, std::string(1, '\1')));
  std::string msg = refusal([&] { load_mnist(dir.string()); });
  EXPECT_CONTAINS(msg, "train-images-idx3-ubyte has 800 bytes, expected 1568000000016 (the file is truncated)");
  write_bytes(dir / "train-images-idx3-ubyte", idx(0x803, {1, 100000, 100000}, std::string(784, '\1')));
  msg = refusal([&] { load_mnist(dir.string()); });
  EXPECT_CONTAINS(msg, "100000x100000 pixels");
}

}  // namespace
}  // namespace cnn
