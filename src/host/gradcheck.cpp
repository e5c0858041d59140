#include "cnn/gradcheck.hpp"

#include <algorithm>
#include <cmath>
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
    for (int64_t i : indices) {
      const double saved = v[size_t(i)];
      v[size_t(i)] = saved + options.step;
      const double plus = objective();
      v[size_t(i)] = saved - options.step;
      const double minus = objective();
      v[size_t(i)] = saved;
      const double numeric = (plus - minus) / (2 * options.step);
      const double analytic = (*target.analytic)[size_t(i)];
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
