#pragma once
// Running an op on the device an Exec names: ops::cuda::<op> for float on the GPU, else
// ops::cpu::<op><T>.
//
// Why one named wrapper per op rather than run_op with two lambdas at every call site: the
// call sites stay one line with their arguments written once (two lambdas would repeat every
// argument list, and the two copies could drift apart), and go-to-definition on
// run::conv2d_forward lands here, one hop from both implementations.
#include <type_traits>

#include "cnn/error.hpp"
#include "cnn/layer.hpp"
#include "kernels/ops.hpp"

namespace cnn {

// Calls cuda(*e.cuda) when T is float and e is on the GPU, else cpu(). `cuda` must be a
// generic lambda (auto& context): it is instantiated only in a CUDA build and only for float,
// so a CPU-only build, which defines no ops::cuda function, never refers to one.
template <class T, class Cpu, class Cuda>
void run_op(const Exec& e, Cpu&& cpu, Cuda&& cuda) {
  if constexpr (std::is_same_v<T, float>) {
    if (e.on_cuda()) {
#if CNN_WITH_CUDA
      cuda(*e.cuda);
#else
      (void)cuda;
      fail("CUDA device requested, but ", cuda_unavailable_reason());
#endif
      return;
    }
  }
  cpu();
}

// Each wrapper takes the op's arguments after the Exec, as ops.hpp declares them.
namespace run {

// ---- Convolution, dense, pooling ---------------------------------------------------------
template <class T, class... A>
void conv2d_forward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::conv2d_forward<T>(a...); }, [&](auto& c) { ops::cuda::conv2d_forward(c, a...); });
}
template <class T, class... A>
void conv2d_backward_input(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::conv2d_backward_input<T>(a...); },
            [&](auto& c) { ops::cuda::conv2d_backward_input(c, a...); });
}
template <class T, class... A>
void conv2d_backward_params(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::conv2d_backward_params<T>(a...); },
            [&](auto& c) { ops::cuda::conv2d_backward_params(c, a...); });
}
template <class T, class... A>
void dense_forward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::dense_forward<T>(a...); }, [&](auto& c) { ops::cuda::dense_forward(c, a...); });
}
template <class T, class... A>
void dense_backward_input(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::dense_backward_input<T>(a...); },
            [&](auto& c) { ops::cuda::dense_backward_input(c, a...); });
}
template <class T, class... A>
void dense_backward_params(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::dense_backward_params<T>(a...); },
            [&](auto& c) { ops::cuda::dense_backward_params(c, a...); });
}
template <class T, class... A>
void maxpool2d_forward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::maxpool2d_forward<T>(a...); }, [&](auto& c) { ops::cuda::maxpool2d_forward(c, a...); });
}
template <class T, class... A>
void maxpool2d_backward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::maxpool2d_backward<T>(a...); },
            [&](auto& c) { ops::cuda::maxpool2d_backward(c, a...); });
}
template <class T, class... A>
void avgpool2d_forward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::avgpool2d_forward<T>(a...); }, [&](auto& c) { ops::cuda::avgpool2d_forward(c, a...); });
}
template <class T, class... A>
void avgpool2d_backward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::avgpool2d_backward<T>(a...); },
            [&](auto& c) { ops::cuda::avgpool2d_backward(c, a...); });
}
template <class T, class... A>
void global_avgpool_forward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::global_avgpool_forward<T>(a...); },
            [&](auto& c) { ops::cuda::global_avgpool_forward(c, a...); });
}
template <class T, class... A>
void global_avgpool_backward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::global_avgpool_backward<T>(a...); },
            [&](auto& c) { ops::cuda::global_avgpool_backward(c, a...); });
}
template <class T, class... A>
void global_maxpool_forward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::global_maxpool_forward<T>(a...); },
            [&](auto& c) { ops::cuda::global_maxpool_forward(c, a...); });
}
template <class T, class... A>
void global_maxpool_backward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::global_maxpool_backward<T>(a...); },
            [&](auto& c) { ops::cuda::global_maxpool_backward(c, a...); });
}

// ---- Element-wise: copy, scale, activations, softmax, dropout ----------------------------
template <class T, class... A>
void copy(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::copy<T>(a...); }, [&](auto& c) { ops::cuda::copy(c, a...); });
}
template <class T, class... A>
void scale(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::scale<T>(a...); }, [&](auto& c) { ops::cuda::scale(c, a...); });
}
template <class T, class... A>
void activation_forward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::activation_forward<T>(a...); },
            [&](auto& c) { ops::cuda::activation_forward(c, a...); });
}
template <class T, class... A>
void activation_backward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::activation_backward<T>(a...); },
            [&](auto& c) { ops::cuda::activation_backward(c, a...); });
}
// activation_backward over rows x cols; on CUDA in the one kernel that also writes the bias
// gradient dbias (ops.hpp). The CPU leaves dbias to dense_backward_params (its fast path
// computes it with dW). Returns whether dbias was written.
template <class T>
bool activation_backward_with_bias_grad(const Exec& e, ActivationSpec act, int rows, int cols, const T* z, const T* y,
                                        const T* dy, T* dz, T* dbias) {
  bool wrote_dbias = false;
  run_op<T>(e, [&] { ops::cpu::activation_backward<T>(act, int64_t(rows) * cols, z, y, dy, dz); },
            [&](auto& c) {
              ops::cuda::activation_backward_with_bias_grad(c, act, rows, cols, z, y, dy, dz, dbias);
              wrote_dbias = true;
            });
  return wrote_dbias;
}
template <class T, class... A>
void softmax_forward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::softmax_forward<T>(a...); }, [&](auto& c) { ops::cuda::softmax_forward(c, a...); });
}
template <class T, class... A>
void softmax_backward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::softmax_backward<T>(a...); }, [&](auto& c) { ops::cuda::softmax_backward(c, a...); });
}
template <class T, class... A>
void dropout_forward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::dropout_forward<T>(a...); }, [&](auto& c) { ops::cuda::dropout_forward(c, a...); });
}
template <class T, class... A>
void dropout_backward(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::dropout_backward<T>(a...); }, [&](auto& c) { ops::cuda::dropout_backward(c, a...); });
}

// ---- Batch normalisation -----------------------------------------------------------------
template <class T, class... A>
void batchnorm_forward_training(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::batchnorm_forward_training<T>(a...); },
            [&](auto& c) { ops::cuda::batchnorm_forward_training(c, a...); });
}
template <class T, class... A>
void batchnorm_forward_inference(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::batchnorm_forward_inference<T>(a...); },
            [&](auto& c) { ops::cuda::batchnorm_forward_inference(c, a...); });
}
template <class T, class... A>
void batchnorm_backward_training(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::batchnorm_backward_training<T>(a...); },
            [&](auto& c) { ops::cuda::batchnorm_backward_training(c, a...); });
}
template <class T, class... A>
void batchnorm_backward_inference(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::batchnorm_backward_inference<T>(a...); },
            [&](auto& c) { ops::cuda::batchnorm_backward_inference(c, a...); });
}

// ---- Losses and metrics ------------------------------------------------------------------
template <class T, class... A>
void softmax_cross_entropy(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::softmax_cross_entropy<T>(a...); },
            [&](auto& c) { ops::cuda::softmax_cross_entropy(c, a...); });
}
template <class T, class... A>
void cross_entropy(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::cross_entropy<T>(a...); }, [&](auto& c) { ops::cuda::cross_entropy(c, a...); });
}
template <class T, class... A>
void mse_loss(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::mse_loss<T>(a...); }, [&](auto& c) { ops::cuda::mse_loss(c, a...); });
}
template <class T, class... A>
void binary_cross_entropy(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::binary_cross_entropy<T>(a...); },
            [&](auto& c) { ops::cuda::binary_cross_entropy(c, a...); });
}
template <class T, class... A>
void binary_cross_entropy_logits(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::binary_cross_entropy_logits<T>(a...); },
            [&](auto& c) { ops::cuda::binary_cross_entropy_logits(c, a...); });
}
template <class T, class... A>
void accumulate_metrics(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::accumulate_metrics<T>(a...); },
            [&](auto& c) { ops::cuda::accumulate_metrics(c, a...); });
}
template <class T, class... A>
void softmax_cross_entropy_with_metrics(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::softmax_cross_entropy_with_metrics<T>(a...); },
            [&](auto& c) { ops::cuda::softmax_cross_entropy_with_metrics(c, a...); });
}
// The same, and on CUDA the column sums of the gradient into dbias where its one kernel can
// (ops.hpp); returns whether dbias was written (never on the CPU).
template <class T, class... A>
bool softmax_cross_entropy_with_metrics_and_bias(const Exec& e, T* dbias, const A&... a) {
  bool wrote = false;
  run_op<T>(e, [&] { ops::cpu::softmax_cross_entropy_with_metrics<T>(a...); },
            [&](auto& c) { wrote = ops::cuda::softmax_cross_entropy_with_metrics(c, a..., dbias); });
  return wrote;
}

// ---- Optimizers and weight averaging -----------------------------------------------------
template <class T, class... A>
void sgd_update(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::sgd_update<T>(a...); }, [&](auto& c) { ops::cuda::sgd_update(c, a...); });
}
template <class T, class... A>
void adam_update(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::adam_update<T>(a...); }, [&](auto& c) { ops::cuda::adam_update(c, a...); });
}
template <class T, class... A>
void lerp(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::lerp<T>(a...); }, [&](auto& c) { ops::cuda::lerp(c, a...); });
}

// ---- Precision policy --------------------------------------------------------------------
inline void round_to_precision(const Exec& e, Precision p, int64_t count, const float* x, float* y) {
  run_op<float>(e, [&] { ops::cpu::round_to_precision(p, count, x, y); },
                [&](auto& c) { ops::cuda::round_to_precision(c, p, count, x, y); });
}

// ---- Augmentation ------------------------------------------------------------------------
template <class T, class... A>
void augment_images(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::augment_images<T>(a...); }, [&](auto& c) { ops::cuda::augment_images(c, a...); });
}
template <class T, class... A>
void flip_images(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::flip_images<T>(a...); }, [&](auto& c) { ops::cuda::flip_images(c, a...); });
}
template <class T, class... A>
void translate_images(const Exec& e, const A&... a) {
  run_op<T>(e, [&] { ops::cpu::translate_images<T>(a...); },
            [&](auto& c) { ops::cuda::translate_images(c, a...); });
}

}  // namespace run
}  // namespace cnn
