// Conv2D on the tensor cores under a tf32/bf16 policy (conv2d_mma.hpp says what and why).
//
// Buffers: Conv2DMmaScratch, per layer, so that they survive from forward to backward (ctx
// scratch does not: the kernels use it themselves) and never grow after a shape's first step
// (a CUDA graph captures the second). bf16 tensors are 16-bit encodings in float blocks.
#include "layers/conv2d_mma.hpp"

#include <algorithm>
#include <cstdint>

namespace cnn::conv_mma {

#if CNN_WITH_CUDA
namespace {
namespace gpu = ops::cuda;

// The policy's tensor-core path applies at all: a float step on CUDA under tf32 or bf16.
bool applies(const Exec& e) {
  return e.on_cuda() && e.precision != Precision::FP32 && cuda::conv_mma_enabled(*e.cuda);
}

uint16_t* bf16_buffer(LayerScratch& scratch, int64_t count) {
  return reinterpret_cast<uint16_t*>(scratch.get<float>((count + 1) / 2, Device::CUDA));
}

// NCHW x [n, c, h, w] -> NHWC [n, h, w, c_padded] in the policy's product precision; also
// OIHW weights -> [c_out, k_h, k_w, c_padded] (n = c_out). Returns the bf16 or the fp32 copy.
struct ChannelsLast {
  const uint16_t* bf16 = nullptr;
  const float* tf32 = nullptr;
};
ChannelsLast channels_last(const Exec& e, int n, int c, int h, int w, int c_padded, const float* x,
                           LayerScratch& scratch) {
  const int64_t count = int64_t(n) * h * w * c_padded;
  if (e.precision == Precision::BF16) {
    uint16_t* y = bf16_buffer(scratch, count);
    gpu::nchw_to_nhwc_bf16(*e.cuda, n, c, h, w, c_padded, x, y);
    return {y, nullptr};
  }
  float* y = scratch.get<float>(count, Device::CUDA);
  gpu::nchw_to_nhwc_tf32(*e.cuda, n, c, h, w, c_padded, x, y);
  return {nullptr, y};
}

// One fp32 NHWC buffer serves forward's y and backward's dx and dw in turn (stream order keeps
// them apart), asked for at its largest every time so that it never grows mid-step.
float* channels_last_result(const ops::Conv2DShape& s, Conv2DMmaScratch& m) {
  return m.out.get<float>(std::max({s.y_size(), s.x_size(), s.w_size()}), Device::CUDA);
}

}  // namespace

bool forward(const Exec& e, const ops::Conv2DShape& s, const float* x, const float* w, const float* bias,
             ActivationSpec act, float* y, Conv2DMmaScratch& m) {
  m.x_source = nullptr;  // whatever an earlier forward kept is stale now
  if (!applies(e)) return false;
  const bool bf16 = e.precision == Precision::BF16;
  ops::Conv2DShape padded = s;
  padded.c_in = bf16 ? gpu::bf16_padded_channels(s.c_in) : gpu::tf32_padded_channels(s.c_in);
  if (!(bf16 ? gpu::bf16_forward_takes(padded) : gpu::tf32_forward_takes(padded))) return false;
  auto& c = *e.cuda;
  const ChannelsLast xl = channels_last(e, s.n, s.c_in, s.h_in, s.w_in, padded.c_in, x, m.x);
  const ChannelsLast wl = channels_last(e, s.c_out, s.c_in, s.k_h, s.k_w, padded.c_in, w, m.w);
  float* out = channels_last_result(s, m);
  if (bf16) gpu::conv2d_forward_bf16(c, padded, xl.bf16, wl.bf16, bias, act, out);
  else gpu::conv2d_forward_tf32(c, padded, xl.tf32, wl.tf32, bias, act, out);
  gpu::nhwc_to_nchw(c, s.n, s.c_out, s.h_out, s.w_out, out, y);
  // The weight gradient reads exactly this x when it is bf16 and unpadded.
  const bool reusable = bf16 && padded.c_in == s.c_in;
  m.x_source = reusable ? x : nullptr;
  m.x_batch = s.n;
  return true;
}

Backward takes_backward(const Exec& e, const ops::Conv2DShape& s, bool want_dx, bool want_dw) {
  Backward done;
  if (!applies(e)) return done;
  const bool bf16 = e.precision == Precision::BF16;
  done.dx = want_dx && (bf16 ? gpu::bf16_backward_input_takes(s) : gpu::tf32_backward_input_takes(s));
  done.params = want_dw && bf16 && gpu::bf16_backward_params_takes(s);
  return done;
}

Backward backward(const Exec& e, const ops::Conv2DShape& s, const float* dz, const float* x, const float* w,
                  float* dx, float* dw, float* dbias, Conv2DMmaScratch& m) {
  const Backward done = takes_backward(e, s, dx != nullptr, dw != nullptr);
  if (!done.dx && !done.params) return done;
  const bool bf16 = e.precision == Precision::BF16;
  auto& c = *e.cuda;
  // The conversion rounds dz to the policy's precision (as round_gradient would: the same
  // formula, so an already rounded dz is unchanged).
  const ChannelsLast dzl = channels_last(e, s.n, s.c_out, s.h_out, s.w_out, s.c_out, dz, m.dz);
  float* out = channels_last_result(s, m);
  if (done.dx) {
    const ChannelsLast wl = channels_last(e, s.c_out, s.c_in, s.k_h, s.k_w, s.c_in, w, m.w);
    if (bf16) gpu::conv2d_backward_input_bf16(c, s, dzl.bf16, wl.bf16, out);
    else gpu::conv2d_backward_input_tf32(c, s, dzl.tf32, wl.tf32, out);
    gpu::nhwc_to_nchw(c, s.n, s.c_in, s.h_in, s.w_in, out, dx);
  }
  if (done.params) {
    const bool kept = m.x_source == x && m.x_batch == s.n;
    const uint16_t* xl =
        kept ? bf16_buffer(m.x, s.x_size()) : channels_last(e, s.n, s.c_in, s.h_in, s.w_in, s.c_in, x, m.x).bf16;
    gpu::conv2d_backward_params_bf16(c, s, xl, dzl.bf16, out, dbias);
    // [c_out, k_h, k_w, c_in] -> OIHW: the NHWC -> NCHW change with n = c_out.
    gpu::nhwc_to_nchw(c, s.c_out, s.c_in, s.k_h, s.k_w, out, dw);
  }
  return done;
}

#else  // a CPU-only build: there is no tensor-core path

bool forward(const Exec&, const ops::Conv2DShape&, const float*, const float*, const float*, ActivationSpec, float*,
             Conv2DMmaScratch&) {
  return false;
}
Backward takes_backward(const Exec&, const ops::Conv2DShape&, bool, bool) { return {}; }
Backward backward(const Exec&, const ops::Conv2DShape&, const float*, const float*, const float*, float*, float*,
                  float*, Conv2DMmaScratch&) {
  return {};
}

#endif

}  // namespace cnn::conv_mma
