#pragma once
// Shared helpers for the op tests: seeded random arrays and the gradient-check assertion.
#include <gtest/gtest.h>

#include <vector>

#include "cnn/gradcheck.hpp"
#include "cnn/rng.hpp"

namespace cnn::test {

inline std::vector<double> random_vector(size_t n, Rng& rng, double lo = -1, double hi = 1) {
  std::vector<double> v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

inline std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// Relative error bound for double-precision central differences (step 1e-6): truncation
// error is O(h^2) ~ 1e-12 and rounding O(eps / h) ~ 1e-10, so 1e-6 leaves wide margin while
// any real mistake in a gradient (a missing term, a wrong index) shows up as O(1).
inline constexpr double kGradTolerance = 1e-6;

inline void expect_gradients_match(const std::vector<GradCheckRow>& rows, double tol = kGradTolerance) {
  for (const auto& row : rows) {
    EXPECT_GT(row.checked, 0) << row.name;
    EXPECT_LE(row.relative_error, tol) << row.name << ": relative error " << row.relative_error
                                       << ", max abs error " << row.max_abs_error << " at element "
                                       << row.worst_index;
  }
}

// sum(y * weights): turns an op with array output into a scalar objective whose gradient
// with respect to y is `weights`.
inline double weighted_sum(const std::vector<double>& y, const std::vector<double>& weights) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += y[i] * weights[i];
  return s;
}

}  // namespace cnn::test
