#pragma once
// TensorBoard event files: a sequence of TFRecords, each a serialized tensorboard.Event
// (third_party/tensorboard/compat/proto/event.proto). A record is
//   uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// all little-endian. Every record goes to the file in one write(), so a crash leaves every
// complete record readable (TensorBoard's reader stops quietly at a cut-short last record).
// The framing and CRC-32C need no protobuf; the writer does (built without it, constructing
// one throws cnn::Error saying so).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace cnn {

struct Image;

namespace tfevents {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as in RFC 3720 (iSCSI) and TFRecord.
// `crc` continues an earlier value: crc32c(b, crc32c(a)) == crc32c(a + b).
uint32_t crc32c(std::string_view bytes, uint32_t crc = 0);
// TFRecord's masking of a stored CRC: rotate right by 15, add 0xa282ead8.
uint32_t mask_crc(uint32_t crc);
// One TFRecord holding `data`.
std::string frame_record(std::string_view data);

// Writes one new event file in log_dir (created when missing), named
// events.out.tfevents.<unix seconds>.<host>.<pid>.cnn (with .<n> before .cnn when that name is
// taken): existing files are never opened, so appending to a run directory adds a file. The
// first record is the file_version event "brain.Event:2". Errors name the file.
class EventWriter {
 public:
  explicit EventWriter(const std::string& log_dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  const std::string& path() const { return path_; }
  // A scalar as Summary.Value.simple_value (a float32, which TensorBoard's scalars read).
  void scalar(const std::string& tag, int64_t step, double value);
  // Markdown text for the text plugin: a scalar DT_STRING tensor with plugin_name "text".
  void text(const std::string& tag, int64_t step, const std::string& markdown);
  // An RGB image as Summary.Value.image (PNG bytes, colorspace 3).
  void image(const std::string& tag, int64_t step, const Image& image);
  // fsync: the records written so far survive a power loss.
  void sync();

 private:
  void write_event(const std::string& serialized_event);
  std::string path_;
  int fd_ = -1;
};

}  // namespace tfevents
}  // namespace cnn
