// Model files and checkpoints: round trips, exact resume, and every way a file can be bad.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "test_data_util.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {

std::string temp_path(const std::string& name) { return testing::TempDir() + "/" + name; }

using test::error_of;

Sequential small_model(const std::string& optimizer) {
  Sequential m({Conv2D(4, 3, 1, "same", "relu"), MaxPooling2D(2), Flatten(), Dense(4, "softmax")});
  CompileOptions o;
  o.optimizer = optimizer;
  o.loss = "scce";
  o.learning_rate = optimizer == "adam" ? 0.01f : 0.05f;
  o.momentum = optimizer == "sgd" ? 0.9f : 0.0f;
  o.input_shape = {1, 8, 8};
  m.compile(o);
  return m;
}

class Resume : public ::testing::TestWithParam<const char*> {};

TEST_P(Resume, TwoPlusResumePlusTwoEpochsEqualsFourStraightBitForBit) {
  const auto data = test::make_quadrant_data(96, 1, 8, 8, 11);
  FitOptions f;
  f.batch_size = 16;
  f.verbose = 0;
  f.validation_split = 0.25f;
  f.epochs = 4;
  Sequential straight = small_model(GetParam());
  const History h4 = straight.fit(data.x, data.y, f);

  const std::string ckpt = temp_path(std::string("resume_") + GetParam() + ".ckpt");
  Sequential first = small_model(GetParam());
  f.epochs = 2;
  f.checkpoint_path = ckpt;
  first.fit(data.x, data.y, f);

  Sequential second = small_model(GetParam());  // a fresh process would start like this
  f.epochs = 4;
  f.resume_from = ckpt;
  const History resumed = second.fit(data.x, data.y, f);
  EXPECT_EQ(second.parameters().to_vector(), straight.parameters().to_vector());
  ASSERT_EQ(resumed.epochs(), 4);
  EXPECT_EQ(resumed.loss, h4.loss);
  EXPECT_EQ(resumed.val_accuracy, h4.val_accuracy);

  TrainingProgress p;
  Sequential::load_checkpoint(ckpt, &p);
  EXPECT_EQ(p.epoch, 4);
  EXPECT_EQ(p.history.loss, h4.loss);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, Resume, ::testing::Values("sgd", "adam"));

TEST(ModelFiles, CheckpointLoadsAsAModelAndAModelIsNotACheckpoint) {
  Sequential m = small_model("adam");
  const std::string ckpt = temp_path("plain.ckpt"), model = temp_path("plain.safetensors");
  m.save_checkpoint(ckpt, {1, {}});
  m.save(model);
  EXPECT_EQ(Sequential::load(ckpt).parameters().to_vector(), m.parameters().to_vector());
  EXPECT_NE(error_of([&] { Sequential::load_checkpoint(model); }).find("not a training checkpoint"), std::string::npos);
  Sequential other({Flatten(), Dense(4, "softmax")});
  other.compile("adam", "scce", 0.01f, {1, 8, 8});
  EXPECT_NE(error_of([&] { other.restore_checkpoint(ckpt); }).find("different architecture"), std::string::npos);
}

TEST(ModelFiles, SafetensorsLayoutIsReadableByOtherTools) {
  Sequential m = small_model("sgd");
  const std::string path = temp_path("layout.safetensors");
  m.save(path);
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  in.read(header.data(), std::streamsize(n));
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(j["__metadata__"]["format"], "cnnfromscratch");
  EXPECT_EQ(j["layers.0.conv2d.weight"]["shape"], nlohmann::json({4, 1, 3, 3}));
  EXPECT_EQ(j["layers.0.conv2d.weight"]["dtype"], "F32");
  EXPECT_EQ(j["layers.3.dense.bias"]["shape"], nlohmann::json({4}));
  // The first weight's bytes are the model's first parameter.
  float first = 0;
  in.read(reinterpret_cast<char*>(&first), 4);
  EXPECT_EQ(first, m.weights()[0].second.to_vector()[0]);
}

TEST(ModelFiles, SavingReplacesAtomicallyAndLeavesNoTemporaryFiles) {
  Sequential m = small_model("sgd");
  const std::string dir = temp_path("atomic_dir");
  std::filesystem::create_directories(dir);
  m.save(dir + "/m.safetensors");
  m.save(dir + "/m.safetensors");
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  EXPECT_NE(error_of([&] { m.save(dir + "/missing/sub/m.safetensors"); }).find("cannot save"), std::string::npos);
}

// Writes `bytes` to a file and returns the error loading it gives.
std::string load_error(const std::string& name, const std::string& bytes) {
  const std::string path = temp_path(name);
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  return error_of([&] { Sequential::load(path); });
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string with_header(const nlohmann::json& header, const std::string& data) {
  std::string h = header.dump();
  uint64_t n = h.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + h + data;
}

TEST(ModelFiles, TruncatedOrCorruptFilesRaiseErrorsSayingWhatIsWrong) {
  Sequential m = small_model("sgd");
  const std::string good_path = temp_path("good.safetensors");
  m.save(good_path);
  const std::string good = file_bytes(good_path);
  uint64_t header_len;
  std::memcpy(&header_len, good.data(), 8);
  const auto header = nlohmann::json::parse(good.substr(8, header_len));

  EXPECT_NE(load_error("empty", "").find("shorter than the 8-byte header length"), std::string::npos);
  EXPECT_NE(load_error("trunc_header", good.substr(0, 20)).find("runs past the end of the file"), std::string::npos);
  EXPECT_NE(load_error("trunc_data", good.substr(0, good.size() - 10)).find("past the data section"), std::string::npos);
  std::string huge = good;
  const uint64_t big = uint64_t(1) << 60;
  std::memcpy(huge.data(), &big, 8);
  EXPECT_NE(load_error("huge_header", huge).find("exceeds the limit"), std::string::npos);
  std::string garbage = good;
  garbage[8] = '#';
  EXPECT_NE(load_error("bad_json", garbage).find("header is not valid JSON"), std::string::npos);
  nlohmann::json foreign = header;
  foreign.erase("__metadata__");
  EXPECT_NE(load_error("foreign", with_header(foreign, good.substr(8 + header_len))).find("no \"__metadata__\""),
            std::string::npos);
  nlohmann::json missing = header;
  missing.erase("layers.3.dense.bias");
  EXPECT_NE(load_error("missing", with_header(missing, good.substr(8 + header_len))).find("'layers.3.dense.bias' is missing"),
            std::string::npos);
  nlohmann::json reshaped = header;
  reshaped["layers.3.dense.bias"]["shape"] = {2, 2};
  EXPECT_NE(load_error("reshaped", with_header(reshaped, good.substr(8 + header_len))).find("has shape [2, 2]"),
            std::string::npos);
  nlohmann::json offsets = header;
  offsets["layers.3.dense.bias"]["data_offsets"] = {0, uint64_t(1) << 40};
  EXPECT_NE(load_error("offsets", with_header(offsets, good.substr(8 + header_len))).find("spans"), std::string::npos);
  nlohmann::json newer = header;
  newer["__metadata__"]["format_version"] = "99";
  EXPECT_NE(load_error("newer", with_header(newer, good.substr(8 + header_len))).find("format_version 99 is not supported"),
            std::string::npos);
  EXPECT_NE(error_of([] { Sequential::load("/nonexistent/model.safetensors"); }).find("does not exist"), std::string::npos);
}

TEST(ModelJson, HostileOrMistypedDescriptionsAreRefusedClearly) {
  using nlohmann::json;
  auto err = [](const json& j) { return error_of([&] { Sequential::from_json(j); }); };
  EXPECT_NE(err(json::array()).find("must be an object"), std::string::npos);
  EXPECT_NE(err({{"layers", json::array()}}).find("non-empty array"), std::string::npos);
  EXPECT_NE(err({{"layers", {{{"type", "Conv3D"}}}}}).find("unknown layer type 'Conv3D'"), std::string::npos);
  EXPECT_NE(err({{"layers", {{{"type", "Dense"}, {"units", -5}}}}}).find("units must be positive"), std::string::npos);
  EXPECT_NE(err({{"layers", {{{"type", "Dense"}, {"unit", 5}}}}}).find("unknown option \"unit\""), std::string::npos);
  EXPECT_NE(err({{"layerz", 1}}).find("unknown key \"layerz\""), std::string::npos);
  json many = {{"layers", json::array()}};
  for (int i = 0; i < 10001; ++i) many["layers"].push_back({{"type", "Flatten"}});
  EXPECT_NE(err(many).find("more than the 10000 allowed"), std::string::npos);
  EXPECT_NE(err({{"input_shape", {3, -32, 32}}, {"layers", {{{"type", "Flatten"}}}}}).find("positive integers"),
            std::string::npos);
}

}  // namespace
}  // namespace cnn
