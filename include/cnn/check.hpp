#pragma once
// Checks a user can run on their own model:
//   gradcheck        central differences in double on the CPU, layer by layer
//   compare_devices  the model on the GPU against the CPU reference, layer by layer,
//                    forward, backward and one optimizer step
// Both return a table of rows with a PASS/FAIL verdict against documented tolerances.
#include <cstdint>
#include <string>
#include <vector>

#include "cnn/model.hpp"

namespace cnn {

struct CheckRow {
  int layer = -1;          // -1: a row about the whole model (loss, optimizer step)
  std::string layer_type;  // "Conv2D", or "model"
  std::string quantity;    // "output", "input grad", "weight grad", "bias grad", "loss", "updated params"
  Shape shape;
  int64_t checked = 0;     // elements compared
  double max_abs_error = 0, relative_error = 0, tolerance = 0;
  bool pass = true;
};

struct CheckReport {
  std::vector<CheckRow> rows;
  // True when every row passes and at least one row compared elements: a report that checked
  // nothing (no rows, or only rows of 0 elements) does not pass.
  bool passed() const;
  // Rows that compared at least one element.
  size_t checked_rows() const {
    size_t n = 0;
    for (const auto& r : rows) n += r.checked > 0;
    return n;
  }
  std::string table() const;  // aligned text table, one row per line
};

struct GradcheckOptions {
  int batch_size = 2;
  std::vector<int> layers{};   // empty: every layer
  int64_t max_elements = 32;   // per tensor: a seeded sample when larger
  uint64_t seed = 1;
  // Relative error ||analytic - numeric|| / max(||analytic||, ||numeric||) allowed per tensor.
  // In double with step 1e-6 a correct gradient lands near 1e-9; any real mistake is O(1).
  double tolerance = 1e-6;
};
// gradcheck ignores the model's precision policy: rounding is not differentiable, so it checks
// the fp32 math (in double) whose operands the tf32/bf16 policies round.
CheckReport gradcheck(Sequential& model, const GradcheckOptions& options = {});

struct CompareOptions {
  int batch_size = 8;
  uint64_t seed = 1;
  const Tensor* x = nullptr;  // optional real batch [n, input shape]; random when null
  const Tensor* y = nullptr;  // its targets (labels or rows)
};
// Tolerances (relative, per tensor): forward outputs and the loss 1e-5 (float32 sums in a
// different order); gradients 1e-4 (long reductions over the batch and positions, where
// cancellation magnifies the relative difference); parameters after one step 1e-5.
// Under a tf32/bf16 policy (the model's, which both copies keep) see precision_tolerance in
// check.cpp: every row allows 4 units u of the policy's rounding (u = 2^-11 tf32, 2^-8 bf16),
// the parameters that many units of the step's update.
CheckReport compare_devices(const Sequential& model, const CompareOptions& options = {});

}  // namespace cnn
