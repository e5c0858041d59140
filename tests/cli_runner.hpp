#pragma once
// Runs the built `cnn` command for the CLI tests (test_cli.cpp, test_cli_options.cpp): in one
// scratch folder per test process (removed when the tests end), stdout and stderr captured
// separately, the exit code decoded.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace cnn::cli_test {

inline const std::string kCnn = CNN_BINARY_DIR "/cnn";

inline const std::filesystem::path& scratch() {
  struct Dir {
    std::filesystem::path path = std::filesystem::temp_directory_path() / ("cnn_cli_test_" + std::to_string(::getpid()));
    Dir() { std::filesystem::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Dir dir;
  return dir.path;
}

inline std::string quoted(const std::string& s) { return "'" + s + "'"; }

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Result {
  int code = -1;
  std::string out, err;
};

// Runs `cnn <args>` in the scratch folder, with `env` ("NAME=value ...") added to its
// environment.
inline Result cnn(const std::string& args, const std::string& env = "") {
  if (!std::filesystem::exists(kCnn)) {
    ADD_FAILURE() << kCnn << " does not exist: build the command line (target cnn_cli) before the tests";
    return {};
  }
  static std::atomic<int> counter{0};
  const std::string id = std::to_string(counter++);
  const std::filesystem::path out = scratch() / ("stdout_" + id), err = scratch() / ("stderr_" + id);
  const std::string cmd = "cd " + quoted(scratch().string()) + " && " + (env.empty() ? "" : "env " + env + " ") +
                          quoted(kCnn) + " " + args + " >" + quoted(out.string()) + " 2>" + quoted(err.string());
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

inline std::string show(const Result& r) {
  return "exit " + std::to_string(r.code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

}  // namespace cnn::cli_test
