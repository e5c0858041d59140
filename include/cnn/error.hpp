#pragma once
// cnn::Error: the one exception type the library throws for bad input, bad files and
// device failures. Its message always names the operation and the values involved.
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cnn {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
inline void append_all(std::ostringstream&) {}
template <class T, class... Rest>
void append_all(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append_all(os, rest...);
}
}  // namespace detail

// Builds a message from its parts: fail("Conv2D: kernel ", k, " larger than input ", h).
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  detail::append_all(os, parts...);
  throw Error(os.str());
}

// "[2, 3, 32, 32]": shapes in messages are written one way everywhere.
template <class Int>
std::string shape_str(const std::vector<Int>& dims) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? ", " : "") << dims[i];
  os << ']';
  return os.str();
}

}  // namespace cnn

// Precondition check that throws cnn::Error with the given message parts.
#define CNN_CHECK(cond, ...)              \
  do {                                    \
    if (!(cond)) ::cnn::fail(__VA_ARGS__); \
  } while (0)
