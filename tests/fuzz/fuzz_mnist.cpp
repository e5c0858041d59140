// Fuzzes the MNIST IDX reader, plain and gzip. Input layout: a flags byte, a 16-bit split point,
// then the bytes of the image file followed by those of the label file. Each file is written
// plain, gzip-compressed by the harness (so the IDX parser sees the bytes through zlib) or
// raw under a .gz name (so zlib sees them); the test files are copies of the training files.
#include <zlib.h>

#include <cstdint>

#include "cnn/data.hpp"
#include "fuzz_util.hpp"

using namespace cnn;

namespace {

void write_idx(const fuzz::fs::path& base, std::string_view bytes, int mode) {
  if (mode == 1) {
    gzFile f = gzopen((base.string() + ".gz").c_str(), "wb");
    if (f == nullptr) std::abort();
    if (!bytes.empty() && gzwrite(f, bytes.data(), unsigned(bytes.size())) != int(bytes.size())) std::abort();
    if (gzclose(f) != Z_OK) std::abort();
  } else if (mode == 2) {
    fuzz::write_bytes(base.string() + ".gz", bytes);
  } else {
    fuzz::write_bytes(base, bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& scratch = fuzz::Scratch::get();
  scratch.reset();
  fuzz::Input in(data, size);
  const uint8_t flags = in.byte();
  const size_t split = in.u16();
  const std::string_view payload = in.rest();
  const std::string_view images = payload.substr(0, std::min(split, payload.size()));
  const std::string_view labels = payload.substr(images.size());

  const fuzz::fs::path dir = scratch.root() / "mnist";
  fuzz::fs::create_directories(dir);
  const int image_mode = flags & 3, label_mode = (flags >> 2) & 3;
  write_idx(dir / "train-images-idx3-ubyte", images, image_mode);
  write_idx(dir / "train-labels-idx1-ubyte", labels, label_mode);
  write_idx(dir / "t10k-images-idx3-ubyte", images, (flags & 16) ? 0 : image_mode);
  write_idx(dir / "t10k-labels-idx1-ubyte", labels, label_mode);

  ImageDataOptions o;
  o.standardize = flags & 32;
  static constexpr int64_t kLimits[] = {0, 1, 3, -1};
  o.train_limit = kLimits[(flags >> 6) & 3];
  fuzz::expect_only_cnn_errors([&] {
    const TrainTest d = load_mnist(dir.string(), o);
    if (d.train.size() != d.train.y.numel()) std::abort();
  });
  return 0;
}
