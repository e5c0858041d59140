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

// model_loss, then the batch's loss sum and correct count added to metrics[0..1]. The fused
// softmax cross-entropy does both in one op (one kernel on the GPU for small batches), which
// can also write the column sums of grad into bias_grad (not null: the last layer's bias
// gradient, when nothing lies between the logits and it); returns whether it did.
template <class T>
bool model_loss_with_metrics(const Exec& e, const Sequential::State& s, ops::TargetKind kind, int n, const T* out,
                             const int32_t* labels, const T* targets, T* row_loss, T* grad, double* metrics,
                             T* bias_grad = nullptr) {
  const int K = int(s.output_size());
  const bool categorical = s.loss == LossKind::CategoricalCE || s.loss == LossKind::SparseCategoricalCE;
  if (s.fused && categorical && kind != ops::TargetKind::Binary) {
    return run::softmax_cross_entropy_with_metrics_and_bias<T>(e, bias_grad, n, K, out, kind, labels, targets,
                                                               T(s.opt.label_smoothing), row_loss, grad, metrics);
  }
  model_loss<T>(e, s, kind, n, out, labels, targets, row_loss, grad);
  const bool logits = s.fused && s.loss == LossKind::BinaryCE;
  run::accumulate_metrics<T>(e, n, K, row_loss, out, kind, labels, targets, logits, metrics);
  return false;
}

}  // namespace cnn
