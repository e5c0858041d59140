// Image files through stb_image (the compiled implementation comes from Debian's libstb):
// load_image and load_image_folder. Image dimensions are read from the file header and checked
// before anything is decoded, so a hostile header cannot make us allocate gigabytes.
#include <stb_image.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <system_error>
#include <vector>

#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "data/data_internal.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

struct ImageInfo {
  int width = 0, height = 0, components = 0;
};

std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r != nullptr ? r : "unknown error";
}

void check_size(const std::string& path, int64_t width, int64_t height) {
  CNN_CHECK(width <= detail::kMaxImageSide && height <= detail::kMaxImageSide &&
                width * height <= detail::kMaxImagePixels,
            "image ", path, " is ", width, "x", height, " pixels, larger than the ", detail::kMaxImageSide, "x",
            detail::kMaxImageSide, " (", detail::kMaxImagePixels, " pixels) this loader accepts; refused before decoding");
}

using FilePtr = std::unique_ptr<FILE, int (*)(FILE*)>;

int64_t be32(const uint8_t* p) {
  return (int64_t(p[0]) << 24) | (int64_t(p[1]) << 16) | (int64_t(p[2]) << 8) | int64_t(p[3]);
}
int64_t le32(const uint8_t* p) {
  return int64_t(p[0]) | (int64_t(p[1]) << 8) | (int64_t(p[2]) << 16) | (int64_t(p[3]) << 24);
}

// PNG stores its size in the first chunk (IHDR): read it ourselves so that a huge size is
// reported as such (stb_image's own check only says "too large"). Then walk the chunks: one
// claiming more bytes than the file has left is refused here, because stb_image allocates a
// chunk's claimed length before reading it (an 80-byte file could ask for 2 GiB).
void precheck_png(const std::string& path, FILE* f, int64_t file_size) {
  std::array<uint8_t, 24> h{};
  if (std::fread(h.data(), 1, h.size(), f) != h.size()) return;  // stb_image names the problem
  if (std::string(h.begin() + 12, h.begin() + 16) == "IHDR") check_size(path, be32(&h[16]), be32(&h[20]));
  int64_t at = 8;
  while (at + 8 <= file_size) {
    std::array<uint8_t, 8> chunk{};
    if (std::fseek(f, long(at), SEEK_SET) != 0 || std::fread(chunk.data(), 1, 8, f) != 8) return;
    const int64_t length = be32(chunk.data());
    std::string type(chunk.begin() + 4, chunk.end());
    for (char& c : type) c = std::isalpha(static_cast<unsigned char>(c)) ? c : '?';
    CNN_CHECK(length <= file_size - at - 8, "image ", path, " is a PNG whose '", type, "' chunk at byte ", at,
              " claims ", length, " bytes, more than the ", file_size, "-byte file has left: it is truncated or corrupt");
    if (type == "IEND") return;
    at += 12 + length;
  }
}

// An uncompressed BMP must hold its rows: stb_image would decode a truncated one as black.
void precheck_bmp(const std::string& path, FILE* f, int64_t file_size) {
  std::array<uint8_t, 34> h{};
  if (std::fread(h.data(), 1, h.size(), f) != h.size()) return;  // stb_image names the problem
  const int64_t offset = le32(&h[10]), header = le32(&h[14]);
  int64_t width = 0, height = 0, bits = 0, compression = 0;
  if (header == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
    width = int64_t(h[18]) | (int64_t(h[19]) << 8);
    height = int64_t(h[20]) | (int64_t(h[21]) << 8);
    bits = int64_t(h[24]) | (int64_t(h[25]) << 8);
  } else if (header >= 40) {
    width = int32_t(uint32_t(le32(&h[18])));
    height = int32_t(uint32_t(le32(&h[22])));
    bits = int64_t(h[28]) | (int64_t(h[29]) << 8);
    compression = le32(&h[30]);
  } else {
    return;
  }
  height = height < 0 ? -height : height;  // negative: rows top to bottom
  if (width <= 0 || height <= 0 || bits <= 0 || bits > 32) return;
  check_size(path, width, height);
  if (compression != 0 && compression != 3) return;  // RLE and the rest: stb_image refuses them
  // Rows are padded to 4 bytes; the last row's padding may be missing.
  const int64_t row = (width * bits + 31) / 32 * 4;
  const int64_t needed = offset + row * (height - 1) + (width * bits + 7) / 8;
  CNN_CHECK(needed <= file_size, "image ", path, " is a ", width, "x", height, " BMP that needs ", needed,
            " bytes, but the file has ", file_size, ": it is truncated");
}

// What the first bytes say the file is, for error messages.
std::string sniff(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  std::array<uint8_t, 8> h{};
  if (!f || std::fread(h.data(), 1, h.size(), f.get()) != h.size()) return "; the file is empty or shorter than 8 bytes";
  const char* kind = h[0] == 0x89 && h[1] == 'P' && h[2] == 'N' && h[3] == 'G' ? "PNG"
                     : h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF           ? "JPEG"
                     : h[0] == 'B' && h[1] == 'M'                             ? "BMP"
                                                                              : nullptr;
  if (kind == nullptr) return "; its first bytes match no supported format";
  return std::string("; it starts like a ") + kind + " file, so it is probably truncated or corrupt";
}

// Reads a file byte by byte through a buffer.
class ByteReader {
 public:
  explicit ByteReader(FILE* f) : f_(f), buffer_(size_t(1) << 16) {}
  int get() {  // -1 at the end
    if (pos_ == len_) {
      len_ = std::fread(buffer_.data(), 1, buffer_.size(), f_);
      pos_ = 0;
      if (len_ == 0) return -1;
    }
    return buffer_[pos_++];
  }

 private:
  FILE* f_;
  std::vector<uint8_t> buffer_;
  size_t pos_ = 0, len_ = 0;
};

// stb_image 2.27 (Debian 12's libstb) trusts two things in a JPEG that a corrupt file can break:
// a Huffman table (DHT) of more than 256 codes overruns the table it is read into, and a scan
// that uses a Huffman table no DHT segment has defined decodes with uninitialised memory
// (garbage lookups: out-of-bounds reads, or stb_image's assert aborting the process). Both are
// refused here; everything else is left to stb_image.
void precheck_jpeg(const std::string& path, FILE* f) {
  ByteReader r(f);
  auto get = [&] { return std::max(r.get(), 0); };  // like stb_image, zeros past the end
  if (r.get() != 0xFF || r.get() != 0xD8) return;
  std::array<bool, 4> dc_defined{}, ac_defined{};
  bool progressive = false;
  std::vector<uint8_t> segment;
  for (;;) {
    int b = r.get();
    if (b < 0) return;
    if (b != 0xFF) continue;  // entropy-coded data
    int m = r.get();
    while (m == 0xFF) m = r.get();
    if (m < 0 || m == 0xD9) return;  // the end, or EOI
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;  // stuffing, TEM, RSTn, SOI
    const int hi = r.get(), lo = r.get();
    if (lo < 0 || ((hi << 8) | lo) < 2) return;  // stb_image reports it
    int left = ((hi << 8) | lo) - 2;
    if (m == 0xC4) {
      // DHT: tables of (class << 4 | id, 16 code counts, the codes' values), read as stb_image
      // reads them: table after table while the segment has bytes left, even past its end.
      while (left > 0) {
        const int q = get(), table_class = q >> 4, id = q & 15;
        if (table_class > 1 || id > 3) return;  // stb_image reports it
        int codes = 0;
        for (int i = 0; i < 16; ++i) codes += get();
        CNN_CHECK(codes <= 256, "image ", path, " is a corrupt JPEG: a Huffman table holds ", codes,
                  " codes (at most 256)");
        (table_class == 0 ? dc_defined : ac_defined)[size_t(id)] = true;
        for (int i = 0; i < codes; ++i) get();
        left -= 17 + codes;
      }
      if (left != 0) return;  // stb_image reports it
      continue;
    }
    segment.assign(size_t(left), 0);
    for (uint8_t& x : segment) x = uint8_t(get());
    if (m == 0xC2) progressive = true;
    if (m == 0xDA) {  // SOS: components (id, DC table << 4 | AC table), Ss, Se, Ah << 4 | Al
      const size_t components = segment.empty() ? 0 : segment[0];
      if (components < 1 || components > 4 || segment.size() != 4 + 2 * components) return;  // stb_image reports it
      const int ss = segment[1 + 2 * components], ah = segment[3 + 2 * components] >> 4;
      // Progressive scans use the DC table only in a first DC scan, the AC table only in AC scans.
      const bool uses_dc = !progressive || (ss == 0 && ah == 0), uses_ac = !progressive || ss > 0;
      for (size_t c = 0; c < components; ++c) {
        const int dc = segment[2 + 2 * c] >> 4, ac = segment[2 + 2 * c] & 15;
        if (dc > 3 || ac > 3) return;  // stb_image reports it
        CNN_CHECK((!uses_dc || dc_defined[size_t(dc)]) && (!uses_ac || ac_defined[size_t(ac)]), "image ", path,
                  " is a corrupt JPEG: a scan uses a Huffman table that no DHT segment defines");
      }
    }
  }
}

// The most pixels a PNG, JPEG or BMP file can hold per byte: deflate packs at most 1,032 bytes
// into one, and a 1-bit PNG holds 8 pixels a byte (JPEG needs at least a bit per 8x8 block;
// BMP stores every pixel). A header claiming more pixels than that for its file's size
// belongs to a truncated or forged file, and decoding it would allocate for nothing.
constexpr int64_t kMaxPixelsPerByte = 8 * 1032;

ImageInfo probe(const std::string& path) {
  std::error_code ec;
  CNN_CHECK(fs::is_regular_file(path, ec), "image ", path, " does not exist or is not a file");
  const auto file_size = int64_t(fs::file_size(path, ec));
  CNN_CHECK(!ec, "image ", path, ": cannot read its size: ", ec.message());
  // Only PNG, JPEG and BMP are decoded: stb_image would also decode GIF, PSD, TGA, HDR, PIC and
  // PNM content under any file name, which this loader does not promise (nor test).
  FilePtr f(std::fopen(path.c_str(), "rb"), &std::fclose);
  CNN_CHECK(f != nullptr, "image ", path, " cannot be opened");
  std::array<uint8_t, 8> head{};
  const size_t got = std::fread(head.data(), 1, head.size(), f.get());
  static constexpr std::array<uint8_t, 8> png_signature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const bool png = got == 8 && head == png_signature;
  const bool jpeg = got >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF;
  const bool bmp = got >= 2 && head[0] == 'B' && head[1] == 'M';
  if (!png && !jpeg && !bmp) fail("image ", path, " is not a readable PNG/JPEG/BMP image", sniff(path));
  std::rewind(f.get());
  if (png) precheck_png(path, f.get(), file_size);
  if (bmp) precheck_bmp(path, f.get(), file_size);
  if (jpeg) precheck_jpeg(path, f.get());
  f.reset();
  ImageInfo info;
  if (!stbi_info(path.c_str(), &info.width, &info.height, &info.components))
    fail("image ", path, " is not a readable PNG/JPEG/BMP image (stb_image: ", stb_reason(), ")", sniff(path));
  CNN_CHECK(info.width > 0 && info.height > 0, "image ", path, " has size ", info.width, "x", info.height);
  check_size(path, info.width, info.height);
  CNN_CHECK(int64_t(info.width) * info.height <= kMaxPixelsPerByte * file_size, "image ", path, " claims ",
            info.width, "x", info.height, " pixels but has only ", file_size, " bytes, more pixels than a PNG, JPEG or ",
            "BMP of that size can hold: it is truncated or corrupt; refused before decoding");
  return info;
}

// Decoded 8-bit pixels: `want` channels (1 grey, 3 RGB), w x h.
struct Pixels {
  std::unique_ptr<stbi_uc, void (*)(void*)> data{nullptr, &stbi_image_free};
  int w = 0, h = 0, want = 0;
};

// Decodes `path` (already probed) for `channels` output channels.
Pixels decode(const std::string& path, const ImageInfo& info, int channels) {
  // Grey sources decode as one channel (exact); colour sources as RGB, made grey with BT.601.
  Pixels px;
  px.want = (channels == 1 && info.components <= 2) ? 1 : 3;
  int n = 0;
  px.data.reset(stbi_load(path.c_str(), &px.w, &px.h, &n, px.want));
  if (!px.data) fail("image ", path, " cannot be decoded: ", stb_reason());
  CNN_CHECK(px.w == info.width && px.h == info.height, "image ", path, " decoded as ", px.w, "x", px.h,
            " but its header says ", info.width, "x", info.height);
  return px;
}

// Writes decoded pixels into out[channels][height][width], resized nearest-neighbour.
void resample(const Pixels& pixels, int channels, int height, int width, float* out) {
  const int w = pixels.w, h = pixels.h, want = pixels.want;
  const stbi_uc* p = pixels.data.get();
  constexpr float s = 1.0f / 255.0f;
  const int64_t plane = int64_t(height) * width;
  for (int y = 0; y < height; ++y) {
    // Nearest neighbour, pixel centres aligned: an integer upscale repeats every pixel exactly.
    const int64_t sy = std::min<int64_t>(h - 1, (2 * int64_t(y) + 1) * h / (2 * int64_t(height)));
    for (int x = 0; x < width; ++x) {
      const int64_t sx = std::min<int64_t>(w - 1, (2 * int64_t(x) + 1) * w / (2 * int64_t(width)));
      const stbi_uc* px = p + (sy * w + sx) * want;
      const int64_t o = int64_t(y) * width + x;
      if (want == 1) {
        for (int c = 0; c < channels; ++c) out[c * plane + o] = float(px[0]) * s;
      } else if (channels == 1) {
        out[o] = detail::luma01(px[0], px[1], px[2]);
      } else {
        for (int c = 0; c < 3; ++c) out[c * plane + o] = float(px[c]) * s;
      }
    }
  }
}

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

void check_request(const char* what, int channels, int height, int width) {
  CNN_CHECK(channels == 1 || channels == 3, what, ": channels must be 1 or 3, got ", channels);
  CNN_CHECK(height >= 0 && width >= 0 && (height > 0) == (width > 0), what, ": height and width must both be ",
            "positive (or both 0 to keep the image's own size), got ", height, "x", width);
  CNN_CHECK(int64_t(height) <= detail::kMaxImageSide && int64_t(width) <= detail::kMaxImageSide, what,
            ": requested size ", height, "x", width, " is larger than ", detail::kMaxImageSide, " a side");
}

}  // namespace

Tensor load_image(const std::string& path, int channels, int height, int width) {
  check_request("load_image", channels, height, width);
  const ImageInfo info = probe(path);
  if (height == 0) {
    height = info.height;
    width = info.width;
  }
  // Decoded first: a file that does not decode fails before the (4x larger) tensor exists.
  const Pixels pixels = decode(path, info, channels);
  Tensor t({1, channels, height, width});
  resample(pixels, channels, height, width, t.data());
  return t;
}

Dataset load_image_folder(const std::string& dir, int channels, int height, int width) {
  check_request("load_image_folder", channels, height, width);
  CNN_CHECK(height > 0, "load_image_folder: height and width must be positive, got ", height, "x", width);
  std::error_code ec;
  CNN_CHECK(fs::is_directory(dir, ec), "image folder '", dir, "' does not exist or is not a directory");

  std::vector<fs::path> class_dirs;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && !name.empty() && name[0] != '.') class_dirs.push_back(entry.path());
  }
  std::sort(class_dirs.begin(), class_dirs.end());
  CNN_CHECK(!class_dirs.empty(), "image folder '", dir,
            "' has no class subfolders (expected one subfolder per class holding its images)");

  Dataset d;
  std::vector<std::pair<std::string, int>> files;  // path, class
  for (size_t c = 0; c < class_dirs.size(); ++c) {
    std::vector<fs::path> images;
    for (const auto& entry : fs::directory_iterator(class_dirs[c]))
      if (entry.is_regular_file() && is_image_file(entry.path())) images.push_back(entry.path());
    std::sort(images.begin(), images.end());
    CNN_CHECK(!images.empty(), "image folder '", dir, "': class folder '", class_dirs[c].filename().string(),
              "' holds no .png/.jpg/.jpeg/.bmp images");
    d.class_names.push_back(class_dirs[c].filename().string());
    for (const auto& p : images) files.emplace_back(p.string(), int(c));
  }

  const auto n = int64_t(files.size());
  const int64_t per_image = int64_t(channels) * height * width;
  d.x = Tensor({n, channels, height, width});
  d.y = Tensor({n});
  for (int64_t i = 0; i < n; ++i) {
    const auto& [path, label] = files[size_t(i)];
    resample(decode(path, probe(path), channels), channels, height, width, d.x.data() + i * per_image);
    d.y.data()[i] = float(label);
  }
  return d;
}

}  // namespace cnn
