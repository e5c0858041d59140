#pragma once
// Shared plumbing for the libFuzzer harnesses: a scratch folder per fuzzing process (on
// /dev/shm when it is writable, so the thousands of small files per second stay in memory),
// writing files, and the rule every harness follows: cnn::Error is the expected answer to bad
// bytes; any other exception escapes to std::terminate, which libFuzzer reports as a crash.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "cnn/error.hpp"

namespace cnn::fuzz {

namespace fs = std::filesystem;

// This process's scratch folder, emptied by reset() before each input and removed at exit.
class Scratch {
 public:
  static Scratch& get() {
    static Scratch s;
    return s;
  }
  const fs::path& root() const { return root_; }
  // Removes everything written for the previous input.
  void reset() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_, ec)) fs::remove_all(e.path(), ec);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

 private:
  Scratch() {
    std::error_code ec;
    fs::path base;
    if (const char* env = std::getenv("CNN_FUZZ_TMPDIR"); env != nullptr && *env != '\0') base = env;
    else if (::access("/dev/shm", W_OK) == 0) base = "/dev/shm";
    else base = fs::temp_directory_path(ec);
    root_ = base / ("cnn_fuzz_" + std::to_string(::getpid()));
    fs::remove_all(root_, ec);
    fs::create_directories(root_);
  }
  fs::path root_;
};

inline void write_bytes(const fs::path& path, std::string_view bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out.good()) std::abort();  // the harness itself failed: not a finding about the library
}

// Runs f; cnn::Error is expected for bad input and swallowed. Nothing else is caught.
template <class F>
void expect_only_cnn_errors(F&& f) {
  try {
    f();
  } catch (const cnn::Error&) {
  }
}

// Consumes bytes from the front of the input.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(reinterpret_cast<const char*>(data)), left_(size) {}
  uint8_t byte() {
    if (left_ == 0) return 0;
    --left_;
    return uint8_t(*p_++);
  }
  uint16_t u16() {
    const uint16_t lo = byte();
    return uint16_t(lo | uint16_t(byte()) << 8);
  }
  std::string_view take(size_t n) {
    n = std::min(n, left_);
    std::string_view s(p_, n);
    p_ += n;
    left_ -= n;
    return s;
  }
  std::string_view rest() { return take(left_); }
  size_t left() const { return left_; }

 private:
  const char* p_;
  size_t left_;
};

}  // namespace cnn::fuzz
