#pragma once
// Writes a file so that a crash never leaves it half-written: the bytes go to a temporary
// file beside it, which is flushed to disk (fsync) and then renamed over the target; the
// previous file stays intact until the rename. Errors (disk full, permissions) raise
// cnn::Error naming the path and the system's reason, and remove the temporary file.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace cnn {

void write_file_atomically(const std::string& path, const std::vector<std::string_view>& parts);

// Reads a whole file, refusing files larger than max_bytes before allocating.
std::string read_file(const std::string& path, size_t max_bytes, const char* what);

}  // namespace cnn
