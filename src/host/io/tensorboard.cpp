// TensorBoard event files (io/tensorboard.hpp): TFRecord framing with CRC-32C, and the Event
// messages built with the protobuf classes generated from TensorBoard's published schemas.
#include "io/tensorboard.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "cnn/error.hpp"
#include "cnn/pictures.hpp"

#if CNN_WITH_PROTOBUF
#include "tensorboard/compat/proto/event.pb.h"
#endif

namespace cnn::tfevents {

namespace {

// Byte-at-a-time table of the reflected Castagnoli polynomial (Debian ships no CRC-32C
// library; event files are small, so this is fast enough).
constexpr std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = crc32c_table();

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(char((v >> (8 * i)) & 0xFF));
}

}  // namespace

uint32_t crc32c(std::string_view bytes, uint32_t crc) {
  crc = ~crc;
  for (unsigned char b : bytes) crc = kCrc32cTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

std::string frame_record(std::string_view data) {
  std::string r;
  r.reserve(data.size() + 16);
  put_le(r, data.size(), 8);
  put_le(r, mask_crc(crc32c(r)), 4);
  r.append(data);
  put_le(r, mask_crc(crc32c(data)), 4);
  return r;
}

#if CNN_WITH_PROTOBUF

namespace {

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// A new file that did not exist before (O_EXCL): events.out.tfevents.<time>.<host>.<pid>[.<n>].cnn.
int create_event_file(const std::string& log_dir, std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  CNN_CHECK(!ec, "TensorBoard: cannot create the log directory '", log_dir, "': ", ec.message());
  const long long seconds = (long long)std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  std::string name = "events.out.tfevents.";
  name.append(std::to_string(seconds)).append(".").append(host_name()).append(".").append(std::to_string(::getpid()));
  const std::string stem = (std::filesystem::path(log_dir) / name).string();
  for (int n = 0; n < 1000; ++n) {
    path = stem;
    if (n > 0) path.append(".").append(std::to_string(n));
    path.append(".cnn");
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) return fd;
    CNN_CHECK(errno == EEXIST, "TensorBoard: cannot create '", path, "': ", std::strerror(errno));
  }
  fail("TensorBoard: 1000 event files named ", stem, ".*.cnn exist already");
}

::tensorboard::Event event_at(int64_t step) {
  ::tensorboard::Event e;
  e.set_wall_time(wall_time());
  e.set_step(step);
  return e;
}

}  // namespace

EventWriter::EventWriter(const std::string& log_dir) {
  fd_ = create_event_file(log_dir, path_);
  ::tensorboard::Event e = event_at(0);
  e.set_file_version("brain.Event:2");
  write_event(e.SerializeAsString());
}

EventWriter::~EventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void EventWriter::write_event(const std::string& serialized_event) {
  const std::string record = frame_record(serialized_event);
  const char* p = record.data();
  size_t left = record.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    CNN_CHECK(n > 0, "TensorBoard: writing '", path_, "' failed: ", std::strerror(errno));
    p += n;
    left -= size_t(n);
  }
}

void EventWriter::scalar(const std::string& tag, int64_t step, double value) {
  ::tensorboard::Event e = event_at(step);
  ::tensorboard::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(float(value));
  write_event(e.SerializeAsString());
}

void EventWriter::text(const std::string& tag, int64_t step, const std::string& markdown) {
  ::tensorboard::Event e = event_at(step);
  ::tensorboard::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  ::tensorboard::TensorProto* t = v->mutable_tensor();
  t->set_dtype(::tensorboard::DT_STRING);
  t->mutable_tensor_shape();  // a scalar: no dimensions
  t->add_string_val(markdown);
  write_event(e.SerializeAsString());
}

void EventWriter::image(const std::string& tag, int64_t step, const Image& image) {
  ::tensorboard::Event e = event_at(step);
  ::tensorboard::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  ::tensorboard::Summary::Image* im = v->mutable_image();
  im->set_width(image.width);
  im->set_height(image.height);
  im->set_colorspace(3);  // RGB
  im->set_encoded_image_string(encode_png(image));
  write_event(e.SerializeAsString());
}

void EventWriter::sync() {
  CNN_CHECK(::fsync(fd_) == 0, "TensorBoard: fsync of '", path_, "' failed: ", std::strerror(errno));
}

#else  // built without protobuf: only the constructor is reachable, and it refuses.

EventWriter::EventWriter(const std::string& log_dir) {
  fail("TensorBoard: cannot write event files to '", log_dir,
       "': the library was built without protobuf (install libprotobuf-dev and protobuf-compiler, "
       "configure with CNN_PROTOBUF=AUTO or ON)");
}
EventWriter::~EventWriter() = default;
void EventWriter::write_event(const std::string&) {}
void EventWriter::scalar(const std::string&, int64_t, double) {}
void EventWriter::text(const std::string&, int64_t, const std::string&) {}
void EventWriter::image(const std::string&, int64_t, const Image&) {}
void EventWriter::sync() {}

#endif

}  // namespace cnn::tfevents
