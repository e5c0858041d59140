// Losses and metrics on the GPU, with the CPU reference's formulas (src/kernels/cpu/loss.cpp).
// Every loss runs one warp per row: the lanes stride over the columns, the row's loss is
// a warp sum that lane 0 writes, and each lane writes the gradients of the columns it read
// (so the gradient may alias the input). Gradients carry the 1/rows of the batch mean.
// Labels were validated by the host; the kernels assume them in range.
#include "kernels/cuda/common.cuh"
#include "kernels/formulas/loss.hpp"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / kWarpSize;
unsigned row_blocks(int rows) { return unsigned(ceil_div(rows, kRowsPerBlock)); }

// Target j of a row after label smoothing: t (1 - s) + s / cols.
__device__ __forceinline__ float target_at(TargetKind kind, int label, const float* target_row, float smoothing,
                                           int cols, int j) {
  const float t = kind == TargetKind::Labels ? (label == j ? 1.f : 0.f) : target_row[j];
  return smoothing == 0.f ? t : t * (1.f - smoothing) + smoothing / float(cols);
}

// loss = sum_j t_j (lse - z_j); dz_j = (softmax_j sum(t) - t_j) / rows, with lse = m + log(sum),
// m the row max and sum = sum_j exp(z_j - m). Written as (m - z_j) + log(sum) and
// exp(z_j - m) / sum rather than through lse itself: for logits near +-1000, rounding lse
// to float would cost |lse| * 2^-24 ~ 6e-5 relative in every probability.
// One warp's row: writes the row's dlogits and returns its loss (in every lane).
__device__ __forceinline__ float softmax_cross_entropy_row(int row, int rows, int cols, int lane, const float* logits, TargetKind kind,
                                          const int32_t* labels, const float* targets, float smoothing,
                                          float* dlogits) {
  const int64_t base = int64_t(row) * cols;
  const float* z = logits + base;
  const int label = kind == TargetKind::Labels ? labels[row] : -1;
  const float* t_row = kind == TargetKind::Labels ? nullptr : targets + base;

  float m = -INFINITY;
  for (int j = lane; j < cols; j += kWarpSize) m = fmaxf(m, z[j]);
  m = warp_max(m);
  float sum = 0.f;
  for (int j = lane; j < cols; j += kWarpSize) sum += expf(z[j] - m);
  sum = warp_sum(sum);
  const float log_sum = logf(sum);
  float loss = 0.f, t_sum = 0.f;
  for (int j = lane; j < cols; j += kWarpSize) {
    const float t = target_at(kind, label, t_row, smoothing, cols, j);
    loss += t * ((m - z[j]) + log_sum);
    t_sum += t;
  }
  loss = warp_sum(loss);
  t_sum = warp_sum(t_sum);
  for (int j = lane; j < cols; j += kWarpSize) {
    const float t = target_at(kind, label, t_row, smoothing, cols, j);
    dlogits[base + j] = (expf(z[j] - m) / sum * t_sum - t) / float(rows);
  }
  return loss;
}

__global__ void softmax_cross_entropy_kernel(int rows, int cols, const float* logits, TargetKind kind,
                                             const int32_t* labels, const float* targets, float smoothing,
                                             float* row_loss, float* dlogits) {
  const int row = blockIdx.x * kRowsPerBlock + int(threadIdx.x) / kWarpSize;
  const int lane = int(threadIdx.x) % kWarpSize;
  if (row >= rows) return;  // whole warps leave together
  const float loss = softmax_cross_entropy_row(row, rows, cols, lane, logits, kind, labels, targets, smoothing, dlogits);
  if (lane == 0) row_loss[row] = loss;
}

// Cross-entropy on probabilities clipped to [1e-7, 1 - 1e-7]; a clipped probability gets
// no gradient (as in Keras, whose clip has zero derivative there).
__global__ void cross_entropy_kernel(int rows, int cols, const float* probs, TargetKind kind, const int32_t* labels,
                                     const float* targets, float smoothing, float* row_loss, float* dprobs) {
  const int row = blockIdx.x * kRowsPerBlock + int(threadIdx.x) / kWarpSize;
  const int lane = int(threadIdx.x) % kWarpSize;
  if (row >= rows) return;
  const int64_t base = int64_t(row) * cols;
  const int label = kind == TargetKind::Labels ? labels[row] : -1;
  const float* t_row = kind == TargetKind::Labels ? nullptr : targets + base;
  float loss = 0.f;
  for (int j = lane; j < cols; j += kWarpSize) {
    const float t = target_at(kind, label, t_row, smoothing, cols, j);
    const float p = probs[base + j];
    const bool clipped = formulas::probability_clipped(p);
    const float pc = formulas::clip_probability(p);
    loss -= t * logf(pc);
    dprobs[base + j] = clipped ? 0.f : -t / pc / float(rows);
  }
  loss = warp_sum(loss);
  if (lane == 0) row_loss[row] = loss;
}

// Losses that are a mean over the row's columns of an element-wise term: one kernel, the
// term and its derivative (before the 1/cols/rows of the means, formulas/loss.hpp) given by
// Term::at.
using TermAndGradient = formulas::LossTerm<float>;

template <class Term>
__global__ void elementwise_row_loss_kernel(int rows, int cols, const float* pred, const float* targets,
                                            float* row_loss, float* dpred) {
  const int row = blockIdx.x * kRowsPerBlock + int(threadIdx.x) / kWarpSize;
  const int lane = int(threadIdx.x) % kWarpSize;
  if (row >= rows) return;
  const int64_t base = int64_t(row) * cols;
  float loss = 0.f;
  for (int j = lane; j < cols; j += kWarpSize) {
    const TermAndGradient e = Term::at(pred[base + j], targets[base + j]);
    loss += e.loss;
    dpred[base + j] = e.grad / float(cols) / float(rows);
  }
  loss = warp_sum(loss);
  if (lane == 0) row_loss[row] = loss / float(cols);
}

struct SquaredError {
  __device__ static TermAndGradient at(float p, float t) { return formulas::squared_error(p, t); }
};

struct BinaryCrossEntropy {
  __device__ static TermAndGradient at(float p, float t) { return formulas::binary_cross_entropy(p, t); }
};

struct BinaryCrossEntropyLogits {
  __device__ static TermAndGradient at(float z, float t) { return formulas::binary_cross_entropy_logits(z, t); }
};

// Queues the kernel for Term; false when there is nothing to compute (then no launch to
// check). The caller checks the launch, naming the instantiation as a literal.
template <class Term>
bool launch_elementwise_row_loss(Context& ctx, int rows, int cols, const float* pred, const float* targets,
                                 float* row_loss, float* dpred) {
  if (rows <= 0 || cols <= 0) return false;
  elementwise_row_loss_kernel<Term>
      <<<row_blocks(rows), kThreads, 0, ctx.stream>>>(rows, cols, pred, targets, row_loss, dpred);
  return true;
}

// One block for the whole batch (a few hundred rows: launch latency dominates any
// parallelism beyond that), so the sums are formed in a fixed order: each warp takes rows
// warp, warp + 16, ..., then thread 0 adds the warps' totals in order.
constexpr int kMetricThreads = 512;
constexpr int kMetricWarps = kMetricThreads / kWarpSize;

// The block's end: accum[0] += the warps' losses, accum[1] += their correct counts, added in
// warp order by thread 0 (each warp's totals meaningful in its lane 0).
__device__ __forceinline__ void add_warp_totals(int warp, int lane, double loss, double correct, double* accum) {
  __shared__ double warp_loss[kMetricWarps], warp_correct[kMetricWarps];
  if (lane == 0) {
    warp_loss[warp] = loss;
    warp_correct[warp] = correct;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double total_loss = 0.0, total_correct = 0.0;
    for (int w = 0; w < kMetricWarps; ++w) {
      total_loss += warp_loss[w];
      total_correct += warp_correct[w];
    }
    accum[0] += total_loss;
    accum[1] += total_correct;
  }
}

__global__ void __launch_bounds__(kMetricThreads)
    accumulate_metrics_kernel(int rows, int cols, const float* row_loss, const float* scores, TargetKind kind,
                              const int32_t* labels, const float* targets, bool scores_are_logits, double* accum) {
  constexpr int kWarps = kMetricWarps;
  const int warp = int(threadIdx.x) / kWarpSize, lane = int(threadIdx.x) % kWarpSize;
  double loss = 0.0, correct = 0.0;  // meaningful in lane 0
  for (int r = warp; r < rows; r += kWarps) {
    const int64_t base = int64_t(r) * cols;
    loss += double(row_loss[r]);
    if (kind == TargetKind::Binary) {
      int hits = 0;
      for (int j = lane; j < cols; j += kWarpSize) {
        const float s = scores[base + j];
        const bool predicted = scores_are_logits ? s > 0.f : s > 0.5f;
        hits += predicted == (targets[base + j] > 0.5f) ? 1 : 0;
      }
      correct += double(warp_sum(hits));
    } else {
      const int predicted = warp_argmax(scores + base, cols, lane);
      const int expected = kind == TargetKind::Labels ? labels[r] : warp_argmax(targets + base, cols, lane);
      correct += predicted == expected ? 1.0 : 0.0;
    }
  }
  add_warp_totals(warp, lane, loss, correct, accum);
}

// softmax_cross_entropy_kernel and accumulate_metrics_kernel in one block: each warp takes
// the metrics kernel's rows (warp, warp + 16, ...) and computes their losses and gradients
// as the loss kernel's warps do, so row_loss, dlogits and accum get the same bits as the two
// kernels give. The predictions are read before the row's gradients are written.
//
// With dbias (not null), the block then sums dlogits' columns into it in Dense's bias-gradient
// order (column_partial / column_total), the last Dense layer's bias gradient: the bits its
// column sum would give, one launch fewer.
__global__ void __launch_bounds__(kMetricThreads, 1)
    softmax_cross_entropy_metrics_kernel(int rows, int cols, const float* logits, TargetKind kind,
                                         const int32_t* labels, const float* targets, float smoothing,
                                         float* row_loss, float* dlogits, double* accum, float* dbias) {
  const int warp = int(threadIdx.x) / kWarpSize, lane = int(threadIdx.x) % kWarpSize;
  double loss = 0.0, correct = 0.0;
  for (int r = warp; r < rows; r += kMetricWarps) {
    const int64_t base = int64_t(r) * cols;
    const int predicted = warp_argmax(logits + base, cols, lane);
    const int expected = kind == TargetKind::Labels ? labels[r] : warp_argmax(targets + base, cols, lane);
    const float l = softmax_cross_entropy_row(r, rows, cols, lane, logits, kind, labels, targets, smoothing, dlogits);
    if (lane == 0) row_loss[r] = l;
    loss += double(l);
    correct += predicted == expected ? 1.0 : 0.0;
  }
  add_warp_totals(warp, lane, loss, correct, accum);
  if (!dbias) return;  // the same for the whole block
  __syncthreads();     // every row's dlogits written (by this block)
  __shared__ float partial[kColumnPartials][kWarpSize + 1];
  const int p = int(threadIdx.x) / kWarpSize;  // warps 0..7 take a partial each
  for (int col0 = 0; col0 < cols; col0 += kWarpSize) {
    const int col = col0 + lane;
    if (p < kColumnPartials)
      partial[p][lane] =
          col < cols ? column_partial(rows, p, [&](int r) { return dlogits[int64_t(r) * cols + col]; }) : 0.f;
    __syncthreads();
    if (p == 0 && col < cols) dbias[col] = column_total<kWarpSize + 1>(&partial[0][lane]);
    __syncthreads();
  }
}

}  // namespace

void softmax_cross_entropy(Context& ctx, int rows, int cols, const float* logits, TargetKind kind, const int32_t* labels,
                           const float* targets, float smoothing, float* row_loss, float* dlogits) {
  if (rows <= 0 || cols <= 0) return;
  softmax_cross_entropy_kernel<<<row_blocks(rows), kThreads, 0, ctx.stream>>>(rows, cols, logits, kind, labels, targets,
                                                                             smoothing, row_loss, dlogits);
  CNN_CUDA_CHECK_LAUNCH("softmax_cross_entropy_kernel");
}

bool softmax_cross_entropy_metrics_takes(int rows) { return rows <= kSoftmaxCrossEntropyMetricsMaxRows; }

bool softmax_cross_entropy_with_metrics(Context& ctx, int rows, int cols, const float* logits, TargetKind kind,
                                        const int32_t* labels, const float* targets, float smoothing, float* row_loss,
                                        float* dlogits, double* accum, float* dbias) {
  CNN_CHECK(kind != TargetKind::Binary, "softmax_cross_entropy_with_metrics: class targets only (labels or distributions)");
  if (rows <= 0 || cols <= 0) return false;
  if (!softmax_cross_entropy_metrics_takes(rows)) {
    softmax_cross_entropy(ctx, rows, cols, logits, kind, labels, targets, smoothing, row_loss, dlogits);
    accumulate_metrics(ctx, rows, cols, row_loss, logits, kind, labels, targets, false, accum);
    return false;
  }
  softmax_cross_entropy_metrics_kernel<<<1, kMetricThreads, 0, ctx.stream>>>(rows, cols, logits, kind, labels, targets,
                                                                           smoothing, row_loss, dlogits, accum, dbias);
  CNN_CUDA_CHECK_LAUNCH("softmax_cross_entropy_metrics_kernel");
  return dbias != nullptr;
}

void cross_entropy(Context& ctx, int rows, int cols, const float* probs, TargetKind kind, const int32_t* labels,
                   const float* targets, float smoothing, float* row_loss, float* dprobs) {
  if (rows <= 0 || cols <= 0) return;
  cross_entropy_kernel<<<row_blocks(rows), kThreads, 0, ctx.stream>>>(rows, cols, probs, kind, labels, targets,
                                                                     smoothing, row_loss, dprobs);
  CNN_CUDA_CHECK_LAUNCH("cross_entropy_kernel");
}

void mse_loss(Context& ctx, int rows, int cols, const float* pred, const float* targets, float* row_loss, float* dpred) {
  if (launch_elementwise_row_loss<SquaredError>(ctx, rows, cols, pred, targets, row_loss, dpred))
    CNN_CUDA_CHECK_LAUNCH("elementwise_row_loss_kernel<SquaredError>");
}

void binary_cross_entropy(Context& ctx, int rows, int cols, const float* probs, const float* targets, float* row_loss,
                          float* dprobs) {
  if (launch_elementwise_row_loss<BinaryCrossEntropy>(ctx, rows, cols, probs, targets, row_loss, dprobs))
    CNN_CUDA_CHECK_LAUNCH("elementwise_row_loss_kernel<BinaryCrossEntropy>");
}

void binary_cross_entropy_logits(Context& ctx, int rows, int cols, const float* logits, const float* targets,
                                 float* row_loss, float* dlogits) {
  if (launch_elementwise_row_loss<BinaryCrossEntropyLogits>(ctx, rows, cols, logits, targets, row_loss, dlogits))
    CNN_CUDA_CHECK_LAUNCH("elementwise_row_loss_kernel<BinaryCrossEntropyLogits>");
}

void accumulate_metrics(Context& ctx, int rows, int cols, const float* row_loss, const float* scores, TargetKind kind,
                        const int32_t* labels, const float* targets, bool scores_are_logits, double* accum) {
  if (rows <= 0 || cols <= 0) return;
  accumulate_metrics_kernel<<<1, kMetricThreads, 0, ctx.stream>>>(rows, cols, row_loss, scores, kind, labels, targets,
                                                                scores_are_logits, accum);
  CNN_CUDA_CHECK_LAUNCH("accumulate_metrics_kernel");
}

}  // namespace cnn::ops::cuda
