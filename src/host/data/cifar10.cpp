// CIFAR-10, binary version: data_batch_1..5.bin and test_batch.bin hold 10,000 records each,
// a record being 1 label byte then 1,024 red, 1,024 green and 1,024 blue bytes (32x32, rows
// top to bottom); batches.meta.txt names the classes, one per line.
#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "data/data_internal.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

constexpr int64_t kSide = 32;
constexpr int64_t kPlane = kSide * kSide;     // 1,024
constexpr int64_t kRecordBytes = 1 + 3 * kPlane;  // 3,073
constexpr int kClasses = 10;
const std::array<const char*, kClasses> kDefaultClassNames = {
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> read_class_names(const fs::path& dir) {
  const fs::path meta = dir / "batches.meta.txt";
  std::error_code ec;
  if (!fs::exists(meta, ec)) return {kDefaultClassNames.begin(), kDefaultClassNames.end()};
  std::ifstream in(meta);
  CNN_CHECK(in.good(), "CIFAR-10: cannot open ", meta.string());
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    line = trim(line);
    if (!line.empty()) names.push_back(line);
  }
  CNN_CHECK(names.size() == size_t(kClasses), "CIFAR-10: ", meta.string(), " names ", names.size(),
            " classes, expected ", kClasses, " (one per line)");
  return names;
}

// Reads `count` records from the start of `file` into x (images) and y (labels).
void read_records(const fs::path& file, int64_t count, bool grayscale, float* x, float* y,
                  std::vector<uint8_t>& buffer) {
  std::ifstream in(file, std::ios::binary);
  CNN_CHECK(in.good(), "CIFAR-10: cannot open ", file.string());
  buffer.resize(size_t(count * kRecordBytes));
  in.read(reinterpret_cast<char*>(buffer.data()), std::streamsize(buffer.size()));
  const auto got = int64_t(in.gcount());
  CNN_CHECK(got == count * kRecordBytes, "CIFAR-10: ", file.string(), ": read ", got, " bytes, expected ",
            count * kRecordBytes, " (the file is truncated or unreadable)");
  const int64_t channels = grayscale ? 1 : 3;
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* rec = buffer.data() + i * kRecordBytes;
    CNN_CHECK(rec[0] < kClasses, "CIFAR-10: ", file.string(), ": record ", i, " has label ", int(rec[0]),
              ", expected 0-", kClasses - 1);
    y[i] = float(rec[0]);
    const uint8_t* r = rec + 1;
    const uint8_t* g = r + kPlane;
    const uint8_t* b = g + kPlane;
    float* out = x + i * channels * kPlane;
    if (grayscale) {
      for (int64_t k = 0; k < kPlane; ++k) out[k] = detail::luma01(r[k], g[k], b[k]);
    } else {
      constexpr float s = 1.0f / 255.0f;
      for (int64_t k = 0; k < 3 * kPlane; ++k) out[k] = float(r[k]) * s;  // R, G, B planes in order
    }
  }
}

Dataset read_split(const std::vector<fs::path>& files, int64_t records_per_file, int64_t count,
                   const ImageDataOptions& options, const std::vector<std::string>& names,
                   std::vector<uint8_t>& buffer) {
  Dataset d;
  d.class_names = names;
  if (count == 0) return d;
  const int64_t channels = options.grayscale ? 1 : 3;
  d.x = Tensor({count, channels, kSide, kSide});
  d.y = Tensor({count});
  int64_t done = 0;
  for (const auto& file : files) {
    if (done == count) break;  // limited: later files are not read
    const int64_t take = std::min(records_per_file, count - done);
    read_records(file, take, options.grayscale, d.x.data() + done * channels * kPlane, d.y.data() + done,
                 buffer);
    done += take;
  }
  return d;
}

}  // namespace

namespace detail {

TrainTest load_cifar10_files(const std::string& dir, const ImageDataOptions& options,
                             int64_t records_per_file) {
  CNN_CHECK(records_per_file > 0, "CIFAR-10: records per file must be positive");
  std::error_code ec;
  CNN_CHECK(fs::is_directory(dir, ec), "CIFAR-10: directory '", dir, "' does not exist",
            " (download the data set with tools/get_cifar10.sh)");
  const fs::path root(dir);
  // The training batches present among data_batch_1..5.bin (a partial copy, e.g. one batch
  // carried to another machine, trains on what it has); test_batch.bin is required.
  std::vector<fs::path> train_files;
  for (int i = 1; i <= 5; ++i) {
    const fs::path f = root / ("data_batch_" + std::to_string(i) + ".bin");
    if (fs::is_regular_file(f, ec)) train_files.push_back(f);
  }
  const std::vector<fs::path> test_files{root / "test_batch.bin"};
  std::vector<std::string> missing;
  if (train_files.empty()) missing.push_back("data_batch_1..5.bin");
  if (!fs::is_regular_file(test_files[0], ec)) missing.push_back("test_batch.bin");
  if (!missing.empty()) {
    std::ostringstream os;
    os << "CIFAR-10: " << dir << " lacks";
    for (size_t i = 0; i < missing.size(); ++i) os << (i ? ", " : " ") << missing[i];
    os << " (expected the binary version: data_batch_1..5.bin and test_batch.bin;"
       << " download it with tools/get_cifar10.sh)";
    throw Error(os.str());
  }
  std::vector<fs::path> all = train_files;
  all.push_back(test_files[0]);
  // Every file's size is checked, even those a limit leaves unread: a damaged data set shows up
  // at once rather than on the day the limit is lifted.
  const int64_t expected = records_per_file * kRecordBytes;
  for (const auto& f : all) {
    const auto size = int64_t(fs::file_size(f, ec));
    CNN_CHECK(!ec, "CIFAR-10: cannot read the size of ", f.string(), ": ", ec.message());
    CNN_CHECK(size == expected, "CIFAR-10: ", f.string(), " has ", size, " bytes, expected ", expected, " (",
              records_per_file, " records of ", kRecordBytes,
              " bytes); the file is truncated or not the CIFAR-10 binary version");
  }

  const auto names = read_class_names(root);
  const int64_t n_train =
      apply_limit(options.train_limit, records_per_file * int64_t(train_files.size()), "CIFAR-10: train_limit");
  const int64_t n_test = apply_limit(options.test_limit, records_per_file, "CIFAR-10: test_limit");
  std::vector<uint8_t> buffer;
  TrainTest data;
  data.train = read_split(train_files, records_per_file, n_train, options, names, buffer);
  data.test = read_split(test_files, records_per_file, n_test, options, names, buffer);
  finish_image_data(data, options);
  return data;
}

}  // namespace detail

TrainTest load_cifar10(const std::string& dir, const ImageDataOptions& options) {
  return detail::load_cifar10_files(dir, options, 10000);
}

}  // namespace cnn
