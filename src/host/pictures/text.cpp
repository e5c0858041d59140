// Text for cnn/pictures.hpp: glyphs rasterised by stb_truetype from DejaVu Sans (the compiled
// stb_truetype comes from Debian's libstb), drawn as anti-aliased coverage.
#include <stb_truetype.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>

#include "cnn/error.hpp"
#include "cnn/pictures.hpp"

namespace fs = std::filesystem;

namespace cnn {
namespace {

std::vector<std::string> font_candidates() {
  std::vector<std::string> c;
  if (const char* env = std::getenv("CNN_FONT"); env != nullptr && *env != '\0') c.emplace_back(env);
  for (const char* p : {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf",
                        "/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
                        "/usr/local/share/fonts/DejaVuSans.ttf", "/Library/Fonts/DejaVuSans.ttf"})
    c.emplace_back(p);
  return c;
}

struct Font {
  std::vector<unsigned char> data;
  stbtt_fontinfo info{};
  int ascent = 0, descent = 0, line_gap = 0;

  explicit Font(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    CNN_CHECK(in.good(), "font: cannot open ", path);
    data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    CNN_CHECK(!data.empty() && stbtt_InitFont(&info, data.data(), stbtt_GetFontOffsetForIndex(data.data(), 0)),
              "font: ", path, " is not a TrueType font stb_truetype can read");
    stbtt_GetFontVMetrics(&info, &ascent, &descent, &line_gap);
  }
  float scale(float size) const { return stbtt_ScaleForPixelHeight(&info, size); }
};

const Font& font() {
  static const Font f(font_path());  // a failed load throws and is retried on the next call
  return f;
}

// UTF-8 to code points; malformed bytes become U+FFFD.
std::vector<int> decode_utf8(const std::string& s) {
  std::vector<int> out;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    int cp = len == 1 ? b : len == 2 ? (b & 0x1f) : len == 3 ? (b & 0x0f) : (b & 0x07);
    bool ok = len > 0 && i + size_t(len) <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      const auto cb = static_cast<unsigned char>(s[i + size_t(k)]);
      ok = (cb >> 6) == 2;
      cp = (cp << 6) | (cb & 0x3f);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
    } else {
      out.push_back(cp);
      i += size_t(len);
    }
  }
  return out;
}

// Pen positions (in pixels, from the left edge) of each glyph and the total advance.
std::vector<float> layout(const Font& f, const std::vector<int>& cps, float scale, float* advance) {
  std::vector<float> pen(cps.size());
  float x = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    pen[i] = x;
    int adv = 0, lsb = 0;
    stbtt_GetCodepointHMetrics(&f.info, cps[i], &adv, &lsb);
    x += float(adv) * scale;
    if (i + 1 < cps.size()) x += float(stbtt_GetCodepointKernAdvance(&f.info, cps[i], cps[i + 1])) * scale;
  }
  *advance = x;
  return pen;
}

// Coverage (0..255) of `text` in a text_width x text_height box.
struct Mask {
  int w = 0, h = 0;
  std::vector<unsigned char> a;
};

Mask render(const std::string& text, float size) {
  CNN_CHECK(size >= 4 && size <= 512, "text: size ", size, " outside 4..512 pixels");
  const Font& f = font();
  const float scale = f.scale(size);
  const auto cps = decode_utf8(text);
  float advance = 0;
  const auto pen = layout(f, cps, scale, &advance);
  Mask m;
  m.w = std::max(0, int(std::ceil(advance)));
  m.h = text_height(size);
  m.a.assign(size_t(m.w) * size_t(m.h), 0);
  const int baseline = int(std::lround(float(f.ascent) * scale));
  std::vector<unsigned char> glyph;
  for (size_t i = 0; i < cps.size(); ++i) {
    const int ix = int(std::floor(pen[i]));
    const float shift = pen[i] - float(ix);
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    stbtt_GetCodepointBitmapBoxSubpixel(&f.info, cps[i], scale, scale, shift, 0, &x0, &y0, &x1, &y1);
    const int gw = x1 - x0, gh = y1 - y0;
    if (gw <= 0 || gh <= 0) continue;
    glyph.assign(size_t(gw) * size_t(gh), 0);
    stbtt_MakeCodepointBitmapSubpixel(&f.info, glyph.data(), gw, gh, gw, scale, scale, shift, 0, cps[i]);
    for (int gy = 0; gy < gh; ++gy) {
      const int my = baseline + y0 + gy;
      if (my < 0 || my >= m.h) continue;
      for (int gx = 0; gx < gw; ++gx) {
        const int mx = ix + x0 + gx;
        if (mx < 0 || mx >= m.w) continue;
        unsigned char& dst = m.a[size_t(my) * size_t(m.w) + size_t(mx)];
        dst = std::max(dst, glyph[size_t(gy) * size_t(gw) + size_t(gx)]);
      }
    }
  }
  return m;
}

int anchor(int pos, int extent, Align align) {
  switch (align) {
    case Align::Center: return pos - extent / 2;
    case Align::Right: return pos - extent;
    default: return pos;
  }
}

}  // namespace

std::string font_path() {
  const auto candidates = font_candidates();
  std::error_code ec;
  for (const auto& c : candidates)
    if (fs::is_regular_file(c, ec)) return c;
  std::ostringstream os;
  os << "font DejaVuSans.ttf not found (install fonts-dejavu-core, or set CNN_FONT to a .ttf file); looked in:";
  for (const auto& c : candidates) os << "\n  " << c;
  throw Error(os.str());
}

int text_width(const std::string& text, float size) {
  const Font& f = font();
  float advance = 0;
  layout(f, decode_utf8(text), f.scale(size), &advance);
  return std::max(0, int(std::ceil(advance)));
}

int text_height(float size) {
  const Font& f = font();
  return int(std::ceil(float(f.ascent - f.descent) * f.scale(size)));
}

Rect draw_text(Image& image, int x, int y, const std::string& text, Color c, float size, Align align) {
  const Mask m = render(text, size);
  const int left = anchor(x, m.w, align);
  for (int my = 0; my < m.h; ++my)
    for (int mx = 0; mx < m.w; ++mx)
      if (unsigned char a = m.a[size_t(my) * size_t(m.w) + size_t(mx)])
        image.blend(left + mx, y + my, c, float(a) / 255.0f);
  return {left, y, m.w, m.h};
}

Rect draw_text_vertical(Image& image, int x, int y, const std::string& text, Color c, float size, Align align) {
  const Mask m = render(text, size);
  // Along the reading direction (upwards) the text starts at `start` (its bottom end).
  const int start = align == Align::Left ? y : align == Align::Center ? y + m.w / 2 : y + m.w;
  const int top = start - m.w;
  // Counter-clockwise: mask (mx, my) goes to (x + my, top + m.w - 1 - mx).
  for (int my = 0; my < m.h; ++my)
    for (int mx = 0; mx < m.w; ++mx)
      if (unsigned char a = m.a[size_t(my) * size_t(m.w) + size_t(mx)])
        image.blend(x + my, top + m.w - 1 - mx, c, float(a) / 255.0f);
  return {x, top, m.h, m.w};
}

}  // namespace cnn
