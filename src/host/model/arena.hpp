#pragma once
// The activation arena: every buffer a step touches, planned for the largest batch so far,
// so the hot loop never allocates. Float for training (CPU or CUDA), double for gradcheck.
#include <cstdint>
#include <vector>

#include "core/buffer.hpp"
#include "cnn/model.hpp"

namespace cnn {

template <class T>
struct Arena {
  // Training ping-pongs two gradient buffers (grad_a, grad_b); the checkers keep every
  // layer's input gradient instead (input_grads).
  bool keep_input_grads = false;
  int planned_batch = 0;
  Buffer<T> input, acts, grad_a, grad_b, row_loss, targets;
  Buffer<int32_t> labels;
  Buffer<double> metrics;  // [0] summed loss, [1] correct predictions
  Buffer<T> augmented;     // augmentation output before it replaces the input batch
  Buffer<T> input_grads;   // keep_input_grads: dL/d(input) of every layer
  std::vector<int64_t> act_offset, input_grad_offset;  // per layer, into acts / input_grads
  // Per layer: its output is the previous layer's buffer (State::output_is_input, in an arena
  // that does not keep input gradients); the step skips the layer.
  std::vector<bool> aliases_input;

  T* act(size_t i) { return acts.data() + act_offset[i]; }
  T* input_grad(size_t i) { return input_grads.data() + input_grad_offset[i]; }

  // Makes room for `batch` rows of the model `s` on device d; returns whether the buffers
  // were replaced. Out of memory on the GPU says which batch size would fit.
  bool plan(const Sequential::State& s, int batch, Device d);
};

}  // namespace cnn
