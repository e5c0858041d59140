// Fuzzes the CIFAR-10 binary reader (detail::load_cifar10_files with a small number of records
// per file). Input layout: one flags byte, one limits byte, a length byte and that many bytes of
// batches.meta.txt, then the batch file's bytes, written as data_batch_1.bin (and, by flag, as
// data_batch_3.bin and test_batch.bin).
#include <cstdint>

#include "cnn/data.hpp"
#include "fuzz_util.hpp"
#include "host/data/data_internal.hpp"

using namespace cnn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& scratch = fuzz::Scratch::get();
  scratch.reset();
  fuzz::Input in(data, size);
  const uint8_t flags = in.byte(), limits = in.byte();
  const std::string_view meta = in.take(in.byte());
  const std::string_view batch = in.rest();

  const fuzz::fs::path dir = scratch.root() / "cifar";
  fuzz::fs::create_directories(dir);
  fuzz::write_bytes(dir / "data_batch_1.bin", batch);
  if (flags & 1) fuzz::write_bytes(dir / "data_batch_3.bin", batch);
  if (!(flags & 2)) fuzz::write_bytes(dir / "test_batch.bin", batch);
  if (flags & 4) fuzz::write_bytes(dir / "batches.meta.txt", meta);

  ImageDataOptions o;
  o.grayscale = flags & 8;
  o.standardize = flags & 16;
  static constexpr int64_t kLimits[] = {0, 1, 2, 3, 5, 100, -1, 0};
  o.train_limit = kLimits[limits & 7];
  o.test_limit = kLimits[(limits >> 3) & 7];
  // Records per file: what the batch holds (the size check passes for whole records), or one
  // more or less than that by flag.
  int64_t records = std::max<int64_t>(1, int64_t(batch.size()) / 3073);
  if (flags & 32) records += 1;
  if ((flags & 64) && records > 1) records -= 1;
  if (flags & 128) records = 0;  // refused: must be positive

  fuzz::expect_only_cnn_errors([&] {
    const TrainTest d = detail::load_cifar10_files(dir.string(), o, records);
    if (d.train.size() > 0 && d.train.x.dim(1) != (o.grayscale ? 1 : 3)) std::abort();
  });
  fuzz::expect_only_cnn_errors([&] { load_cifar10(dir.string(), o); });  // 10,000 records per file
  return 0;
}
