// TensorBoard event files (src/host/io/tensorboard.hpp, the tensorboard() callback): CRC-32C
// against RFC 3720's vectors, the TFRecord framing against bytes TensorBoard's own Python
// RecordWriter wrote, records parsed back here by an independent reader, a writer killed
// mid-run, a cut-short last record, appending to a run directory, and the callback's scalars
// compared with fit's History. The real reader (TensorBoard's) is the interop test
// tests/interop/check_tensorboard.py.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cnn/cnn.hpp"
#include "cnn/pictures.hpp"
#include "host/io/tensorboard.hpp"
#include "cli_runner.hpp"
#include "test_data_util.hpp"

#if CNN_WITH_PROTOBUF
#include "tensorboard/compat/proto/event.pb.h"
#endif

namespace fs = std::filesystem;

namespace cnn {
namespace {

using tfevents::crc32c;
using tfevents::frame_record;
using tfevents::mask_crc;

TEST(TensorBoardCrc32c, MatchesRfc3720Vectors) {
  // RFC 3720 appendix B.4, and the usual check value of "123456789".
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending(32, '\0'), descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[size_t(i)] = char(i);
    descending[size_t(i)] = char(31 - i);
  }
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(crc32c(descending), 0x113FDB5Cu);
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
}

TEST(TensorBoardCrc32c, ContinuesAnEarlierValue) {
  const std::string a = "event files are ", b = "TFRecords";
  EXPECT_EQ(crc32c(b, crc32c(a)), crc32c(a + b));
}

TEST(TensorBoardFraming, MatchesTensorBoardsRecordWriter) {
  // tensorboard.summary.writer.record_writer.RecordWriter(...).write(b"hello") (TensorBoard
  // 2.21) wrote exactly these bytes: length 5, masked CRC of the length, data, masked CRC.
  const unsigned char expected[] = {0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xea, 0xb2, 0x04,
                                    0x3e, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0xbb, 0x1f, 0x1c, 0x19};
  EXPECT_EQ(frame_record("hello"), std::string(reinterpret_cast<const char*>(expected), sizeof expected));
  // Its masked_crc32c of the 8-byte header of an empty record.
  EXPECT_EQ(mask_crc(crc32c(std::string(8, '\0'))), 0x07980329u);
}

// ---- An independent reader: the records of a file, and how it ends ----------------------
uint64_t get_le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | uint8_t(s[at + size_t(i)]);
  return v;
}

struct Records {
  std::vector<std::string> data;
  bool truncated = false;  // the file ends inside a record
  bool corrupt = false;    // a CRC does not match
};

Records parse_records(const std::string& file) {
  Records r;
  size_t at = 0;
  while (at < file.size()) {
    if (file.size() - at < 12) return r.truncated = true, r;
    const uint64_t length = get_le(file, at, 8);
    if (uint32_t(get_le(file, at + 8, 4)) != mask_crc(crc32c(std::string_view(file).substr(at, 8))))
      return r.corrupt = true, r;
    if (file.size() - at - 12 < length + 4) return r.truncated = true, r;
    const std::string data = file.substr(at + 12, length);
    if (uint32_t(get_le(file, at + 12 + length, 4)) != mask_crc(crc32c(data))) return r.corrupt = true, r;
    r.data.push_back(data);
    at += 12 + length + 4;
  }
  return r;
}

// Records framed here parse back; a flipped byte anywhere in a record is caught by a CRC.
TEST(TensorBoardFraming, RecordsParseBackAndFlippedBytesAreCaught) {
  const std::vector<std::string> data = {"", "a", std::string(300, 'x'), std::string("\0\xff\n", 3)};
  std::string file;
  for (const auto& d : data) file += frame_record(d);
  const Records r = parse_records(file);
  EXPECT_FALSE(r.truncated || r.corrupt);
  EXPECT_EQ(r.data, data);
  const size_t last = file.size() - frame_record(data.back()).size();
  for (size_t at = last; at < file.size(); ++at) {
    std::string bad = file;
    bad[at] = char(bad[at] ^ 0x10);
    const Records b = parse_records(bad);
    // A flipped length byte may also read as a record running past the end.
    EXPECT_TRUE(b.corrupt || (at < last + 8 && b.truncated)) << "byte " << at;
    EXPECT_EQ(b.data.size(), 3u) << "byte " << at;
  }
}

TEST(TensorBoardCli, ImageAndEveryFlagsNeedTheFolder) {
  for (const char* flag : {"--tensorboard-every 2", "--tensorboard-images"}) {
    const cli_test::Result r = cli_test::cnn("train --model " CNN_SOURCE_DIR "/models/lenet5.json " + std::string(flag));
    EXPECT_EQ(r.code, 2) << cli_test::show(r);
    EXPECT_NE(r.err.find("need --tensorboard DIR"), std::string::npos) << cli_test::show(r);
  }
}

#if CNN_WITH_PROTOBUF

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh folder per test, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() /
           ("cnn_tb_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<fs::path> event_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with("events.out.tfevents.")) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

::tensorboard::Event parse_event(const std::string& data) {
  ::tensorboard::Event e;
  EXPECT_TRUE(e.ParseFromString(data));
  return e;
}

// tag -> (step, value) of every simple_value in the records after the file_version one.
std::map<std::string, std::vector<std::pair<int64_t, float>>> scalars_of(const Records& r) {
  std::map<std::string, std::vector<std::pair<int64_t, float>>> out;
  for (size_t i = 1; i < r.data.size(); ++i) {
    const ::tensorboard::Event e = parse_event(r.data[i]);
    for (const auto& v : e.summary().value())
      if (v.value_case() == ::tensorboard::Summary::Value::kSimpleValue) out[v.tag()].emplace_back(e.step(), v.simple_value());
  }
  return out;
}

TEST(TensorBoardWriter, WritesFileVersionThenSummaries) {
  TempDir dir;
  std::string path;
  {
    tfevents::EventWriter w((dir.path / "run").string());
    path = w.path();
    w.scalar("a/b", 7, 0.25);
    w.text("t", 0, "hello *markdown*");
    w.image("img", 3, Image(5, 4, colors::validation));
    w.sync();
  }
  EXPECT_TRUE(fs::path(path).filename().string().ends_with(".cnn")) << path;
  const Records r = parse_records(read_bytes(path));
  ASSERT_FALSE(r.truncated || r.corrupt);
  ASSERT_EQ(r.data.size(), 4u);
  const auto first = parse_event(r.data[0]);
  EXPECT_EQ(first.file_version(), "brain.Event:2");
  EXPECT_GT(first.wall_time(), 1.5e9);  // seconds since 1970: after 2017

  const auto scalar = parse_event(r.data[1]);
  EXPECT_EQ(scalar.step(), 7);
  ASSERT_EQ(scalar.summary().value_size(), 1);
  EXPECT_EQ(scalar.summary().value(0).tag(), "a/b");
  EXPECT_EQ(scalar.summary().value(0).simple_value(), 0.25f);
  EXPECT_GE(scalar.wall_time(), first.wall_time());

  const ::tensorboard::Event text_event = parse_event(r.data[2]);
  const auto& text = text_event.summary().value(0);
  EXPECT_EQ(text.metadata().plugin_data().plugin_name(), "text");
  EXPECT_EQ(text.tensor().dtype(), ::tensorboard::DT_STRING);
  EXPECT_EQ(text.tensor().tensor_shape().dim_size(), 0);
  ASSERT_EQ(text.tensor().string_val_size(), 1);
  EXPECT_EQ(text.tensor().string_val(0), "hello *markdown*");

  const ::tensorboard::Event image_event = parse_event(r.data[3]);
  const auto& img = image_event.summary().value(0).image();
  EXPECT_EQ(img.width(), 5);
  EXPECT_EQ(img.height(), 4);
  EXPECT_EQ(img.colorspace(), 3);
  EXPECT_EQ(img.encoded_image_string().substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

// Every prefix of a file that cuts its last record short still parses to the records before it.
TEST(TensorBoardWriter, CutShortLastRecordLeavesTheEarlierOnes) {
  TempDir dir;
  std::string path;
  {
    tfevents::EventWriter w(dir.path.string());
    path = w.path();
    for (int i = 0; i < 5; ++i) w.scalar("x", i, i * 0.5);
  }
  const std::string file = read_bytes(path);
  const Records whole = parse_records(file);
  ASSERT_EQ(whole.data.size(), 6u);
  const size_t last_size = whole.data.back().size() + 16;
  for (size_t cut = 1; cut < last_size; ++cut) {
    const Records r = parse_records(file.substr(0, file.size() - cut));
    EXPECT_TRUE(r.truncated) << "cut " << cut;
    EXPECT_FALSE(r.corrupt) << "cut " << cut;
    ASSERT_EQ(r.data.size(), 5u) << "cut " << cut;
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(r.data[i], whole.data[i]);
  }
}

// A writer killed (SIGKILL) at a random moment: every complete record reads back, in order.
// Each record is one write(), but Linux may stop a write to a regular file at a page boundary
// when a fatal signal arrives, so the last record may be cut short (never corrupt).
TEST(TensorBoardWriter, KilledMidRunLeavesCompleteRecords) {
  TempDir dir;
  fs::create_directories(dir.path);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // never returns into the test runner
    try {
      tfevents::EventWriter w(dir.path.string());
      for (int64_t i = 0;; ++i) w.scalar("x", i, double(i));
    } catch (...) {
    }
    ::_exit(1);
  }
  // Killed once it has written a few hundred records (polling, so a slow run under valgrind
  // waits as long as it needs; 20 s at most).
  for (int i = 0; i < 2000; ++i) {
    std::error_code ec;
    uintmax_t size = 0;
    for (const auto& e : fs::directory_iterator(dir.path, ec)) size += fs::file_size(e.path(), ec);
    if (size >= 8192) break;
    ::usleep(10 * 1000);
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  const auto files = event_files(dir.path);
  ASSERT_EQ(files.size(), 1u);
  const Records r = parse_records(read_bytes(files[0]));
  EXPECT_FALSE(r.corrupt);
  ASSERT_GE(r.data.size(), 100u);  // 8 KB of ~30-byte records
  const auto x = scalars_of(r)["x"];
  ASSERT_EQ(x.size(), r.data.size() - 1);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i].first, int64_t(i));
    EXPECT_EQ(x[i].second, float(i));
  }
}

// A second writer on the same folder (same second, same process) adds a file and leaves the
// first one byte for byte as it was.
TEST(TensorBoardWriter, AppendingAddsAFileAndKeepsTheOldOne) {
  TempDir dir;
  tfevents::EventWriter first(dir.path.string());
  first.scalar("x", 1, 1.0);
  const std::string before = read_bytes(first.path());
  tfevents::EventWriter second(dir.path.string());
  second.scalar("x", 2, 2.0);
  EXPECT_NE(first.path(), second.path());
  EXPECT_EQ(read_bytes(first.path()), before);
  EXPECT_EQ(event_files(dir.path).size(), 2u);
  const auto x = scalars_of(parse_records(read_bytes(second.path())))["x"];
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0], std::make_pair(int64_t(2), 2.0f));
}

TEST(TensorBoardWriter, UnwritableFolderNamesIt) {
  TempDir dir;
  fs::create_directories(dir.path.parent_path());
  { std::ofstream(dir.path.string()) << "a file, not a folder"; }
  try {
    tfevents::EventWriter w(dir.path.string());
    FAIL() << "expected cnn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path.string()), std::string::npos) << e.what();
  }
  fs::remove(dir.path);
}

// fit with the callback: every epoch scalar equals History's value as a float, every step
// scalar is there at its global step, the learning rate follows the cosine schedule, and the
// last step's running means are the epoch's means.
TEST(TensorBoardCallback, ScalarsMatchHistory) {
  TempDir dir;
  const test::SmallData d = test::make_quadrant_data(40, 1, 6, 6, 3);
  Sequential model({Conv2D(3, 3), Flatten(), Dense(4, "softmax")});
  model.compile("sgd", "cce", 0.05f, {1, 6, 6});
  FitOptions o;
  o.epochs = 3;
  o.batch_size = 8;  // 32 training rows: 4 steps an epoch
  o.validation_split = 0.2f;
  o.verbose = 0;
  o.lr_schedule.kind = "cosine";
  o.callbacks.push_back(tensorboard({dir.path.string(), 1, true}));
  const History h = model.fit(d.x, d.y, o);

  const auto files = event_files(dir.path);
  ASSERT_EQ(files.size(), 1u);
  const Records r = parse_records(read_bytes(files[0]));
  ASSERT_FALSE(r.truncated || r.corrupt);
  auto s = scalars_of(r);
  const std::map<std::string, const std::vector<double>*> epoch_tags = {
      {"epoch/loss", &h.loss},         {"epoch/accuracy", &h.accuracy},
      {"epoch/val_loss", &h.val_loss}, {"epoch/val_accuracy", &h.val_accuracy},
      {"epoch/seconds", &h.seconds},   {"epoch/learning_rate", &h.learning_rate}};
  for (const auto& [tag, values] : epoch_tags) {
    ASSERT_EQ(s[tag].size(), 3u) << tag;
    for (int e = 0; e < 3; ++e) {
      EXPECT_EQ(s[tag][size_t(e)].first, e + 1) << tag;
      EXPECT_EQ(s[tag][size_t(e)].second, float((*values)[size_t(e)])) << tag << " epoch " << e + 1;
    }
  }
  for (const char* tag : {"step/loss", "step/accuracy", "step/learning_rate"}) {
    ASSERT_EQ(s[tag].size(), 12u) << tag;
    for (int i = 0; i < 12; ++i) EXPECT_EQ(s[tag][size_t(i)].first, i + 1) << tag;
  }
  for (int i = 0; i < 12; ++i) {
    // fit's schedule at progress t = (steps before this one) / 12. Tolerance: the value is
    // rounded to float32 twice (lr_factor, simple_value), 2 * 6e-8 relative of 0.05 = 6e-9.
    const double want = 0.05f * o.lr_schedule.factor(double(i) / 12.0, i / 4);
    EXPECT_NEAR(s["step/learning_rate"][size_t(i)].second, want, 1e-8) << "step " << i + 1;
  }
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(s["step/loss"][size_t(4 * e + 3)].second, s["epoch/loss"][size_t(e)].second);
    EXPECT_EQ(s["step/accuracy"][size_t(4 * e + 3)].second, s["epoch/accuracy"][size_t(e)].second);
  }
  // The summary text first, then the images: filters after each epoch.
  const auto text = parse_event(r.data[1]).summary().value(0);  // a copy
  EXPECT_EQ(text.tag(), "model/summary");
  EXPECT_NE(text.tensor().string_val(0).find("    Total params: "), std::string::npos) << text.tensor().string_val(0);
  int filters = 0;
  for (size_t i = 1; i < r.data.size(); ++i) {
    const ::tensorboard::Event e = parse_event(r.data[i]);
    for (const auto& v : e.summary().value()) filters += v.tag() == "images/filters";
  }
  EXPECT_EQ(filters, 3);
}

TEST(TensorBoardCallback, ChecksItsOptions) {
  auto message = [](const TensorBoardOptions& o) {
    try {
      tensorboard(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({}).find("log_dir is empty"), std::string::npos);
  EXPECT_NE(message({"d", -1}).find("every_steps must be >= 0"), std::string::npos);
  TensorBoardOptions half{"d"};
  half.confusion_x = Tensor({2, 4});
  EXPECT_NE(message(half).find("confusion_x and confusion_y"), std::string::npos);

  TempDir dir;
  Sequential mlp({Flatten(), Dense(4, "softmax")});
  mlp.compile("sgd", "cce", 0.05f, {1, 6, 6});
  const test::SmallData d = test::make_quadrant_data(8, 1, 6, 6, 3);
  FitOptions o;
  o.verbose = 0;
  o.callbacks.push_back(tensorboard({dir.path.string(), 0, true}));
  try {
    mlp.fit(d.x, d.y, o);
    FAIL() << "expected cnn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no Conv2D"), std::string::npos) << e.what();
  }
}

TEST(TensorBoardCallback, ConfusionMatrixWhenTrainingEnds) {
  TempDir dir;
  const test::SmallData d = test::make_quadrant_data(16, 1, 6, 6, 5);
  Sequential model({Flatten(), Dense(4, "softmax")});
  model.compile("sgd", "cce", 0.05f, {1, 6, 6});
  TensorBoardOptions tb{dir.path.string()};
  tb.confusion_x = d.x;
  tb.confusion_y = d.y;
  FitOptions o;
  o.epochs = 2;
  o.verbose = 0;
  o.callbacks.push_back(tensorboard(tb));
  model.fit(d.x, d.y, o);
  const Records r = parse_records(read_bytes(event_files(dir.path).at(0)));
  const auto last = parse_event(r.data.back());
  EXPECT_EQ(last.step(), 2);
  ASSERT_EQ(last.summary().value_size(), 1);
  EXPECT_EQ(last.summary().value(0).tag(), "images/confusion_matrix");
  const Image expected = confusion_matrix_image(
      model.evaluate(d.x, d.y, EvaluateOptions{.per_class = true}).confusion, {"0", "1", "2", "3"});
  EXPECT_EQ(last.summary().value(0).image().encoded_image_string(), encode_png(expected));
}

#else  // built without protobuf

TEST(TensorBoardCallback, RefusesWithoutProtobuf) {
  try {
    tensorboard({"tb"});
    FAIL() << "expected cnn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("without protobuf"), std::string::npos) << e.what();
  }
}

#endif

}  // namespace
}  // namespace cnn
