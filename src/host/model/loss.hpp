#pragma once
// The model's loss on its outputs, for any scalar type: row losses and dL/d(output). Shared
// by training (float, CPU or CUDA) and the checks (double on the CPU, float on both devices).
#include <cstdint>

#include "layers/layer_impl.hpp"
#include "model/state.hpp"

namespace cnn {

template <class T>
void model_loss(const Exec& e, const Sequential::State& s, ops::TargetKind kind, int n, const T* out,
                const int32_t* labels, const T* targets, T* row_loss, T* grad) {
  const int K = int(s.output_size());
  const T smoothing = T(s.opt.label_smoothing);
  switch (s.loss) {
    case LossKind::CategoricalCE:
    case LossKind::SparseCategoricalCE:
      if (s.fused) run::softmax_cross_entropy<T>(e, n, K, out, kind, labels, targets, smoothing, row_loss, grad);
      else run::cross_entropy<T>(e, n, K, out, kind, labels, targets, smoothing, row_loss, grad);
      break;
    case LossKind::MSE: run::mse_loss<T>(e, n, K, out, targets, row_loss, grad); break;
    case LossKind::BinaryCE:
      if (s.fused) run::binary_cross_entropy_logits<T>(e, n, K, out, targets, row_loss, grad);
      else run::binary_cross_entropy<T>(e, n, K, out, targets, row_loss, grad);
      break;
  }
}

}  // namespace cnn
