// Fuzzes the image loaders (stb_image behind load_image and load_image_folder). Input layout: a
// flags byte (extension, channels), the requested height and width bytes, then the image file's
// bytes, written into a class folder.
#include <cstdint>

#include "cnn/data.hpp"
#include "fuzz_util.hpp"

using namespace cnn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& scratch = fuzz::Scratch::get();
  scratch.reset();
  fuzz::Input in(data, size);
  const uint8_t flags = in.byte();
  const int height = 1 + in.byte() % 16, width = 1 + in.byte() % 16;
  const std::string_view bytes = in.rest();
  static const char* kExtensions[] = {".png", ".jpg", ".bmp", ".JPEG"};
  const int channels = (flags & 4) ? 1 : 3;

  const fuzz::fs::path root = scratch.root() / "images";
  const fuzz::fs::path file = root / "class_a" / (std::string("image") + kExtensions[flags & 3]);
  fuzz::write_bytes(file, bytes);

  fuzz::expect_only_cnn_errors([&] {
    const Dataset d = load_image_folder(root.string(), channels, height, width);
    if (d.size() != 1 || d.x.dim(1) != channels) std::abort();
  });
  bool decoded = false;
  fuzz::expect_only_cnn_errors([&] {
    load_image(file.string(), channels, height, width);
    decoded = true;
  });
  // At its own size too, once it is known to decode (the library's checks have bounded its size).
  if (decoded) fuzz::expect_only_cnn_errors([&] { load_image(file.string(), channels); });
  return 0;
}
