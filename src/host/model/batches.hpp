#pragma once
// The data side of the entry points: inputs checked against the model, targets validated
// once on the host, and batches of rows loaded into the model's arena.
#include <cstdint>
#include <vector>

#include "cnn/tensor.hpp"
#include "model/state.hpp"

namespace cnn {

// The targets of a whole data set, validated once, on the host.
struct Targets {
  ops::TargetKind kind = ops::TargetKind::Labels;
  std::vector<int32_t> labels;  // kind == Labels
  Tensor dense;                 // [N, cols] on the CPU otherwise
  int64_t cols = 0;
  int64_t rows = 0;
};

// `what` names the entry point in error messages.
void check_inputs(const Sequential::State& s, const Tensor& x, const char* what);
Targets prepare_targets(const Sequential::State& s, const Tensor& y, int64_t rows, const char* what);

// Copies the given rows of x and of the targets into the arena. With mirror_epoch >= 0,
// images whose data-set index + mirror_epoch is odd are mirrored left-right on the way (the
// "alternate" flip: each image flips every other epoch).
// With to_augmented the images go to arena.augmented instead of arena.input, for the
// augmentation to write them into the input (no copy back).
void load_batch(Sequential::State& s, const Tensor& x, const Targets& t, const int64_t* rows, int n,
                int64_t mirror_epoch = -1, bool to_augmented = false);

// Accuracy's denominator: rows, or every element for per-element (binary) targets.
double accuracy_units(const Sequential::State& s, ops::TargetKind kind, int64_t rows);

}  // namespace cnn
