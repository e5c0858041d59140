// Data loaders: CIFAR-10 binary, MNIST IDX (plain and gzip), image folders, and the helpers
// (to_categorical, channel statistics, find_data_dir). The tests write their own small data
// sets into a temporary folder; one test reads the real data sets when they are present.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "host/data/data_internal.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

using Bytes = std::vector<uint8_t>;

// A fresh folder under the system temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("cnn_data_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, const Bytes& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_gz(const fs::path& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

using test::error_of;

// ---- CIFAR-10 ---------------------------------------------------------------------------------
constexpr int64_t kCifarRecord = 3073;

// Pixel byte of image `idx` (global record number), channel c, position k (0..1023).
uint8_t cifar_byte(int idx, int c, int k) {
  switch (c) {
    case 0: return uint8_t((k + 7 * idx) % 256);
    case 1: return uint8_t((3 * k + idx + 50) % 256);
    default: return uint8_t(255 - (k + 11 * idx) % 256);
  }
}
int cifar_label(int idx) { return (idx * 7 + 3) % 10; }

Bytes cifar_records(int first_idx, int count) {
  Bytes b;
  for (int r = 0; r < count; ++r) {
    const int idx = first_idx + r;
    b.push_back(uint8_t(cifar_label(idx)));
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 1024; ++k) b.push_back(cifar_byte(idx, c, k));
  }
  return b;
}

// Five training files and one test file of `per_file` records; training records are numbered
// 0 .. 5*per_file-1 in file order and test records from 1000.
void write_cifar(const TempDir& dir, int per_file, bool meta = true) {
  for (int f = 0; f < 5; ++f)
    write_file(dir / ("data_batch_" + std::to_string(f + 1) + ".bin"), cifar_records(f * per_file, per_file));
  write_file(dir / "test_batch.bin", cifar_records(1000, per_file));
  if (meta) {
    std::ofstream m(dir / "batches.meta.txt");
    for (int i = 0; i < 10; ++i) m << "class" << i << "\n";
    m << "\n";  // the official file ends with blank lines
  }
}

TEST(DataCifar10, DecodesLabelsPixelsAndChannelOrderExactly) {
  TempDir dir;
  write_cifar(dir, 3);
  const TrainTest d = detail::load_cifar10_files(dir.str(), {}, 3);
  ASSERT_EQ(d.train.x.shape(), (Shape{15, 3, 32, 32}));
  ASSERT_EQ(d.train.y.shape(), (Shape{15}));
  ASSERT_EQ(d.test.x.shape(), (Shape{3, 3, 32, 32}));
  ASSERT_EQ(d.train.num_classes(), 10);
  EXPECT_EQ(d.train.class_names[0], "class0");
  EXPECT_EQ(d.test.class_names[9], "class9");
  for (int i = 0; i < 15; ++i) {
    EXPECT_EQ(d.train.y.at({i}), float(cifar_label(i))) << i;
    for (int c = 0; c < 3; ++c)
      for (int k : {0, 1, 31, 32, 500, 1023}) {
        const int h = k / 32, w = k % 32;
        EXPECT_FLOAT_EQ(d.train.x.at({i, c, h, w}), cifar_byte(i, c, k) / 255.0f) << i << " " << c << " " << k;
      }
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(d.test.y.at({i}), float(cifar_label(1000 + i)));
    EXPECT_FLOAT_EQ(d.test.x.at({i, 2, 31, 31}), cifar_byte(1000 + i, 2, 1023) / 255.0f);
  }
}

TEST(DataCifar10, StandardClassNamesWhenMetaFileIsAbsent) {
  TempDir dir;
  write_cifar(dir, 1, /*meta=*/false);
  const TrainTest d = detail::load_cifar10_files(dir.str(), {}, 1);
  const std::vector<std::string> expected{"airplane", "automobile", "bird", "cat", "deer",
                                          "dog",      "frog",       "horse", "ship", "truck"};
  EXPECT_EQ(d.train.class_names, expected);
  EXPECT_EQ(d.test.class_names, expected);
}

TEST(DataCifar10, GrayscaleUsesBt601Luma) {
  TempDir dir;
  write_cifar(dir, 2);
  ImageDataOptions o;
  o.grayscale = true;
  const TrainTest d = detail::load_cifar10_files(dir.str(), o, 2);
  ASSERT_EQ(d.train.x.shape(), (Shape{10, 1, 32, 32}));
  ASSERT_EQ(d.test.x.shape(), (Shape{2, 1, 32, 32}));
  for (int i : {0, 4, 9})
    for (int k : {0, 100, 1023}) {
      const double luma = (0.299 * cifar_byte(i, 0, k) + 0.587 * cifar_byte(i, 1, k) + 0.114 * cifar_byte(i, 2, k)) / 255;
      EXPECT_NEAR(d.train.x.at({i, 0, k / 32, k % 32}), luma, 1e-6);
    }
}

TEST(DataCifar10, StandardizesBothSplitsWithTrainStatistics) {
  TempDir dir;
  write_cifar(dir, 2);
  const TrainTest raw = detail::load_cifar10_files(dir.str(), {}, 2);
  ImageDataOptions o;
  o.standardize = true;
  const TrainTest d = detail::load_cifar10_files(dir.str(), o, 2);
  const ChannelStats train_stats = channel_stats(raw.train.x);
  const ChannelStats after = channel_stats(d.train.x);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(after.mean[size_t(c)], 0.0, 1e-5);
    EXPECT_NEAR(after.stddev[size_t(c)], 1.0, 1e-5);
    for (int i = 0; i < 2; ++i)
      for (int k : {3, 777}) {
        const float expected = (raw.test.x.at({i, c, k / 32, k % 32}) - train_stats.mean[size_t(c)]) /
                               train_stats.stddev[size_t(c)];
        EXPECT_NEAR(d.test.x.at({i, c, k / 32, k % 32}), expected, 1e-5);
      }
  }
}

TEST(DataCifar10, LimitsKeepTheFirstImagesAcrossFiles) {
  TempDir dir;
  write_cifar(dir, 3);
  ImageDataOptions o;
  o.train_limit = 5;  // all of file 1, part of file 2
  o.test_limit = 2;
  const TrainTest d = detail::load_cifar10_files(dir.str(), o, 3);
  ASSERT_EQ(d.train.size(), 5);
  ASSERT_EQ(d.test.size(), 2);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(d.train.y.at({i}), float(cifar_label(i)));
    EXPECT_FLOAT_EQ(d.train.x.at({i, 1, 3, 4}), cifar_byte(i, 1, 3 * 32 + 4) / 255.0f);
  }
  o.train_limit = 1000;  // more than there is: everything
  EXPECT_EQ(detail::load_cifar10_files(dir.str(), o, 3).train.size(), 15);
  o.train_limit = -1;
  EXPECT_CONTAINS(error_of([&] { detail::load_cifar10_files(dir.str(), o, 3); }), "train_limit");
}

// The public loader expects the real layout (10,000 records a file). Sparse files of the full
// size with real records at their start stand in for it; the limits mean only those are read.
TEST(DataCifar10, PublicLoaderWithFullSizeFilesReadsOnlyWhatTheLimitsNeed) {
  TempDir dir;
  write_cifar(dir, 2);  // records at the start of each file...
  for (const auto& e : fs::directory_iterator(dir.path()))
    if (e.path().extension() == ".bin") fs::resize_file(e.path(), 10000 * kCifarRecord);  // ...then zeros
  ImageDataOptions o;
  o.train_limit = 2;
  o.test_limit = 1;
  const TrainTest d = load_cifar10(dir.str(), o);
  ASSERT_EQ(d.train.x.shape(), (Shape{2, 3, 32, 32}));
  ASSERT_EQ(d.test.x.shape(), (Shape{1, 3, 32, 32}));
  EXPECT_EQ(d.train.y.at({1}), float(cifar_label(1)));
  EXPECT_FLOAT_EQ(d.train.x.at({1, 0, 0, 5}), cifar_byte(1, 0, 5) / 255.0f);
  EXPECT_EQ(d.test.y.at({0}), float(cifar_label(1000)));
}

TEST(DataCifar10, TruncatedFileErrorNamesFileAndBothSizes) {
  TempDir dir;
  write_cifar(dir, 3);
  fs::resize_file(dir / "data_batch_3.bin", 3 * kCifarRecord - 1);
  const std::string msg = error_of([&] { detail::load_cifar10_files(dir.str(), {}, 3); });
  EXPECT_CONTAINS(msg, (dir / "data_batch_3.bin").string());
  EXPECT_CONTAINS(msg, std::to_string(3 * kCifarRecord));      // expected
  EXPECT_CONTAINS(msg, std::to_string(3 * kCifarRecord - 1));  // actual
  // The public loader: the real size is expected.
  const std::string pub = error_of([&] { load_cifar10(dir.str()); });
  EXPECT_CONTAINS(pub, "data_batch_1.bin");
  EXPECT_CONTAINS(pub, "30730000");
  EXPECT_CONTAINS(pub, std::to_string(3 * kCifarRecord));
}

TEST(DataCifar10, PartialCopiesTrainOnTheBatchesPresentAndMissingFilesAreNamed) {
  TempDir dir;
  write_cifar(dir, 1);
  fs::remove(dir / "data_batch_4.bin");
  const TrainTest partial = detail::load_cifar10_files(dir.str(), {}, 1);
  EXPECT_EQ(partial.train.size(), 4);  // batches 1, 2, 3 and 5
  fs::remove(dir / "test_batch.bin");
  const std::string no_test = error_of([&] { detail::load_cifar10_files(dir.str(), {}, 1); });
  EXPECT_CONTAINS(no_test, "lacks test_batch.bin");
  for (int i : {1, 2, 3, 5}) fs::remove(dir / ("data_batch_" + std::to_string(i) + ".bin"));
  const std::string msg = error_of([&] { detail::load_cifar10_files(dir.str(), {}, 1); });
  EXPECT_CONTAINS(msg, "data_batch_1..5.bin");
  EXPECT_CONTAINS(msg, "test_batch.bin");
  const std::string none = error_of([&] { load_cifar10((dir / "nowhere").string()); });
  EXPECT_CONTAINS(none, (dir / "nowhere").string());
  EXPECT_CONTAINS(none, "does not exist");
}

TEST(DataCifar10, BadLabelAndBadMetaFileAreReported) {
  TempDir dir;
  write_cifar(dir, 2);
  Bytes batch = cifar_records(0, 2);
  batch[kCifarRecord] = 12;  // label of record 1
  write_file(dir / "data_batch_1.bin", batch);
  std::string msg = error_of([&] { detail::load_cifar10_files(dir.str(), {}, 2); });
  EXPECT_CONTAINS(msg, "data_batch_1.bin");
  EXPECT_CONTAINS(msg, "record 1");
  EXPECT_CONTAINS(msg, "label 12");

  write_cifar(dir, 2);
  std::ofstream(dir / "batches.meta.txt") << "cat\ndog\nbird\n";
  msg = error_of([&] { detail::load_cifar10_files(dir.str(), {}, 2); });
  EXPECT_CONTAINS(msg, "batches.meta.txt");
  EXPECT_CONTAINS(msg, "3 classes");
}

// ---- MNIST ----------------------------------------------------------------------------------------
Bytes be32(uint32_t v) { return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)}; }

Bytes idx_file(uint32_t magic, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes b = be32(magic);
  for (uint32_t d : dims) {
    const Bytes x = be32(d);
    b.insert(b.end(), x.begin(), x.end());
  }
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

uint8_t mnist_byte(int image, int k) { return uint8_t((image * 37 + k * 11) % 256); }

// Images of 3 rows x 4 columns: 5 for training, 2 for testing.
struct MnistFiles {
  Bytes train_images, train_labels, test_images, test_labels;
};

MnistFiles mnist_files(int n_train = 5, int n_test = 2) {
  auto images = [](int first, int n) {
    Bytes p;
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < 12; ++k) p.push_back(mnist_byte(first + i, k));
    return idx_file(0x803, {uint32_t(n), 3, 4}, p);
  };
  auto labels = [](int first, int n) {
    Bytes p;
    for (int i = 0; i < n; ++i) p.push_back(uint8_t((first + i) % 10));
    return idx_file(0x801, {uint32_t(n)}, p);
  };
  return {images(0, n_train), labels(0, n_train), images(100, n_test), labels(100, n_test)};
}

void write_mnist(const TempDir& dir, const MnistFiles& f, bool gz) {
  auto put = [&](const std::string& name, const Bytes& b) {
    if (gz)
      write_gz(dir / (name + ".gz"), b);
    else
      write_file(dir / name, b);
  };
  put("train-images-idx3-ubyte", f.train_images);
  put("train-labels-idx1-ubyte", f.train_labels);
  put("t10k-images-idx3-ubyte", f.test_images);
  put("t10k-labels-idx1-ubyte", f.test_labels);
}

void expect_mnist_values(const TrainTest& d) {
  ASSERT_EQ(d.train.x.shape(), (Shape{5, 1, 3, 4}));
  ASSERT_EQ(d.test.x.shape(), (Shape{2, 1, 3, 4}));
  ASSERT_EQ(d.train.num_classes(), 10);
  EXPECT_EQ(d.train.class_names[0], "0");
  EXPECT_EQ(d.train.class_names[9], "9");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(d.train.y.at({i}), float(i % 10));
    for (int k = 0; k < 12; ++k) EXPECT_FLOAT_EQ(d.train.x.at({i, 0, k / 4, k % 4}), mnist_byte(i, k) / 255.0f);
  }
  EXPECT_EQ(d.test.y.at({1}), 1.0f);
  EXPECT_FLOAT_EQ(d.test.x.at({1, 0, 2, 3}), mnist_byte(101, 11) / 255.0f);
}

TEST(DataMnist, DecodesPlainAndGzippedIdxFiles) {
  TempDir plain, gz;
  write_mnist(plain, mnist_files(), false);
  write_mnist(gz, mnist_files(), true);
  expect_mnist_values(load_mnist(plain.str()));
  expect_mnist_values(load_mnist(gz.str()));
}

TEST(DataMnist, LimitsAndStandardization) {
  TempDir dir;
  write_mnist(dir, mnist_files(), true);
  ImageDataOptions o;
  o.train_limit = 3;
  o.test_limit = 1;
  TrainTest d = load_mnist(dir.str(), o);
  EXPECT_EQ(d.train.size(), 3);
  EXPECT_EQ(d.test.size(), 1);
  EXPECT_FLOAT_EQ(d.train.x.at({2, 0, 1, 1}), mnist_byte(2, 5) / 255.0f);
  o = {};
  o.standardize = true;
  d = load_mnist(dir.str(), o);
  const ChannelStats s = channel_stats(d.train.x);
  EXPECT_NEAR(s.mean[0], 0.0, 1e-5);
  EXPECT_NEAR(s.stddev[0], 1.0, 1e-5);
}

TEST(DataMnist, BadMagicNumbersAreReported) {
  TempDir dir;
  MnistFiles f = mnist_files();
  f.train_images[3] = 0x01;  // 0x00000801: a label file's magic
  write_mnist(dir, f, false);
  std::string msg = error_of([&] { load_mnist(dir.str()); });
  EXPECT_CONTAINS(msg, (dir / "train-images-idx3-ubyte").string());
  EXPECT_CONTAINS(msg, "magic");
  EXPECT_CONTAINS(msg, "0x00000801");
  EXPECT_CONTAINS(msg, "0x00000803");

  f = mnist_files();
  f.test_labels[2] = 0x0d;  // not unsigned bytes
  write_mnist(dir, f, false);
  msg = error_of([&] { load_mnist(dir.str()); });
  EXPECT_CONTAINS(msg, "t10k-labels-idx1-ubyte");
  EXPECT_CONTAINS(msg, "magic");
}

TEST(DataMnist, CountMismatchNamesBothFiles) {
  TempDir dir;
  MnistFiles f = mnist_files();
  f.train_labels = mnist_files(4).train_labels;  // 4 labels for 5 images
  write_mnist(dir, f, true);
  const std::string msg = error_of([&] { load_mnist(dir.str()); });
  EXPECT_CONTAINS(msg, "train-labels-idx1-ubyte.gz");
  EXPECT_CONTAINS(msg, "train-images-idx3-ubyte.gz");
  EXPECT_CONTAINS(msg, "4 labels");
  EXPECT_CONTAINS(msg, "5 images");
}

TEST(DataMnist, TruncationIsReportedForPlainAndGzippedFiles) {
  for (bool gz : {false, true}) {
    SCOPED_TRACE(gz ? "gzip" : "plain");
    TempDir dir;
    MnistFiles f = mnist_files();
    f.test_images.resize(f.test_images.size() - 5);
    write_mnist(dir, f, gz);
    const std::string msg = error_of([&] { load_mnist(dir.str()); });
    EXPECT_CONTAINS(msg, "t10k-images-idx3-ubyte");
    EXPECT_CONTAINS(msg, "truncated");
  }
  // A header cut short.
  TempDir dir;
  MnistFiles f = mnist_files();
  f.train_labels.resize(6);
  write_mnist(dir, f, true);
  EXPECT_CONTAINS(error_of([&] { load_mnist(dir.str()); }), "train-labels-idx1-ubyte.gz");
}

TEST(DataMnist, HugeClaimedCountFailsWithoutAllocating) {
  TempDir dir;
  MnistFiles f = mnist_files();
  // 1e9 images of 3x4 claimed by a tiny gzip file, labels to match.
  f.train_images = idx_file(0x803, {1000000000u, 3, 4}, Bytes(12, 1));
  f.train_labels = idx_file(0x801, {1000000000u}, Bytes(1, 1));
  write_mnist(dir, f, true);
  const std::string msg = error_of([&] { load_mnist(dir.str()); });
  EXPECT_CONTAINS(msg, "train-images-idx3-ubyte.gz");
  EXPECT_CONTAINS(msg, "truncated");
}

TEST(DataMnist, LabelOutOfRangeMissingFilesAndCorruptGzip) {
  {
    TempDir dir;
    MnistFiles f = mnist_files();
    f.train_labels.back() = 10;
    write_mnist(dir, f, false);
    const std::string msg = error_of([&] { load_mnist(dir.str()); });
    EXPECT_CONTAINS(msg, "train-labels-idx1-ubyte");
    EXPECT_CONTAINS(msg, "label 10 at index 4");
  }
  {
    TempDir dir;
    write_mnist(dir, mnist_files(), false);
    fs::remove(dir / "t10k-labels-idx1-ubyte");
    const std::string msg = error_of([&] { load_mnist(dir.str()); });
    EXPECT_CONTAINS(msg, "t10k-labels-idx1-ubyte");
    EXPECT_EQ(msg.find("train-images"), std::string::npos) << msg;
  }
  {
    TempDir dir;
    write_mnist(dir, mnist_files(), true);
    // A gzip header followed by garbage.
    write_file(dir / "train-images-idx3-ubyte.gz", Bytes{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xfe, 0xfd, 0xfc,
                                                         0xfb, 0xfa, 0xf9, 0xf8, 0xf7, 0xf6, 0xf5, 0xf4});
    EXPECT_CONTAINS(error_of([&] { load_mnist(dir.str()); }), "train-images-idx3-ubyte.gz");
  }
  {
    TempDir dir;  // test images of another size than the training images
    MnistFiles f = mnist_files();
    f.test_images = idx_file(0x803, {2, 4, 3}, Bytes(24, 0));
    write_mnist(dir, f, false);
    EXPECT_CONTAINS(error_of([&] { load_mnist(dir.str()); }), "4x3");
  }
}

// ---- Image folders --------------------------------------------------------------------------------
// A w x h RGB image whose pixel (x, y) is (10 + 40x + y, 200 - 30y, 5 + 60x + 7y).
Bytes rgb_pattern(int w, int h) {
  Bytes p;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      p.push_back(uint8_t(10 + 40 * x + y));
      p.push_back(uint8_t(200 - 30 * y));
      p.push_back(uint8_t(5 + 60 * x + 7 * y));
    }
  return p;
}

void write_png(const fs::path& path, int w, int h, int comp, const Bytes& pixels) {
  fs::create_directories(path.parent_path());
  ASSERT_TRUE(stbi_write_png(path.c_str(), w, h, comp, pixels.data(), w * comp)) << path;
}

// root/cats/{a.png (2x2 RGB), b.bmp (2x2 RGB)}, root/dogs/{c.png (2x2 grey), d.jpg (2x2 uniform)},
// and things to ignore: a hidden folder, a text file.
void write_image_folder(const fs::path& root) {
  write_png(root / "cats" / "a.png", 2, 2, 3, rgb_pattern(2, 2));
  fs::create_directories(root / "cats");
  const Bytes bmp = rgb_pattern(2, 2);
  ASSERT_TRUE(stbi_write_bmp((root / "cats" / "b.bmp").c_str(), 2, 2, 3, bmp.data()));
  write_png(root / "dogs" / "c.png", 2, 2, 1, Bytes{0, 85, 170, 255});
  const Bytes uniform(2 * 2 * 3, 120);
  ASSERT_TRUE(stbi_write_jpg((root / "dogs" / "d.jpg").c_str(), 2, 2, 3, uniform.data(), 100));
  fs::create_directories(root / ".hidden");
  std::ofstream(root / "dogs" / "notes.txt") << "not an image";
}

TEST(DataImageFolder, LoadsSortedClassesAndUpscalesNearestNeighbour) {
  TempDir dir;
  write_image_folder(dir.path());
  const Dataset d = load_image_folder(dir.str(), 3, 4, 4);
  ASSERT_EQ(d.x.shape(), (Shape{4, 3, 4, 4}));
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"cats", "dogs"}));
  EXPECT_EQ(d.y.to_vector(), (std::vector<float>{0, 0, 1, 1}));
  const Bytes p = rgb_pattern(2, 2);
  for (int img = 0; img < 2; ++img)  // a.png and b.bmp hold the same pixels
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x)
        for (int c = 0; c < 3; ++c)
          EXPECT_FLOAT_EQ(d.x.at({img, c, y, x}), p[size_t(((y / 2) * 2 + x / 2) * 3 + c)] / 255.0f)
              << img << " " << c << " " << y << " " << x;
  // The grey PNG comes out with three equal channels.
  EXPECT_FLOAT_EQ(d.x.at({2, 0, 3, 3}), 1.0f);
  EXPECT_FLOAT_EQ(d.x.at({2, 1, 0, 2}), 85 / 255.0f);
  EXPECT_FLOAT_EQ(d.x.at({2, 2, 2, 1}), 170 / 255.0f);
  EXPECT_NEAR(d.x.at({3, 1, 1, 1}), 120 / 255.0f, 3 / 255.0f);  // JPEG: lossy
}

TEST(DataImageFolder, GrayscaleAndDownscale) {
  TempDir dir;
  write_image_folder(dir.path());
  const Dataset g = load_image_folder(dir.str(), 1, 2, 2);
  ASSERT_EQ(g.x.shape(), (Shape{4, 1, 2, 2}));
  const Bytes p = rgb_pattern(2, 2);
  const size_t i = (1 * 2 + 0) * 3;  // pixel (x=0, y=1)
  EXPECT_NEAR(g.x.at({0, 0, 1, 0}), (0.299 * p[i] + 0.587 * p[i + 1] + 0.114 * p[i + 2]) / 255, 1e-6);
  EXPECT_FLOAT_EQ(g.x.at({2, 0, 0, 1}), 85 / 255.0f);  // grey source: exact

  // 4x4 -> 2x2 keeps pixels 1 and 3 of each row and column (pixel centres aligned).
  write_png(dir / "big" / "x" / "p.png", 4, 4, 3, rgb_pattern(4, 4));
  const Tensor t = load_image((dir / "big" / "x" / "p.png").string(), 3, 2, 2);
  ASSERT_EQ(t.shape(), (Shape{1, 3, 2, 2}));
  const Bytes q = rgb_pattern(4, 4);
  EXPECT_FLOAT_EQ(t.at({0, 0, 1, 0}), q[size_t((3 * 4 + 1) * 3)] / 255.0f);
  EXPECT_FLOAT_EQ(t.at({0, 2, 0, 1}), q[size_t((1 * 4 + 3) * 3 + 2)] / 255.0f);
  // Own size when no size is asked for.
  EXPECT_EQ(load_image((dir / "big" / "x" / "p.png").string(), 1).shape(), (Shape{1, 1, 4, 4}));
}

TEST(DataImageFolder, CorruptImagesNameTheFileAndTheDecoderReason) {
  TempDir dir;
  write_image_folder(dir.path());
  write_file(dir / "dogs" / "broken.png", Bytes{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H'});
  std::string msg = error_of([&] { load_image_folder(dir.str(), 3, 4, 4); });
  EXPECT_CONTAINS(msg, (dir / "dogs" / "broken.png").string());
  EXPECT_CONTAINS(msg, "not a readable");
  EXPECT_GT(msg.size(), msg.find("image: ") + 8) << msg;  // stb_image's reason follows
  fs::remove(dir / "dogs" / "broken.png");

  std::ofstream(dir / "cats" / "text.jpg") << "this is not a JPEG";
  msg = error_of([&] { load_image_folder(dir.str(), 3, 4, 4); });
  EXPECT_CONTAINS(msg, (dir / "cats" / "text.jpg").string());
}

// Headers claiming 100000 x 100000 pixels: refused from the header, before decoding.
TEST(DataImageFolder, OversizedImageHeadersAreRefusedBeforeDecoding) {
  TempDir dir;
  // BMP: BITMAPFILEHEADER + BITMAPINFOHEADER, 24 bits, no pixel data at all.
  Bytes bmp = {'B', 'M'};
  auto le32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) bmp.push_back(uint8_t(v >> (8 * i)));
  };
  auto le16 = [&](uint16_t v) {
    bmp.push_back(uint8_t(v));
    bmp.push_back(uint8_t(v >> 8));
  };
  le32(54);  // file size (a lie)
  le32(0);
  le32(54);  // pixel data offset
  le32(40);  // info header size
  le32(100000);
  le32(100000);
  le16(1);
  le16(24);
  le32(0);  // BI_RGB
  for (int i = 0; i < 5; ++i) le32(0);
  write_file(dir / "huge" / "a" / "huge.bmp", bmp);
  std::string msg = error_of([&] { load_image((dir / "huge" / "a" / "huge.bmp").string(), 3, 8, 8); });
  EXPECT_CONTAINS(msg, "huge.bmp");
  EXPECT_CONTAINS(msg, "100000x100000");
  EXPECT_CONTAINS(msg, "refused");
  msg = error_of([&] { load_image_folder((dir / "huge").string(), 3, 8, 8); });
  EXPECT_CONTAINS(msg, "100000x100000");

  // PNG: signature + IHDR claiming 100000 x 100000 (and one claiming 20000 x 10: too wide).
  for (uint32_t h : {100000u, 10u}) {
    const uint32_t w = h == 10 ? 20000 : 100000;
    Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    for (uint32_t v : {w, h})
      for (int i = 3; i >= 0; --i) png.push_back(uint8_t(v >> (8 * i)));
    for (uint8_t b : {8, 2, 0, 0, 0, 0, 0, 0, 0}) png.push_back(b);  // depth, colour type, ..., CRC
    write_file(dir / "huge.png", png);
    msg = error_of([&] { load_image((dir / "huge.png").string(), 3); });
    EXPECT_CONTAINS(msg, "huge.png");
    EXPECT_CONTAINS(msg, std::to_string(w) + "x" + std::to_string(h));
    EXPECT_CONTAINS(msg, "refused");
  }
}

TEST(DataImageFolder, MissingEmptyFoldersAndBadArguments) {
  TempDir dir;
  std::string msg = error_of([&] { load_image_folder((dir / "absent").string(), 3, 8, 8); });
  EXPECT_CONTAINS(msg, (dir / "absent").string());
  EXPECT_CONTAINS(msg, "does not exist");
  msg = error_of([&] { load_image_folder(dir.str(), 3, 8, 8); });
  EXPECT_CONTAINS(msg, "no class subfolders");
  fs::create_directories(dir / "empty_class");
  write_png(dir / "full_class" / "a.png", 2, 2, 3, rgb_pattern(2, 2));
  msg = error_of([&] { load_image_folder(dir.str(), 3, 8, 8); });
  EXPECT_CONTAINS(msg, "empty_class");
  EXPECT_CONTAINS(msg, "no .png");
  fs::remove(dir / "empty_class");
  EXPECT_CONTAINS(error_of([&] { load_image_folder(dir.str(), 2, 8, 8); }), "channels must be 1 or 3");
  EXPECT_CONTAINS(error_of([&] { load_image_folder(dir.str(), 3, 0, 0); }), "positive");
  EXPECT_CONTAINS(error_of([&] { load_image((dir / "nothing.png").string(), 3); }), "nothing.png");
}

// ---- Helpers ----------------------------------------------------------------------------------------
TEST(DataCategorical, OneHotRowsAndLabelErrors) {
  const Tensor y = to_categorical(Tensor::from_vector({4}, {2, 0, 1, 2}), 3);
  ASSERT_EQ(y.shape(), (Shape{4, 3}));
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1}));
  std::string msg = error_of([] { to_categorical(Tensor::from_vector({3}, {1, 0, 10}), 10); });
  EXPECT_CONTAINS(msg, "label 10 at index 2");
  EXPECT_CONTAINS(msg, "out of range");
  EXPECT_CONTAINS(error_of([] { to_categorical(Tensor::from_vector({2}, {-1, 0}), 10); }), "label -1 at index 0");
  msg = error_of([] { to_categorical(Tensor::from_vector({2}, {0, 1.5f}), 10); });
  EXPECT_CONTAINS(msg, "label 1.5 at index 1");
  EXPECT_CONTAINS(msg, "not an integer");
  EXPECT_CONTAINS(error_of([] { to_categorical(Tensor::from_vector({1}, {NAN}), 10); }), "not an integer");
  EXPECT_CONTAINS(error_of([] { to_categorical(Tensor({2, 2}), 10); }), "[2, 2]");
}

TEST(DataStats, ChannelStatsAndStandardize) {
  // Two images, two channels of 1x2: channel 0 holds 1, 3, 5, 7; channel 1 is constant 4.
  Tensor x = Tensor::from_vector({2, 2, 1, 2}, {1, 3, 4, 4, 5, 7, 4, 4});
  const ChannelStats s = channel_stats(x);
  EXPECT_FLOAT_EQ(s.mean[0], 4.0f);
  EXPECT_FLOAT_EQ(s.stddev[0], std::sqrt(5.0f));  // population standard deviation
  EXPECT_FLOAT_EQ(s.mean[1], 4.0f);
  EXPECT_FLOAT_EQ(s.stddev[1], 0.0f);
  standardize(x, s);
  EXPECT_FLOAT_EQ(x.at({0, 0, 0, 0}), -3.0f / std::sqrt(5.0f));
  EXPECT_FLOAT_EQ(x.at({1, 0, 0, 1}), 3.0f / std::sqrt(5.0f));
  EXPECT_FLOAT_EQ(x.at({1, 1, 0, 1}), 0.0f);  // constant channel: only centred
  EXPECT_CONTAINS(error_of([&] { standardize(x, ChannelStats{{0}, {1}}); }), "2 channels");
  EXPECT_CONTAINS(error_of([] { channel_stats(Tensor({4})); }), "[N, C, H, W]");
}

TEST(DataStats, DatasetHeadKeepsTheFirstImages) {
  Dataset d;
  d.x = Tensor::from_vector({3, 1, 1, 1}, {10, 20, 30});
  d.y = Tensor::from_vector({3}, {2, 0, 1});
  d.class_names = {"a", "b", "c"};
  const Dataset h = d.head(2);
  EXPECT_EQ(h.size(), 2);
  EXPECT_EQ(h.x.to_vector(), (std::vector<float>{10, 20}));
  EXPECT_EQ(h.y.to_vector(), (std::vector<float>{2, 0}));
  EXPECT_EQ(h.class_names, d.class_names);
  EXPECT_EQ(d.head(0).size(), 3);
  EXPECT_EQ(d.head(-1).size(), 3);
  EXPECT_EQ(d.head(7).size(), 3);
  EXPECT_EQ(Dataset{}.head(2).size(), 0);
}

using test::ScopedEnv;

TEST(DataFindDir, SearchOrderAndErrorListingEveryPlace) {
  TempDir dir;
  fs::create_directories(dir / "env" / "toyset");
  fs::create_directories(dir / "cwd" / "data" / "toyset");
  {
    ScopedEnv env("CNN_DATA", (dir / "env").c_str());
    EXPECT_EQ(find_data_dir("toyset", (dir / "cwd").string()), (dir / "cwd").string());  // explicit wins
    EXPECT_EQ(fs::path(find_data_dir("toyset")), dir / "env" / "toyset");
    EXPECT_CONTAINS(error_of([&] { find_data_dir("toyset", (dir / "nope").string()); }), (dir / "nope").string());
  }
  {
    ScopedEnv env("CNN_DATA", nullptr);
    const fs::path old_cwd = fs::current_path();
    fs::current_path(dir / "cwd");
    std::string found;
    EXPECT_NO_THROW(found = find_data_dir("toyset"));
    const std::string msg = error_of([] { find_data_dir("no-such-set"); });
    fs::current_path(old_cwd);
    EXPECT_EQ(fs::path(found), fs::path("data") / "toyset");
    EXPECT_CONTAINS(msg, "no-such-set");
    EXPECT_CONTAINS(msg, "CNN_DATA");
    EXPECT_CONTAINS(msg, "data/no-such-set");
    EXPECT_CONTAINS(msg, "shared/data/no-such-set");
  }
  {
    ScopedEnv env("CNN_DATA", (dir / "env").c_str());
    const std::string msg = error_of([] { find_data_dir("cifar-10-batches-bin-absent"); });
    EXPECT_CONTAINS(msg, (dir / "env" / "cifar-10-batches-bin-absent").string());
  }
}

// The shared data folder beside the checkout (CI's layout), when this machine has it.
TEST(DataReal, SharedDataFolderBesideTheCheckoutIsFound) {
  const fs::path shared = (fs::path(CNN_SOURCE_DIR) / ".." / "shared" / "data" / "mnist").lexically_normal();
  if (!fs::is_directory(shared)) GTEST_SKIP() << "real data: " << shared << " is absent";
  ScopedEnv env("CNN_DATA", nullptr);
  if (fs::is_directory("data/mnist")) GTEST_SKIP() << "./data/mnist comes first";
  EXPECT_EQ(fs::path(find_data_dir("mnist")), shared);
}

// ---- The real data sets ----------------------------------------------------------------------------
TEST(DataReal, Cifar10HasTheOfficialSizesAndBalancedClasses) {
  std::string why;
  const std::string dir = test::real_data_dir("cifar-10-batches-bin", &why);
  if (dir.empty()) GTEST_SKIP() << "real data: " << why;
  const TrainTest d = load_cifar10(dir);
  ASSERT_EQ(d.train.x.shape(), (Shape{50000, 3, 32, 32}));
  ASSERT_EQ(d.test.x.shape(), (Shape{10000, 3, 32, 32}));
  EXPECT_EQ(d.train.class_names[0], "airplane");
  EXPECT_EQ(d.train.class_names[9], "truck");
  std::vector<int> train_counts(10), test_counts(10);
  for (float l : d.train.y.to_vector()) {
    ASSERT_TRUE(l >= 0 && l <= 9 && l == std::floor(l)) << l;
    ++train_counts[size_t(l)];
  }
  for (float l : d.test.y.to_vector()) ++test_counts[size_t(l)];
  EXPECT_EQ(train_counts, std::vector<int>(10, 5000));
  EXPECT_EQ(test_counts, std::vector<int>(10, 1000));
  EXPECT_EQ(d.train.y.at({0}), 6.0f);  // frog
  EXPECT_EQ(d.test.y.at({0}), 3.0f);   // cat
  const ChannelStats s = channel_stats(d.train.x);
  // The well-known CIFAR-10 channel means (R, G, B): 0.4914, 0.4822, 0.4465.
  EXPECT_NEAR(s.mean[0], 0.4914, 1e-3);
  EXPECT_NEAR(s.mean[1], 0.4822, 1e-3);
  EXPECT_NEAR(s.mean[2], 0.4465, 1e-3);

  ImageDataOptions o;
  o.grayscale = true;
  o.train_limit = 100;
  o.test_limit = 10;
  const TrainTest g = load_cifar10(dir, o);
  EXPECT_EQ(g.train.x.shape(), (Shape{100, 1, 32, 32}));
  EXPECT_EQ(g.test.x.shape(), (Shape{10, 1, 32, 32}));
}

TEST(DataReal, MnistHasTheOfficialSizes) {
  std::string why;
  const std::string dir = test::real_data_dir("mnist", &why);
  if (dir.empty()) GTEST_SKIP() << "real data: " << why;
  const TrainTest d = load_mnist(dir);
  ASSERT_EQ(d.train.x.shape(), (Shape{60000, 1, 28, 28}));
  ASSERT_EQ(d.test.x.shape(), (Shape{10000, 1, 28, 28}));
  std::vector<int> counts(10);
  for (float l : d.train.y.to_vector()) {
    ASSERT_TRUE(l >= 0 && l <= 9) << l;
    ++counts[size_t(l)];
  }
  EXPECT_EQ(counts[1], 6742);  // the official training-set class counts
  EXPECT_EQ(counts[5], 5421);
  EXPECT_EQ(d.train.y.at({0}), 5.0f);
  EXPECT_EQ(d.test.y.at({0}), 7.0f);
  const auto v = d.test.x.to_vector();
  float lo = 1, hi = 0;
  for (float e : v) lo = std::min(lo, e), hi = std::max(hi, e);
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 1.0f);
}

}  // namespace
}  // namespace cnn
