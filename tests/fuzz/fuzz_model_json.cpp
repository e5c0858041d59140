// Fuzzes the model JSON reader: the input is read with Sequential::from_json_file and, when it
// parses as JSON, with Sequential::from_json. A description the reader accepts must round-trip:
// from_json(m.to_json()) describes the same model.
#include <cstdint>
#include <cstdio>
#include <optional>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "fuzz_util.hpp"

using namespace cnn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& scratch = fuzz::Scratch::get();
  scratch.reset();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string path = (scratch.root() / "model.json").string();
  fuzz::write_bytes(path, text);
  fuzz::expect_only_cnn_errors([&] { Sequential::from_json_file(path); });

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    return 0;  // not JSON: from_json_file above had to say so with a cnn::Error
  }
  std::optional<Sequential> m;
  try {
    m = Sequential::from_json(j);
  } catch (const Error&) {
    return 0;
  }
  if (m->compiled()) (void)m->summary_string();
  const nlohmann::json described = m->to_json();
  try {
    if (Sequential::from_json(described).to_json() == described) return 0;
    std::fprintf(stderr, "round trip changed the description:\n%s\n", described.dump().c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "from_json refused to_json's output: %s\n%s\n", e.what(), described.dump().c_str());
  }
  std::abort();
}
