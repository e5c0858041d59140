#pragma once
// Every op, declared once for both backends.
//
//   ops::cpu::<op>   reference implementation in src/kernels/cpu/<op>.cpp, templated on the
//                    scalar type (float for training, double for gradient checks)
//   ops::cuda::<op>  hand-written kernels in src/kernels/cuda/<op>.cu, float32, queued on the
//                    context's stream (no synchronisation), pointers in device memory
//
// Conventions shared by both:
//   - images are NCHW, conv weights are [c_out, c_in, k_h, k_w] (PyTorch's OIHW), dense
//     weights are [out, in]; all row-major and contiguous.
//   - forward ops overwrite their output; backward ops overwrite their gradients (no
//     accumulation), so a caller never has to zero them first.
//   - losses write one loss value per row and the gradient of the MEAN over the batch
//     (already divided by rows).
//   - a nullable pointer (bias, velocity) is documented as such; every other pointer is
//     required and must hold the element counts given by the shape.
#include <cstddef>
#include <cstdint>

#include "cnn/types.hpp"

namespace cnn::ops {

// ---- Shapes --------------------------------------------------------------------

// One spatial axis of a sliding window: output size and padding before the first element.
struct WindowAxis {
  int out = 0;
  int pad_before = 0;
};
// TensorFlow's rule; throws cnn::Error naming `what` when the window does not fit.
WindowAxis window_axis(int in, int kernel, int stride, Padding padding, const char* what);

struct Conv2DShape {
  int n = 0, c_in = 0, h_in = 0, w_in = 0;
  int c_out = 0, k_h = 0, k_w = 0;
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0;  // bottom/right padding is whatever the output size implies
  int h_out = 0, w_out = 0;

  int64_t x_size() const { return int64_t(n) * c_in * h_in * w_in; }
  int64_t w_size() const { return int64_t(c_out) * c_in * k_h * k_w; }
  int64_t y_size() const { return int64_t(n) * c_out * h_out * w_out; }
  // Validates every argument; an error names the op and the offending values.
  static Conv2DShape make(int n, int c_in, int h_in, int w_in, int c_out, int k_h, int k_w,
                          int stride_h, int stride_w, Padding padding);
};

struct Pool2DShape {
  int n = 0, c = 0, h_in = 0, w_in = 0;
  int k_h = 0, k_w = 0;
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0;
  int h_out = 0, w_out = 0;

  int64_t x_size() const { return int64_t(n) * c * h_in * w_in; }
  int64_t y_size() const { return int64_t(n) * c * h_out * w_out; }
  static Pool2DShape make(int n, int c, int h_in, int w_in, int k_h, int k_w, int stride_h,
                          int stride_w, Padding padding);
};

// An elementwise activation and its parameter (cnn/types.hpp). Softmax is not elementwise
// and has its own ops below.
using ActivationSpec = ::cnn::ActivationSpec;

// Which targets a loss or metric reads.
enum class TargetKind {
  Labels,        // int32 class index per row
  Distribution,  // [rows, cols] one-hot or probabilities; accuracy compares argmaxes
  Binary,        // [rows, cols] of 0/1 targets; accuracy thresholds each element at 0.5
};

struct SgdConfig {
  float lr = 0.01f;
  float momentum = 0.0f;      // PyTorch form: v = m v + g; p -= lr v  (or lr (g + m v) with Nesterov)
  bool nesterov = false;
  float weight_decay = 0.0f;  // L2: g += wd p, or decoupled: p -= lr wd p
  bool decoupled_weight_decay = false;
};

struct AdamConfig {
  float lr = 0.001f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-7f;  // Keras's epsilon
  float weight_decay = 0.0f;
  bool decoupled_weight_decay = true;  // AdamW
  int64_t step = 1;                    // 1-based step count for bias correction
};

// One update's float scalars as the kernels use them (formulas/optimizer.hpp: the learning
// rate, Adam's bias corrections 1 - beta^step, ...), computed from a config on the host by
// the same functions the CPU reference uses, as bytes that can live in device memory: the
// CUDA updates below that read them there replay from a CUDA graph with each step's values.
struct OptimizerScalars {
  alignas(16) unsigned char bytes[64];
};
OptimizerScalars sgd_scalars(const SgdConfig& cfg);
OptimizerScalars adam_scalars(const AdamConfig& cfg);

// A chain of small Dense layers run forward in one GPU kernel (ops::cuda::dense_chain_forward):
// each link y = act(x W^T + bias), the next link's x its y. The step chains consecutive Dense
// layers of which every one dense_chain_takes: widths <= kDenseChainMaxWidth, and an activation
// it can apply in place of the layer (elementwise, its gradient needing y alone or Linear).
struct DenseChainLayer {
  int in = 0, out = 0;
  const float* w = nullptr;     // [out, in]
  const float* bias = nullptr;  // [out] or null
  ActivationSpec act{};
  float* y = nullptr;  // [n, out]: written, for the layers above and the backward pass
};
constexpr int kDenseChainMaxLayers = 4, kDenseChainMaxWidth = 512;
bool dense_chain_takes(int in, int out, ActivationSpec act);

// Whether the pooling backward passes can take the gradient of `below`, the activation of
// the layer under the pool (ops::cpu::maxpool2d_backward): Linear (none), ReLU, leaky ReLU,
// sigmoid, tanh.
bool pool_backward_takes_activation(ActivationSpec below);

// ---- CPU reference --------------------------------------------------------------
namespace cpu {

// -- Matrix product
// Row-major C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; M x N output, inner K.
// The one matrix product every CPU op uses (src/kernels/cpu/gemm.cpp).
template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc);

// -- Convolution
// y = act(conv(x, w) + bias); bias may be null.
template <class T>
void conv2d_forward(const Conv2DShape& s, const T* x, const T* w, const T* bias, ActivationSpec act,
                    T* y);
// dx from dy (the gradient after the activation has been undone).
template <class T>
void conv2d_backward_input(const Conv2DShape& s, const T* dy, const T* w, T* dx);
// dw and (when not null) dbias from x and dy.
template <class T>
void conv2d_backward_params(const Conv2DShape& s, const T* x, const T* dy, T* dw, T* dbias);

// -- Dense
// y[n, out] = act(x[n, in] . w[out, in] + bias[out]); bias may be null.
template <class T>
void dense_forward(int n, int in, int out, const T* x, const T* w, const T* bias, ActivationSpec act,
                   T* y);
template <class T>
void dense_backward_input(int n, int in, int out, const T* dy, const T* w, T* dx);
template <class T>
void dense_backward_params(int n, int in, int out, const T* x, const T* dy, T* dw, T* dbias);

// -- Pooling
// Max pooling over the window's in-bounds elements ('same' padding never wins). Ties: the
// first maximum in row-major window order takes the whole gradient.
template <class T>
void maxpool2d_forward(const Pool2DShape& s, const T* x, T* y);
//
// The backward passes can also take the gradient of the activation of the layer below
// (`below`: ReLU, leaky ReLU, sigmoid or tanh, whose gradient needs only that layer's output,
// the pool's input x): dx is then the gradient before that activation, with the bits of
// activation_backward(below, ..., y = x, dy = dx) run after, which the layer below then skips.
template <class T>
void maxpool2d_backward(const Pool2DShape& s, const T* x, const T* dy, T* dx, ActivationSpec below = {});
// Average over the window's in-bounds elements (padding is not counted, as in TensorFlow).
template <class T>
void avgpool2d_forward(const Pool2DShape& s, const T* x, T* y);
template <class T>
void avgpool2d_backward(const Pool2DShape& s, const T* dy, T* dx, const T* x = nullptr, ActivationSpec below = {});

// -- Copy
// dst = src for `count` elements; src == dst does nothing, other overlaps are not allowed.
template <class T>
void copy(int64_t count, const T* src, T* dst);

// -- Activations and softmax
// Elementwise activation (not softmax). backward reads x (pre-activation) and y (output):
// ReLU/LeakyReLU/Sigmoid/Tanh need only y, GELU needs x; pass both.
template <class T>
void activation_forward(ActivationSpec act, int64_t count, const T* x, T* y);
template <class T>
void activation_backward(ActivationSpec act, int64_t count, const T* x, const T* y, const T* dy, T* dx);

// Row-wise softmax over `cols`, stable (subtracts the row max).
template <class T>
void softmax_forward(int rows, int cols, const T* x, T* y);
template <class T>
void softmax_backward(int rows, int cols, const T* y, const T* dy, T* dx);

// -- Losses and metrics
// Losses: row_loss[rows] and the gradient of mean(row_loss) with respect to the input.
// `labels` is used for TargetKind::Labels, `targets` otherwise (the other may be null).
// Fused softmax + cross-entropy on logits; gradient (p - y_smoothed) / rows. Targets are
// smoothed as y (1 - smoothing) + smoothing / cols.
template <class T>
void softmax_cross_entropy(int rows, int cols, const T* logits, TargetKind kind, const int32_t* labels,
                           const T* targets, T smoothing, T* row_loss, T* dlogits);
// Cross-entropy on probabilities (clipped to [1e-7, 1 - 1e-7] as Keras does).
template <class T>
void cross_entropy(int rows, int cols, const T* probs, TargetKind kind, const int32_t* labels,
                   const T* targets, T smoothing, T* row_loss, T* dprobs);
// Mean squared error, averaged over cols within a row (Keras).
template <class T>
void mse_loss(int rows, int cols, const T* pred, const T* targets, T* row_loss, T* dpred);
// Binary cross-entropy on probabilities (clipped) or, stably, on logits; mean over cols.
template <class T>
void binary_cross_entropy(int rows, int cols, const T* probs, const T* targets, T* row_loss, T* dprobs);
template <class T>
void binary_cross_entropy_logits(int rows, int cols, const T* logits, const T* targets, T* row_loss,
                                 T* dlogits);

// accum[0] += sum of row_loss; accum[1] += number of correct predictions (rows, or
// elements for TargetKind::Binary, where scores are probabilities or logits per `scores_are_logits`).
template <class T>
void accumulate_metrics(int rows, int cols, const T* row_loss, const T* scores, TargetKind kind,
                        const int32_t* labels, const T* targets, bool scores_are_logits, double* accum);
// softmax_cross_entropy, then accumulate_metrics with the logits as scores (class targets:
// labels or distributions). The CUDA op does both in one kernel for small batches.
template <class T>
void softmax_cross_entropy_with_metrics(int rows, int cols, const T* logits, TargetKind kind, const int32_t* labels,
                                        const T* targets, T smoothing, T* row_loss, T* dlogits, double* accum);

// -- Optimizers and weight averaging
// In-place optimizer updates over a flat parameter buffer. velocity may be null when
// momentum is 0.
template <class T>
void sgd_update(int64_t count, T* param, const T* grad, T* velocity, const SgdConfig& cfg);
template <class T>
void adam_update(int64_t count, T* param, const T* grad, T* m, T* v, const AdamConfig& cfg);

// a += t (b - a), elementwise: weight averaging (EMA, lookahead).
template <class T>
void lerp(int64_t count, T* a, const T* b, T t);

// -- Convolution with bf16 operands (the reference of the tensor-core kernels of [bf16];
// src/kernels/cpu/conv2d_bf16.cpp). The same ops as above, NCHW / OIHW, with both product
// operands rounded to bf16 first (formulas::round_to_bf16, round to nearest even) exactly
// where the GPU stores them as bf16: x and w (forward), dy and w (backward input), x and dy
// (backward params). The bias stays unrounded (the GPU adds it in fp32), and the sums run in
// T, so a GPU-vs-CPU test sees the same operands on both sides and differs only by the
// order of the fp32 sums.
template <class T>
void conv2d_forward_bf16(const Conv2DShape& s, const T* x, const T* w, const T* bias, ActivationSpec act, T* y);
template <class T>
void conv2d_backward_input_bf16(const Conv2DShape& s, const T* dy, const T* w, T* dx);
template <class T>
void conv2d_backward_params_bf16(const Conv2DShape& s, const T* x, const T* dy, T* dw, T* dbias);

// Layouts of the tensor-core kernels (bf16 stored as its 16-bit encoding, formulas::bf16_bits):
// x [n, c, h, w] fp32 -> y [n, h, w, c_padded] bf16, channels c.. c_padded - 1 zero (c_padded
// >= c; padding the few-channel first layers to 8 channels is how they meet the kernels'
// c % 8 rule). The same call turns OIHW weights into [c_out, k_h, k_w, c_padded] (n = c_out).
void nchw_to_nhwc_bf16(int n, int c, int h, int w, int c_padded, const float* x, uint16_t* y);
// x [n, h, w, c] -> y [n, c, h, w] (also KRSC weight gradients -> OIHW, n = c_out).
template <class T>
void nhwc_to_nchw(int n, int c, int h, int w, const T* x, T* y);
// The tf32 variants (forward and input gradient; operands rounded by formulas::round_to_tf32),
// and the tf32 layout: nchw_to_nhwc_bf16's, with fp32 values rounded to tf32.
template <class T>
void conv2d_forward_tf32(const Conv2DShape& s, const T* x, const T* w, const T* bias, ActivationSpec act, T* y);
template <class T>
void conv2d_backward_input_tf32(const Conv2DShape& s, const T* dy, const T* w, T* dx);
void nchw_to_nhwc_tf32(int n, int c, int h, int w, int c_padded, const float* x, float* y);

// Patch whitening's statistics (cnn::init_patch_whitening; CPU only, in double): adds every
// k_h x k_w patch (stride 1, no padding) of the images x [n, c, h, w], flattened in (channel,
// row, column) order to D = c k_h k_w values p, to *count (the number of patches), sum[D]
// (+= p) and the upper triangle of outer[D, D] (+= p p^T; the rest gets zeros added).
void accumulate_patch_moments(int64_t n, int c, int h, int w, int k_h, int k_w, const float* x, double* count,
                              double* sum, double* outer);

}  // namespace cpu
}  // namespace cnn::ops

// ---- CUDA ----------------------------------------------------------------------
// A per-model execution context: one stream, one cuBLAS handle, device scratch. Its
// definition (src/kernels/cuda/context.cuh) is the only place that names CUDA types.
namespace cnn::cuda {
struct Context;
Context* create_context();  // throws cnn::Error when no GPU is usable
void destroy_context(Context* ctx);
void synchronize(Context& ctx);  // waits for the context's stream; reports any kernel error

// Uploads without a host synchronisation: fill the pinned host buffer that upload_staging
// returns, then upload() queues its copy on the context's stream. Staging buffers come from
// a ring; a slot is reused only after its previous copy has left it.
void* upload_staging(Context& ctx, size_t bytes);
void upload(Context& ctx, void* device_dst, const void* staging, size_t bytes);

// CUDA graphs of repeated work (one training step per batch size): capture_begin/end record
// what is queued on the stream in between under `key`; replay launches it again and returns
// false when nothing is recorded under `key`. clear_graphs forgets them all.
void capture_begin(Context& ctx);
void capture_end(Context& ctx, int64_t key);
bool replay(Context& ctx, int64_t key);
void clear_graphs(Context& ctx);

// Whether Conv2D runs its products on the tensor cores under a tf32/bf16 policy (the ops of
// "Convolution on bf16 tensor cores" below, through src/host/layers/conv2d_mma.cpp): on unless
// CNN_CUDA_CONV_MMA=0, read once where the context is made.
bool conv_mma_enabled(const Context& ctx);
// CNN_CUDA_CONV_MMA's value (null when unset): unset, "" or "1" -> true, "0" -> false; any
// other value throws, naming the variable and its valid values. Backend-neutral
// (src/kernels/conv_mma_switch.cpp), so a CPU-only build can test it.
bool parse_conv_mma(const char* value);
}  // namespace cnn::cuda

namespace cnn::ops::cuda {
using ::cnn::cuda::Context;

// -- Convolution
// conv2d_forward and the pooling layer after it (p: its shape, max or average) in one kernel,
// where the context runs the fast kernels (CNN_CUDA_CONV_KERNELS=fast) and the direct forward
// takes the pair (window = stride >= 2, 'valid'): y and pooled with the two ops' bits. Returns
// false, having done nothing, otherwise (then run the two ops).
bool conv2d_forward_pooled(Context& ctx, const Conv2DShape& s, const Pool2DShape& p, bool max_pool, const float* x,
                           const float* w, const float* bias, ActivationSpec act, float* y, float* pooled);
void conv2d_forward(Context& ctx, const Conv2DShape& s, const float* x, const float* w, const float* bias,
                    ActivationSpec act, float* y);
void conv2d_backward_input(Context& ctx, const Conv2DShape& s, const float* dy, const float* w, float* dx);
void conv2d_backward_params(Context& ctx, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                            float* dbias);

// -- Convolution on bf16 tensor cores (conv2d_mma_bf16.cu; mma.sync m16n8k16, fp32 accumulate).
// Activations channels-last: x, dy [n, h, w, c] bf16 (uint16_t encodings); weights [c_out,
// k_h, k_w, c_in] bf16; outputs fp32 channels-last (y and dx NHWC, dw [c_out, k_h, k_w, c_in]).
// Each op throws unless its rule below accepts the shape; a caller (the precision policy)
// tests the rule and falls back to the fp32 ops above otherwise. Deterministic: no atomics,
// reductions in a fixed order (the split-K partition depends on the shape and the SM count).
//
// Rules (every 16-byte load is 8 whole channels of one pixel):
//   forward          c_in % 8 == 0 (few-channel first layers: pad c_in to bf16_padded_channels(c)
//                    with zero channels in nchw_to_nhwc_bf16, for x and w, and run the padded shape)
//   backward input   c_out % 8 == 0 (a forward conv of dy, dilated by the stride, with the
//                    rotated, transposed filters; stride 2 wastes 3/4 of its products on zeros)
//   backward params  c_in % 8 == 0 and c_out % 8 == 0
// and every index of a tensor below 2^31 elements (the *_takes rules test that too).
inline int bf16_padded_channels(int c) { return (c + 7) / 8 * 8; }
bool bf16_forward_takes(const Conv2DShape& s);
bool bf16_backward_input_takes(const Conv2DShape& s);
bool bf16_backward_params_takes(const Conv2DShape& s);
// y = act(conv(x, w) + bias), bias fp32 and nullable.
void conv2d_forward_bf16(Context& ctx, const Conv2DShape& s, const uint16_t* x, const uint16_t* w, const float* bias,
                         ActivationSpec act, float* y);
void conv2d_backward_input_bf16(Context& ctx, const Conv2DShape& s, const uint16_t* dy, const uint16_t* w, float* dx);
// dw and (when not null) dbias = sum of dy over (n, h, w).
void conv2d_backward_params_bf16(Context& ctx, const Conv2DShape& s, const uint16_t* x, const uint16_t* dy, float* dw,
                                 float* dbias);
// tf32 (mma.sync m16n8k8): the forward and input gradient on the same tiles, with fp32 NHWC
// activations and [c_out, k_h, k_w, c_in] fp32 filters already rounded to tf32
// (nchw_to_nhwc_tf32; the tensor cores would truncate the low bits instead). Rules: c_in % 4
// (forward, pad with tf32_padded_channels), c_out % 4 (input gradient). No tf32 weight
// gradient yet: the policy keeps the fp32 op for it.
inline int tf32_padded_channels(int c) { return (c + 3) / 4 * 4; }
bool tf32_forward_takes(const Conv2DShape& s);
bool tf32_backward_input_takes(const Conv2DShape& s);
void conv2d_forward_tf32(Context& ctx, const Conv2DShape& s, const float* x, const float* w, const float* bias,
                         ActivationSpec act, float* y);
void conv2d_backward_input_tf32(Context& ctx, const Conv2DShape& s, const float* dy, const float* w, float* dx);
// The layout conversions of ops::cpu (same arguments), on the device, bit-identical to them.
void nchw_to_nhwc_bf16(Context& ctx, int n, int c, int h, int w, int c_padded, const float* x, uint16_t* y);
void nhwc_to_nchw(Context& ctx, int n, int c, int h, int w, const float* x, float* y);
void nchw_to_nhwc_tf32(Context& ctx, int n, int c, int h, int w, int c_padded, const float* x, float* y);

// -- Dense
void dense_forward(Context& ctx, int n, int in, int out, const float* x, const float* w, const float* bias,
                   ActivationSpec act, float* y);
void dense_backward_input(Context& ctx, int n, int in, int out, const float* dy, const float* w, float* dx);
void dense_backward_params(Context& ctx, int n, int in, int out, const float* x, const float* dy, float* dw,
                           float* dbias);
// Up to kDenseChainMaxLayers links (each dense_chain_takes), n rows, in one launch: every
// link's y as dense_forward computes it, but summed in this kernel's order (fp32 within the
// CPU reference's tolerance, not cuBLAS's bits).
void dense_chain_forward(Context& ctx, int n, const float* x, const DenseChainLayer* layers, int count);
// activation_backward over rows x cols (dz may be dy) and the bias gradient dbias[j] = sum
// of dz[:, j] in one kernel, with the bits of activation_backward then dense_backward_params'
// dbias: Dense's backward then asks dense_backward_params for dW alone. Elementwise
// activations only; z as activation_backward's x (may be null unless GELU).
void activation_backward_with_bias_grad(Context& ctx, ActivationSpec act, int rows, int cols, const float* z,
                                        const float* y, const float* dy, float* dz, float* dbias);

// -- Pooling
void maxpool2d_forward(Context& ctx, const Pool2DShape& s, const float* x, float* y);
void maxpool2d_backward(Context& ctx, const Pool2DShape& s, const float* x, const float* dy, float* dx,
                        ActivationSpec below = {});
void avgpool2d_forward(Context& ctx, const Pool2DShape& s, const float* x, float* y);
void avgpool2d_backward(Context& ctx, const Pool2DShape& s, const float* dy, float* dx, const float* x = nullptr,
                        ActivationSpec below = {});

// -- Copy
// dst = src for `count` elements of device memory: a cudaMemcpyAsync on the context's stream,
// so it may be called inside a captured training step. src == dst does nothing.
void copy(Context& ctx, int64_t count, const float* src, float* dst);

// -- Activations and softmax
void activation_forward(Context& ctx, ActivationSpec act, int64_t count, const float* x, float* y);
void activation_backward(Context& ctx, ActivationSpec act, int64_t count, const float* x, const float* y,
                         const float* dy, float* dx);
void softmax_forward(Context& ctx, int rows, int cols, const float* x, float* y);
void softmax_backward(Context& ctx, int rows, int cols, const float* y, const float* dy, float* dx);

// -- Losses and metrics
void softmax_cross_entropy(Context& ctx, int rows, int cols, const float* logits, TargetKind kind,
                           const int32_t* labels, const float* targets, float smoothing, float* row_loss,
                           float* dlogits);
void cross_entropy(Context& ctx, int rows, int cols, const float* probs, TargetKind kind, const int32_t* labels,
                   const float* targets, float smoothing, float* row_loss, float* dprobs);
void mse_loss(Context& ctx, int rows, int cols, const float* pred, const float* targets, float* row_loss,
              float* dpred);
void binary_cross_entropy(Context& ctx, int rows, int cols, const float* probs, const float* targets,
                          float* row_loss, float* dprobs);
void binary_cross_entropy_logits(Context& ctx, int rows, int cols, const float* logits, const float* targets,
                                 float* row_loss, float* dlogits);
// accum is device memory (2 doubles), read back by the host once per progress update.
void accumulate_metrics(Context& ctx, int rows, int cols, const float* row_loss, const float* scores,
                        TargetKind kind, const int32_t* labels, const float* targets,
                        bool scores_are_logits, double* accum);
// One kernel, one block, when softmax_cross_entropy_metrics_takes(rows), with the same bits
// as the two ops it replaces (which run otherwise): one launch fewer per training step. The
// limit is set on paper: one block's 16 warps take rows / 16 rows each, against the loss
// kernel's warp per row, so past a few hundred rows the two parallel launches are faster.
constexpr int kSoftmaxCrossEntropyMetricsMaxRows = 512;
// With dbias (not null) the one-block kernel also writes dlogits' column sums there, in the
// order of Dense's bias gradient (the last Dense layer's, with its bits); returns whether it
// did (false on the two-op path, which leaves dbias alone).
bool softmax_cross_entropy_metrics_takes(int rows);
bool softmax_cross_entropy_with_metrics(Context& ctx, int rows, int cols, const float* logits, TargetKind kind,
                                        const int32_t* labels, const float* targets, float smoothing, float* row_loss,
                                        float* dlogits, double* accum, float* dbias = nullptr);

// -- Optimizers and weight averaging
void sgd_update(Context& ctx, int64_t count, float* param, const float* grad, float* velocity,
                const SgdConfig& cfg);
void adam_update(Context& ctx, int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamConfig& cfg);
// The same updates with their per-call scalars (formulas/optimizer.hpp: the learning rate
// after the schedule, Adam's bias corrections) read from device memory, where the caller
// uploaded them before the step (upload_staging/upload, outside any graph): a training step
// captured in a CUDA graph then replays with each step's own values, where the forms above
// would bake in the captured step's.
void sgd_update(Context& ctx, int64_t count, float* param, const float* grad, float* velocity,
                const OptimizerScalars* device_scalars);  // from sgd_scalars
void adam_update(Context& ctx, int64_t count, float* param, const float* grad, float* m, float* v,
                 const OptimizerScalars* device_scalars);  // from adam_scalars
void lerp(Context& ctx, int64_t count, float* a, const float* b, float t);

}  // namespace cnn::ops::cuda

// ---- Batch normalisation, dropout, global pooling, scaling, augmentation ------------------
// (airbench94's building blocks.) Shapes: `n` samples of `c` channels of `hw` values each,
// i.e. NCHW with hw = H * W, or [n, features] with c = features and hw = 1; element
// (i, k, p) sits at (i * c + k) * hw + p. Random decisions come from the counter-based hash
// in src/kernels/random.hpp, identical on both backends.
namespace cnn::ops {

// Batch normalisation of channel k over its m = n * hw values (PyTorch's BatchNorm2d /
// BatchNorm1d, Keras's BatchNormalization on the channel axis):
//   batch statistics  mean_k = sum(x) / m,  var_k = sum((x - mean_k)^2) / m   (biased)
//   invstd_k = 1 / sqrt(var_k + eps),  xhat = (x - mean_k) invstd_k,  y = gamma_k xhat + beta_k
// Training uses the batch statistics and moves the running ones towards them, PyTorch's
// momentum convention (momentum = weight of the NEW batch; Keras's momentum is 1 - this):
//   running_mean = (1 - momentum) running_mean + momentum mean_k
//   running_var  = (1 - momentum) running_var  + momentum var_k m / (m - 1)   (unbiased;
//                                                                            var_k when m = 1)
// Inference uses running_mean / running_var in place of the batch statistics.
// gamma null: 1; beta null: 0. Backward (training), with the batch statistics' own gradient:
//   dbeta_k = sum(dy),  dgamma_k = sum(dy xhat),  dx = gamma_k invstd_k (dy - dbeta_k / m - xhat dgamma_k / m)
// Backward (inference), the statistics being constants: dx = gamma_k invstd_k dy, same dgamma/dbeta.
// dx, dgamma, dbeta may each be null (not computed). x and y may not alias; dx may alias dy.
//
// Synchronised statistics (data-parallel, FitOptions::sync_batchnorm): with `across_ranks`
// set, the training ops of every rank see one batch, the union of the ranks' rows, M = sum of
// the ranks' m. Forward: mean_k = (sum over ranks of sum(x)) / M, then var_k likewise about
// that mean (two reductions, as the two passes above); the running statistics use M. Backward:
// each rank's dy is the gradient of its own mean loss over its n_r rows, and fit averages the
// ranks' gradients weighted by n_r / N, so rank r's share of the global batch's terms is
//   mean_dy_k = (sum over ranks of m_r sum(dy)) / (M m_r)   (likewise mean_dy_xhat),
// which is sum(dy) / m with one rank; dgamma and dbeta stay this rank's sums (the gradient
// all-reduce weights them). The CUDA ops make the same two forward reductions and the one
// backward reduction on device doubles (RankSum::on_device).
//
// The operands of each op, one struct per op (x, y, dx, dy hold n * c * hw values, every
// other pointer c); write them with designated initialisers, {.x = ..., .gamma = ...}.
struct RankSum {
  // values <- the sum over the ranks of every rank's values, in place, on every rank alike.
  // Every rank calls it at the same point of the same step (a collective).
  virtual void operator()(double* values, int count) const = 0;
  // The same for `count` doubles in device memory, ordered after the work queued on ctx's
  // stream and before what is queued after the call. By default through host memory (a copy
  // out, operator(), a copy back: ordered by the legacy stream the context's stream
  // synchronises with; never in a captured step, and data-parallel steps are not captured);
  // the communicator overrides it with NCCL.
  virtual void on_device(::cnn::cuda::Context& ctx, double* values, int count) const;

 protected:
  ~RankSum() = default;
};
template <class T>
struct BatchNormForwardTrainingArgs {
  const T* x = nullptr;
  const T* gamma = nullptr;
  const T* beta = nullptr;
  T eps = 0, momentum = 0;
  T* running_mean = nullptr;  // moved towards the batch statistics
  T* running_var = nullptr;
  T* save_mean = nullptr;     // the batch statistics, for backward
  T* save_invstd = nullptr;
  T* y = nullptr;
  const RankSum* across_ranks = nullptr;  // synchronised statistics; null: this batch's own
};
template <class T>
struct BatchNormForwardInferenceArgs {
  const T* x = nullptr;
  const T* gamma = nullptr;
  const T* beta = nullptr;
  const T* running_mean = nullptr;
  const T* running_var = nullptr;
  T eps = 0;
  T* y = nullptr;
};
template <class T>
struct BatchNormBackwardTrainingArgs {
  const T* x = nullptr;
  const T* dy = nullptr;
  const T* gamma = nullptr;
  const T* save_mean = nullptr;  // as the training forward saved them
  const T* save_invstd = nullptr;
  T* dx = nullptr;
  T* dgamma = nullptr;
  T* dbeta = nullptr;
  const RankSum* across_ranks = nullptr;  // as the forward's
};
template <class T>
struct BatchNormBackwardInferenceArgs {
  const T* x = nullptr;
  const T* dy = nullptr;
  const T* gamma = nullptr;
  const T* running_mean = nullptr;
  const T* running_var = nullptr;
  T eps = 0;
  T* dx = nullptr;
  T* dgamma = nullptr;
  T* dbeta = nullptr;
};

// Dropout (inverted): element i of the `count` values is kept when
// random::dropout_keep(seed, i, random::dropout_threshold(rate)); kept values are scaled by
// 1 / (1 - rate), dropped ones are 0. Backward recomputes the same mask from the same seed
// (nothing is stored): dx = keep ? dy / (1 - rate) : 0. rate in [0, 1). In place is fine.

// Global pooling: x [n, c, hw] -> y [n, c]. The average divides by hw; the max's gradient goes
// to the first maximum of the plane in memory order (as max pooling's window ties).

// Augmentation of a batch of images x [n, c, h, w] into y (no aliasing), per image:
//   y[r, q] = 0                                                   inside the cutout square
//           = x[reflect(r + sy, h), reflect((flip ? w - 1 - q : q) + sx, w)]   elsewhere
// i.e. translate (random crop of the reflect-padded image: output pixel (r, q) reads input
// pixel (r + sy, q + sx)), then mirror, then cut out. reflect mirrors without repeating the
// edge (PyTorch's 'reflect': -1 -> 1, h -> h - 2). The draws of image i come from (seed,
// first_index + i): sy, sx uniform in [-translate, translate]; the flip from one bit
// (FlipMode::Random) or from parity (Alternate: flipped when first_index + i + epoch is odd,
// airbench's every-other-epoch scheme, whose per-image start comes from the data order);
// the cutout square's top-left corner uniform in [0, h - cutout] x [0, w - cutout] (the
// square lies inside the image). The same seed gives the same batch on both backends, bit
// for bit (the op only copies or zeroes values). first_index lets a data set be augmented
// in chunks with the same result as in one call.
using cnn::FlipMode;  // types.hpp: None, Random, Alternate
struct AugmentSpec {
  int translate = 0;          // largest shift per axis, 0 = off; must be < h and < w
  FlipMode flip = FlipMode::None;
  int cutout = 0;             // side of the zeroed square, 0 = off; at most h and w
  int64_t epoch = 0;          // FlipMode::Alternate's parity
  int64_t first_index = 0;    // image i of the call is image first_index + i of the data set
};

namespace cpu {

// -- Batch normalisation
template <class T>
void batchnorm_forward_training(int n, int c, int hw, const BatchNormForwardTrainingArgs<T>& a);
template <class T>
void batchnorm_forward_inference(int n, int c, int hw, const BatchNormForwardInferenceArgs<T>& a);
template <class T>
void batchnorm_backward_training(int n, int c, int hw, const BatchNormBackwardTrainingArgs<T>& a);
template <class T>
void batchnorm_backward_inference(int n, int c, int hw, const BatchNormBackwardInferenceArgs<T>& a);

// -- Dropout
template <class T>
void dropout_forward(int64_t count, float rate, uint64_t seed, const T* x, T* y);
template <class T>
void dropout_backward(int64_t count, float rate, uint64_t seed, const T* dy, T* dx);

// -- Global pooling
template <class T>
void global_avgpool_forward(int n, int c, int hw, const T* x, T* y);
template <class T>
void global_avgpool_backward(int n, int c, int hw, const T* dy, T* dx);
template <class T>
void global_maxpool_forward(int n, int c, int hw, const T* x, T* y);
template <class T>
void global_maxpool_backward(int n, int c, int hw, const T* x, const T* dy, T* dx);

// -- Scaling
// y = alpha x, elementwise (its own backward); in place is fine.
template <class T>
void scale(int64_t count, T alpha, const T* x, T* y);

// -- Precision policy (types.hpp Precision; the rounding itself is formulas/precision.hpp)
// y = x rounded to the policy's product precision, elementwise: round_to_bf16 for BF16,
// round_to_tf32 for TF32, a copy for FP32; in place is fine. Where the policy rounds (the
// reference that tensor-core kernels must reproduce bit for bit in their operands), in
// Conv2D and Dense (src/host/layers/{conv2d,dense}.cpp), float steps only:
//   forward          the layer's input x and its weight W (a rounded copy; the fp32 master
//                    stays in the parameter buffer), into the product; bias, activation and
//                    Dense's scale apply in fp32 to the fp32 accumulator.
//   backward         dz, the gradient after undoing the activation (and Dense's scale), is
//                    rounded in place; the input gradient dz * W reads it and rounded W, the
//                    weight gradient dz^T x reads it and rounded x, the bias gradient sums it
//                    (in fp32). Weight and bias gradients are written in fp32.
//   everything else  fp32: other layers (pooling, BatchNormalization, activations, dropout),
//                    the loss, the optimizer and its state, the gradients between layers
//                    except as just said.
void round_to_precision(Precision p, int64_t count, const float* x, float* y);

// -- Augmentation
template <class T>
void augment_images(int n, int c, int h, int w, const T* x, T* y, const AugmentSpec& spec, uint64_t seed);
// Test-time augmentation: every image mirrored left-right; every image translated (output
// pixel (r, q) reads input (reflect(r + dy), reflect(q + dx)), |dx| < w, |dy| < h).
template <class T>
void flip_images(int n, int c, int h, int w, const T* x, T* y);
template <class T>
void translate_images(int n, int c, int h, int w, const T* x, T* y, int dx, int dy);

}  // namespace cpu
}  // namespace cnn::ops

namespace cnn::ops::cuda {

// -- Batch normalisation
void batchnorm_forward_training(Context& ctx, int n, int c, int hw, const BatchNormForwardTrainingArgs<float>& a);
void batchnorm_forward_inference(Context& ctx, int n, int c, int hw, const BatchNormForwardInferenceArgs<float>& a);
void batchnorm_backward_training(Context& ctx, int n, int c, int hw, const BatchNormBackwardTrainingArgs<float>& a);
void batchnorm_backward_inference(Context& ctx, int n, int c, int hw, const BatchNormBackwardInferenceArgs<float>& a);

// -- Dropout
void dropout_forward(Context& ctx, int64_t count, float rate, uint64_t seed, const float* x, float* y);
void dropout_backward(Context& ctx, int64_t count, float rate, uint64_t seed, const float* dy, float* dx);

// -- Global pooling
void global_avgpool_forward(Context& ctx, int n, int c, int hw, const float* x, float* y);
void global_avgpool_backward(Context& ctx, int n, int c, int hw, const float* dy, float* dx);
void global_maxpool_forward(Context& ctx, int n, int c, int hw, const float* x, float* y);
void global_maxpool_backward(Context& ctx, int n, int c, int hw, const float* x, const float* dy, float* dx);

// -- Scaling
void scale(Context& ctx, int64_t count, float alpha, const float* x, float* y);

// -- Precision policy (as ops::cpu::round_to_precision, bit for bit)
void round_to_precision(Context& ctx, Precision p, int64_t count, const float* x, float* y);

// -- Augmentation
void augment_images(Context& ctx, int n, int c, int h, int w, const float* x, float* y, const AugmentSpec& spec,
                    uint64_t seed);
void flip_images(Context& ctx, int n, int c, int h, int w, const float* x, float* y);
void translate_images(Context& ctx, int n, int c, int h, int w, const float* x, float* y, int dx, int dy);

}  // namespace cnn::ops::cuda
