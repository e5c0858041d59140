#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "cnn/error.hpp"

namespace cnn {

void write_file_atomically(const std::string& path, const std::vector<std::string_view>& parts) {
  std::string tmp = path;
  tmp.append(".tmp.").append(std::to_string(::getpid()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CNN_CHECK(fd >= 0, "cannot save '", path, "': cannot create '", tmp, "': ", std::strerror(errno));
  auto abandon = [&](const char* step) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    fail("cannot save '", path, "': ", step, " failed: ", std::strerror(err), "; the previous file is unchanged");
  };
  for (std::string_view part : parts) {
    const char* p = part.data();
    size_t left = part.size();
    while (left > 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) abandon("write");
      p += n;
      left -= size_t(n);
    }
  }
  if (::fsync(fd) != 0) abandon("fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot save '", path, "': close failed: ", std::strerror(err), "; the previous file is unchanged");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot save '", path, "': rename failed: ", std::strerror(err), "; the previous file is unchanged");
  }
  // Make the rename itself durable.
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::string read_file(const std::string& path, size_t max_bytes, const char* what) {
  std::error_code ec;
  CNN_CHECK(std::filesystem::is_regular_file(path, ec), what, ": '", path, "' does not exist or is not a file");
  const auto size = std::filesystem::file_size(path, ec);
  CNN_CHECK(!ec, what, ": cannot read the size of '", path, "': ", ec.message());
  CNN_CHECK(size <= max_bytes, what, ": '", path, "' is ", size, " bytes, more than the ", max_bytes,
            " bytes allowed");
  std::ifstream in(path, std::ios::binary);
  CNN_CHECK(in.good(), what, ": cannot open '", path, "'");
  std::string data(size, '\0');
  in.read(data.data(), std::streamsize(size));
  CNN_CHECK(in.gcount() == std::streamsize(size), what, ": reading '", path, "' failed");
  return data;
}

}  // namespace cnn
