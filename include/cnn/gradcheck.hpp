#pragma once
// Central-difference gradient checking in double precision: the one helper behind every
// op's gradient test and `cnn gradcheck`.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cnn {

// One array of values whose analytic gradient is to be checked.
struct GradTarget {
  std::string name;
  std::vector<double>* values;         // perturbed in place, restored afterwards
  const std::vector<double>* analytic; // d objective / d values, computed by the caller
};

struct GradCheckRow {
  std::string name;
  int64_t checked = 0;            // elements compared
  double max_abs_error = 0;       // max |analytic - numeric|
  double relative_error = 0;      // ||analytic - numeric|| / max(||analytic||, ||numeric||, tiny)
  int64_t worst_index = -1;       // element with the largest absolute error
  int64_t kinks = 0;              // elements at a non-differentiable point (see below)
};

struct GradCheckOptions {
  double step = 1e-6;          // central difference half-width
  int64_t max_elements = 0;    // > 0: check a seeded random sample of at most this many per target
  uint64_t seed = 1;
  // Where an element disagrees, retry with steps 10x and 100x smaller and keep the closest
  // estimate: a step that straddles a kink (ReLU at 0, a max-pool tie) spoils the difference
  // quotient, while a wrong gradient stays wrong at every step.
  bool retry_smaller_steps = true;
  // At a point where the function has a kink (a max-pool window whose maximum is tied, e.g.
  // between ReLU zeros), the one-sided slopes differ and no derivative exists; any value
  // between them is a valid subgradient. Such elements count as matching when the analytic
  // value lies between the one-sided slopes, and are reported in GradCheckRow::kinks.
  bool accept_subgradients_at_kinks = true;
};

// For each target, compares `analytic` with (f(v + h) - f(v - h)) / 2h element by element.
std::vector<GradCheckRow> check_gradients(const std::function<double()>& objective,
                                          const std::vector<GradTarget>& targets,
                                          const GradCheckOptions& options = {});

}  // namespace cnn
