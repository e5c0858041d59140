#include "cnn/gradcheck.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <numeric>

#include "cnn/error.hpp"
#include "cnn/rng.hpp"

namespace cnn {

std::vector<GradCheckRow> check_gradients(const std::function<double()>& objective,
                                          const std::vector<GradTarget>& targets,
                                          const GradCheckOptions& options) {
  std::vector<GradCheckRow> rows;
  Rng rng(options.seed);
  for (const GradTarget& target : targets) {
    CNN_CHECK(target.values && target.analytic && target.values->size() == target.analytic->size(),
              "check_gradients: target '", target.name, "' has ", target.values ? target.values->size() : 0,
              " values but ", target.analytic ? target.analytic->size() : 0, " analytic gradients");
    std::vector<double>& v = *target.values;
    const int64_t size = int64_t(v.size());
    std::vector<int64_t> indices(static_cast<size_t>(size));
    std::iota(indices.begin(), indices.end(), 0);
    if (options.max_elements > 0 && size > options.max_elements) {
      for (int64_t i = 0; i < options.max_elements; ++i)  // partial Fisher-Yates
        std::swap(indices[size_t(i)], indices[size_t(i + int64_t(rng.below(uint64_t(size - i))))]);
      indices.resize(size_t(options.max_elements));
    }
    GradCheckRow row{target.name, int64_t(indices.size()), 0, 0, -1};
    double diff2 = 0, a2 = 0, n2 = 0;
    const double f0 = options.accept_subgradients_at_kinks ? objective() : 0.0;
    // Slopes to the right and to the left of element i.
    auto slopes = [&](int64_t i, double h) {
      const double saved = v[size_t(i)];
      v[size_t(i)] = saved + h;
      const double plus = objective();
      v[size_t(i)] = saved - h;
      const double minus = objective();
      v[size_t(i)] = saved;
      return std::pair<double, double>{(plus - f0) / h, (f0 - minus) / h};
    };
    auto central = [&](int64_t i, double h) {
      const auto [right, left] = slopes(i, h);
      return std::tuple<double, double, double>{(right + left) / 2, right, left};
    };
    auto close = [](double a, double b) { return std::abs(a - b) <= 1e-7 * std::max({std::abs(a), std::abs(b), 1e-3}); };
    for (int64_t i : indices) {
      const double analytic = (*target.analytic)[size_t(i)];
      auto [numeric, right, left] = central(i, options.step);
      for (double shrink : {10.0, 100.0}) {
        if (!options.retry_smaller_steps || close(analytic, numeric)) break;
        const auto [retry, r, l] = central(i, options.step / shrink);
        if (std::abs(analytic - retry) < std::abs(analytic - numeric)) {
          numeric = retry;
          right = r;
          left = l;
        }
      }
      if (options.accept_subgradients_at_kinks && !close(analytic, numeric) && !close(right, left) &&
          analytic >= std::min(right, left) - 1e-6 && analytic <= std::max(right, left) + 1e-6) {
        numeric = analytic;
        ++row.kinks;
      }
      const double err = std::abs(analytic - numeric);
      if (err > row.max_abs_error || row.worst_index < 0) {
        row.max_abs_error = err;
        row.worst_index = i;
      }
      diff2 += err * err;
      a2 += analytic * analytic;
      n2 += numeric * numeric;
    }
    row.relative_error = std::sqrt(diff2) / std::max({std::sqrt(a2), std::sqrt(n2), 1e-300});
    if (a2 == 0 && n2 == 0) row.relative_error = 0;
    rows.push_back(row);
  }
  return rows;
}

}  // namespace cnn
