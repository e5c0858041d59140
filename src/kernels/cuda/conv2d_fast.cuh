#pragma once
// The specialised convolution kernels for small shapes, where the implicit GEMMs of
// conv2d.cu under-fill the GPU (LeNet-5's conv1 and conv2). They run only when a context
// has ConvKernels::Fast (CNN_CUDA_CONV_KERNELS=fast) and the shape passes their rule; the
// implicit GEMMs stay the default and the general path. Host declarations only, so plain
// C++ (the GPU tests) may include this.
#include "kernels/cuda/context.cuh"
#include "kernels/ops.hpp"

namespace cnn::ops::cuda {

using ::cnn::cuda::Context;

// Direct forward (conv2d_direct.cu) takes c_in <= 8 (an implicit GEMM's K = c_in k_h k_w is
// then too short to fill its 16-deep steps well) when one block's input rows and weights fit
// the 48 KB of shared memory every GPU grants without opting in.
bool direct_forward_takes(const Conv2DShape& s);
// y = act(conv(x, w) + bias), like conv2d_forward; throws unless direct_forward_takes(s).
void conv2d_forward_direct(Context& ctx, const Conv2DShape& s, const float* x, const float* w, const float* bias,
                           ActivationSpec act, float* y);

// The direct forward with the pooling layer after it in its epilogue (window = stride >= 2,
// 'valid'), writing y and the pooled output with the two kernels' bits.
bool direct_forward_pooled_takes(const Conv2DShape& s, const Pool2DShape& p);
void conv2d_forward_direct_pooled(Context& ctx, const Conv2DShape& s, const Pool2DShape& p, bool max_pool,
                                  const float* x, const float* w, const float* bias, ActivationSpec act, float* y,
                                  float* pooled);

// Direct backward input (conv2d_direct.cu), the forward's twin: takes c_in <= 8 (all of dx's
// channels in one thread's accumulators) when a band's dy rows and all weights fit 48 KB.
bool direct_backward_input_takes(const Conv2DShape& s);
// dx from dy, like conv2d_backward_input; throws unless direct_backward_input_takes(s).
void conv2d_backward_input_direct(Context& ctx, const Conv2DShape& s, const float* dy, const float* w, float* dx);

// Split-K weight gradient (conv2d_wgrad_splitk.cu) takes c_out <= 32 and at most 4096
// outputs c_out x (c_in k_h k_w + 1) (the weights plus the bias): few enough outputs that
// one block holds all of them in registers while the (image, position) reduction is spread
// over all multiprocessors.
bool split_k_weight_grad_takes(const Conv2DShape& s);
// dw and (when not null) dbias, like conv2d_backward_params; throws unless
// split_k_weight_grad_takes(s).
void conv2d_backward_params_split_k(Context& ctx, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                                    float* dbias);

}  // namespace cnn::ops::cuda
