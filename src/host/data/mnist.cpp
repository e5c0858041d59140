// MNIST in the IDX format: train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each plain or gzip-compressed (.gz).
// IDX: a big-endian magic number 0x000008NN (0x08: unsigned bytes, NN: number of dimensions),
// NN big-endian 32-bit dimension sizes, then the bytes in row-major order.
#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <filesystem>
#include <sstream>
#include <system_error>
#include <vector>

#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "data/data_internal.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

constexpr int kClasses = 10;
constexpr int64_t kMaxSide = 4096;           // rows / columns of one image
constexpr int64_t kMaxCount = int64_t{1} << 31;  // images in one file

// A file read through zlib: gzread decompresses .gz files and passes plain files through.
class IdxFile {
 public:
  explicit IdxFile(fs::path path) : path_(std::move(path)) {
    file_ = gzopen(path_.c_str(), "rb");
    CNN_CHECK(file_ != nullptr, "MNIST: cannot open ", path_.string());
    gzbuffer(file_, 1 << 17);
  }
  ~IdxFile() {
    if (file_ != nullptr) gzclose(file_);
  }
  IdxFile(const IdxFile&) = delete;
  IdxFile& operator=(const IdxFile&) = delete;

  const fs::path& path() const { return path_; }
  bool compressed() const { return path_.extension() == ".gz"; }

  // Reads up to n bytes; fewer only at the end of the data. Decompression errors throw.
  int64_t read(uint8_t* dst, int64_t n) {
    int64_t done = 0;
    while (done < n) {
      const unsigned chunk = unsigned(std::min<int64_t>(n - done, 1 << 24));
      const int got = gzread(file_, dst + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_, &code);
        fail("MNIST: ", path_.string(), ": cannot decompress: ", msg != nullptr ? msg : "zlib error");
      }
      if (got == 0) break;
      done += got;
    }
    return done;
  }

  // The IDX header: checks the magic number and returns the dimension sizes.
  std::vector<int64_t> read_header(int dims, const char* kind) {
    std::array<uint8_t, 4> magic{};
    const int64_t got = read(magic.data(), 4);
    CNN_CHECK(got == 4, "MNIST: ", path_.string(), " is truncated: ", got, " bytes, too short for an IDX header");
    const uint32_t m = (uint32_t(magic[0]) << 24) | (uint32_t(magic[1]) << 16) | (uint32_t(magic[2]) << 8) | magic[3];
    const uint32_t expected = 0x0800u | uint32_t(dims);
    if (m != expected) {
      std::ostringstream os;
      os << "MNIST: " << path_.string() << ": bad magic number 0x" << std::hex;
      os.width(8);
      os.fill('0');
      os << m << ", expected 0x";
      os.width(8);
      os << expected << std::dec << " (IDX " << kind << " file: unsigned bytes, " << dims << " dimension"
         << (dims == 1 ? "" : "s") << ")";
      if (magic[0] == 0 && magic[1] == 0 && magic[2] == 0x08 && magic[3] != dims)
        os << "; the file has " << int(magic[3]) << " dimensions";
      throw Error(os.str());
    }
    std::vector<int64_t> sizes(static_cast<size_t>(dims));
    for (int i = 0; i < dims; ++i) {
      std::array<uint8_t, 4> b{};
      CNN_CHECK(read(b.data(), 4) == 4, "MNIST: ", path_.string(), " is truncated inside its IDX header");
      sizes[size_t(i)] = (int64_t(b[0]) << 24) | (int64_t(b[1]) << 16) | (int64_t(b[2]) << 8) | int64_t(b[3]);
    }
    return sizes;
  }

  // Reads exactly n payload bytes (after the header), growing the buffer as data arrives, so
  // that a header promising more than the file holds fails before any large allocation.
  std::vector<uint8_t> read_payload(int64_t n, int64_t header_bytes, const std::string& promise) {
    std::vector<uint8_t> out;
    int64_t done = 0;
    while (done < n) {
      const int64_t chunk = std::min<int64_t>(n - done, std::max<int64_t>(done, 1 << 20));
      out.resize(size_t(done + chunk));
      const int64_t got = read(out.data() + done, chunk);
      done += got;
      if (got < chunk) break;
    }
    CNN_CHECK(done == n, "MNIST: ", path_.string(), " is truncated: the header promises ", promise, " (", n,
              " bytes after the ", header_bytes, "-byte header) but only ", done, " bytes follow");
    return out;
  }

  // True when no byte follows what has been read.
  bool at_end() {
    uint8_t b = 0;
    return read(&b, 1) == 0;
  }

 private:
  fs::path path_;
  gzFile file_ = nullptr;
};

// `base` or `base.gz` in dir (the plain file when both exist); empty when neither exists.
fs::path find_idx(const fs::path& dir, const std::string& base) {
  std::error_code ec;
  for (const fs::path& p : {dir / base, dir / (base + ".gz")})
    if (fs::is_regular_file(p, ec)) return p;
  return {};
}

// For plain (uncompressed) files the size is known up front: it must match the header exactly.
void check_plain_size(const IdxFile& f, int64_t expected) {
  if (f.compressed()) return;
  std::error_code ec;
  const auto size = int64_t(fs::file_size(f.path(), ec));
  if (ec) return;  // the reads below still detect truncation
  CNN_CHECK(size == expected, "MNIST: ", f.path().string(), " has ", size, " bytes, expected ", expected,
            size < expected ? " (the file is truncated)" : " (trailing data after the last item)");
}

Dataset read_split(const fs::path& images_path, const fs::path& labels_path, int64_t limit,
                   const char* limit_name, int64_t* rows_out, int64_t* cols_out) {
  IdxFile images(images_path), labels(labels_path);
  const auto idims = images.read_header(3, "image");
  const auto ldims = labels.read_header(1, "label");
  const int64_t n = idims[0], rows = idims[1], cols = idims[2];
  CNN_CHECK(n >= 1 && n <= kMaxCount, "MNIST: ", images_path.string(), " claims ", n, " images");
  CNN_CHECK(rows >= 1 && rows <= kMaxSide && cols >= 1 && cols <= kMaxSide, "MNIST: ", images_path.string(),
            " claims images of ", rows, "x", cols, " pixels (expected 1 to ", kMaxSide, " a side; 28x28 for MNIST)");
  CNN_CHECK(ldims[0] == n, "MNIST: ", labels_path.string(), " holds ", ldims[0], " labels but ",
            images_path.string(), " holds ", n, " images");
  if (*rows_out != 0) {
    CNN_CHECK(rows == *rows_out && cols == *cols_out, "MNIST: ", images_path.string(), " holds ", rows, "x", cols,
              " images but the training images are ", *rows_out, "x", *cols_out);
  }
  *rows_out = rows;
  *cols_out = cols;
  const int64_t pixels = rows * cols;
  check_plain_size(images, 16 + n * pixels);
  check_plain_size(labels, 8 + n);

  const int64_t keep = detail::apply_limit(limit, n, limit_name);
  std::ostringstream promise;
  promise << n << " images of " << rows << "x" << cols;
  const auto pix = images.read_payload(keep * pixels, 16, promise.str());
  const auto lab = labels.read_payload(keep, 8, std::to_string(n) + " labels");
  if (keep == n) {
    CNN_CHECK(images.at_end(), "MNIST: ", images_path.string(), " has trailing data after its ", n, " images");
    CNN_CHECK(labels.at_end(), "MNIST: ", labels_path.string(), " has trailing data after its ", n, " labels");
  }

  Dataset d;
  for (int i = 0; i < kClasses; ++i) d.class_names.push_back(std::to_string(i));
  d.x = Tensor({keep, 1, rows, cols});
  d.y = Tensor({keep});
  float* x = d.x.data();
  constexpr float s = 1.0f / 255.0f;
  for (int64_t i = 0; i < keep * pixels; ++i) x[i] = float(pix[size_t(i)]) * s;
  float* y = d.y.data();
  for (int64_t i = 0; i < keep; ++i) {
    CNN_CHECK(lab[size_t(i)] < kClasses, "MNIST: ", labels_path.string(), ": label ", int(lab[size_t(i)]),
              " at index ", i, " is out of range 0-", kClasses - 1);
    y[i] = float(lab[size_t(i)]);
  }
  return d;
}

}  // namespace

TrainTest load_mnist(const std::string& dir, const ImageDataOptions& options) {
  std::error_code ec;
  CNN_CHECK(fs::is_directory(dir, ec), "MNIST: directory '", dir, "' does not exist",
            " (download the data set with tools/get_mnist.sh)");
  const fs::path root(dir);
  const std::array<std::string, 4> bases = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  std::array<fs::path, 4> paths;
  std::vector<std::string> missing;
  for (size_t i = 0; i < bases.size(); ++i) {
    paths[i] = find_idx(root, bases[i]);
    if (paths[i].empty()) missing.push_back(bases[i] + "[.gz]");
  }
  if (!missing.empty()) {
    std::ostringstream os;
    os << "MNIST: " << dir << " lacks";
    for (size_t i = 0; i < missing.size(); ++i) os << (i ? ", " : " ") << missing[i];
    os << " (download the data set with tools/get_mnist.sh)";
    throw Error(os.str());
  }
  int64_t rows = 0, cols = 0;
  TrainTest data;
  data.train = read_split(paths[0], paths[1], options.train_limit, "MNIST: train_limit", &rows, &cols);
  data.test = read_split(paths[2], paths[3], options.test_limit, "MNIST: test_limit", &rows, &cols);
  detail::finish_image_data(data, options);  // grayscale: MNIST already has one channel
  return data;
}

}  // namespace cnn
