// Losses and metrics on the CPU. Each writes row_loss[rows] and the gradient of the batch
// mean, so the gradients carry the 1/rows factor.
#include <algorithm>
#include <cmath>

#include "cnn/error.hpp"
#include "kernels/formulas/loss.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

inline void check_label(int32_t label, int cols, int row) {
  CNN_CHECK(label >= 0 && label < cols, "loss: label ", label, " at row ", row, " is out of range for ",
            cols, " classes");
}

// Target j of row r, after label smoothing (t (1 - s) + s / cols).
template <class T>
T target_at(TargetKind kind, const int32_t* labels, const T* targets, T smoothing, int cols, int r, int j) {
  const T t = kind == TargetKind::Labels ? T(labels[r] == j ? 1 : 0) : targets[int64_t(r) * cols + j];
  return smoothing == T(0) ? t : t * (T(1) - smoothing) + smoothing / T(cols);
}

// Losses that are a mean over the row's columns of an element-wise term (formulas/loss.hpp):
// term(pred, target) gives the term and its derivative. dpred may alias pred.
template <class T, class Term>
void elementwise_row_loss(int rows, int cols, const T* pred, const T* targets, T* row_loss, T* dpred, Term term) {
  for (int r = 0; r < rows; ++r) {
    T loss = 0;
    for (int j = 0; j < cols; ++j) {
      const int64_t i = int64_t(r) * cols + j;
      const formulas::LossTerm<T> e = term(pred[i], targets[i]);
      loss += e.loss;
      dpred[i] = e.grad / T(cols) / T(rows);
    }
    row_loss[r] = loss / T(cols);
  }
}

template <class T>
int argmax(const T* v, int cols) {
  return int(std::max_element(v, v + cols) - v);
}

}  // namespace

template <class T>
void softmax_cross_entropy(int rows, int cols, const T* logits, TargetKind kind, const int32_t* labels,
                           const T* targets, T smoothing, T* row_loss, T* dlogits) {
  for (int r = 0; r < rows; ++r) {
    if (kind == TargetKind::Labels) check_label(labels[r], cols, r);
    const T* z = logits + int64_t(r) * cols;
    T* g = dlogits + int64_t(r) * cols;
    const T m = *std::max_element(z, z + cols);
    T sum = 0;
    for (int j = 0; j < cols; ++j) sum += std::exp(z[j] - m);
    const T lse = m + std::log(sum);
    // loss = sum_j t_j (lse - z_j); d/dz_j = p_j sum(t) - t_j (sum(t) = 1 for distributions)
    T loss = 0, t_sum = 0;
    for (int j = 0; j < cols; ++j) {
      const T t = target_at(kind, labels, targets, smoothing, cols, r, j);
      loss += t * (lse - z[j]);
      t_sum += t;
    }
    for (int j = 0; j < cols; ++j)
      g[j] = (std::exp(z[j] - lse) * t_sum - target_at(kind, labels, targets, smoothing, cols, r, j)) / T(rows);
    row_loss[r] = loss;
  }
}

template <class T>
void cross_entropy(int rows, int cols, const T* probs, TargetKind kind, const int32_t* labels, const T* targets,
                   T smoothing, T* row_loss, T* dprobs) {
  for (int r = 0; r < rows; ++r) {
    if (kind == TargetKind::Labels) check_label(labels[r], cols, r);
    T loss = 0;
    for (int j = 0; j < cols; ++j) {
      const int64_t i = int64_t(r) * cols + j;
      const T t = target_at(kind, labels, targets, smoothing, cols, r, j);
      const T p = probs[i];
      const bool clipped = formulas::probability_clipped(p);
      const T pc = formulas::clip_probability(p);
      loss -= t * std::log(pc);
      dprobs[i] = clipped ? T(0) : -t / pc / T(rows);
    }
    row_loss[r] = loss;
  }
}

template <class T>
void mse_loss(int rows, int cols, const T* pred, const T* targets, T* row_loss, T* dpred) {
  elementwise_row_loss(rows, cols, pred, targets, row_loss, dpred,
                       [](T p, T t) { return formulas::squared_error(p, t); });
}

template <class T>
void binary_cross_entropy(int rows, int cols, const T* probs, const T* targets, T* row_loss, T* dprobs) {
  elementwise_row_loss(rows, cols, probs, targets, row_loss, dprobs,
                       [](T p, T t) { return formulas::binary_cross_entropy(p, t); });
}

template <class T>
void binary_cross_entropy_logits(int rows, int cols, const T* logits, const T* targets, T* row_loss,
                                 T* dlogits) {
  elementwise_row_loss(rows, cols, logits, targets, row_loss, dlogits,
                       [](T z, T t) { return formulas::binary_cross_entropy_logits(z, t); });
}

template <class T>
void accumulate_metrics(int rows, int cols, const T* row_loss, const T* scores, TargetKind kind,
                        const int32_t* labels, const T* targets, bool scores_are_logits, double* accum) {
  double loss = 0, correct = 0;
  for (int r = 0; r < rows; ++r) {
    loss += double(row_loss[r]);
    const T* s = scores + int64_t(r) * cols;
    switch (kind) {
      case TargetKind::Labels: correct += argmax(s, cols) == labels[r]; break;
      case TargetKind::Distribution: correct += argmax(s, cols) == argmax(targets + int64_t(r) * cols, cols); break;
      case TargetKind::Binary:
        for (int j = 0; j < cols; ++j) {
          const bool predicted = scores_are_logits ? s[j] > T(0) : s[j] > T(0.5);
          correct += predicted == (targets[int64_t(r) * cols + j] > T(0.5));
        }
        break;
    }
  }
  accum[0] += loss;
  accum[1] += correct;
}

template <class T>
void softmax_cross_entropy_with_metrics(int rows, int cols, const T* logits, TargetKind kind, const int32_t* labels,
                                        const T* targets, T smoothing, T* row_loss, T* dlogits, double* accum) {
  CNN_CHECK(kind != TargetKind::Binary, "softmax_cross_entropy_with_metrics: class targets only (labels or distributions)");
  softmax_cross_entropy(rows, cols, logits, kind, labels, targets, smoothing, row_loss, dlogits);
  accumulate_metrics(rows, cols, row_loss, logits, kind, labels, targets, false, accum);
}

#define CNN_INSTANTIATE(T)                                                                                    \
  template void softmax_cross_entropy<T>(int, int, const T*, TargetKind, const int32_t*, const T*, T, T*, T*); \
  template void cross_entropy<T>(int, int, const T*, TargetKind, const int32_t*, const T*, T, T*, T*);         \
  template void mse_loss<T>(int, int, const T*, const T*, T*, T*);                                             \
  template void binary_cross_entropy<T>(int, int, const T*, const T*, T*, T*);                                 \
  template void binary_cross_entropy_logits<T>(int, int, const T*, const T*, T*, T*);                          \
  template void accumulate_metrics<T>(int, int, const T*, const T*, TargetKind, const int32_t*, const T*, bool,  \
                                      double*);                                                                \
  template void softmax_cross_entropy_with_metrics<T>(int, int, const T*, TargetKind, const int32_t*, const T*, T, \
                                                      T*, T*, double*);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
