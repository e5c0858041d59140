#pragma once
// Small helpers shared by the CPU test suites.
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "cnn/data.hpp"
#include "cnn/error.hpp"

namespace cnn::test {

// Runs f and returns the message of the cnn::Error it throws. Any other outcome comes back
// as a message no assertion looks for, so a test expecting a fragment fails and shows it.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("UNEXPECTED EXCEPTION TYPE: ") + e.what();
  }
  return "NO ERROR THROWN";
}

// Where the real data set `name` is (find_data_dir: $CNN_DATA, ./data, then ../shared/data beside
// the checkout, as CI has it); empty when absent, with every place looked at in *why for the
// test's skip message (.ci/summary counts the tests that ran on real data and those skipped).
inline std::string real_data_dir(const std::string& name, std::string* why) {
  try {
    return find_data_dir(name);
  } catch (const Error& e) {
    *why = e.what();
  }
  return "";
}

// Sets (or, with nullptr, clears) an environment variable for one scope; restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      old_ = old;
      had_ = true;
    }
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

}  // namespace cnn::test

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)
