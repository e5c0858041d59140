// Max and average pooling on the GPU, with the CPU reference's semantics: windows clip
// to the image ('same' padding adds no values), the average divides by the in-bounds
// count, and a max window's first maximum in row-major order takes the gradient.
//
// Forward: one thread per output. Backward: one thread per INPUT element, which gathers
// from every window containing it (no atomics, no zeroing pass, deterministic), visiting
// the windows in the same row-major order in which the CPU scatters, so the sums match.
#include "kernels/cuda/common.cuh"

namespace cnn::ops::cuda {
namespace {
using namespace ::cnn::cuda;

constexpr int kThreads = 256;

struct Window {
  int h0, h1, w0, w1;  // in-bounds input rows [h0, h1) and columns [w0, w1)
};

__device__ __forceinline__ Window window_at(const Pool2DShape& s, int oh, int ow) {
  const int h = oh * s.stride_h - s.pad_top, w = ow * s.stride_w - s.pad_left;
  return {max(h, 0), min(h + s.k_h, s.h_in), max(w, 0), min(w + s.k_w, s.w_in)};
}

// Plane index of the window's first maximum, row-major (strict > keeps the first).
__device__ __forceinline__ int argmax_in(const Pool2DShape& s, const float* plane, const Window& win) {
  int best = win.h0 * s.w_in + win.w0;
  float best_v = plane[best];
  for (int ih = win.h0; ih < win.h1; ++ih)
    for (int iw = win.w0; iw < win.w1; ++iw) {
      const float v = plane[ih * s.w_in + iw];
      if (v > best_v) {
        best_v = v;
        best = ih * s.w_in + iw;
      }
    }
  return best;
}

// The windows containing input row ih are oh in [first, last]: window oh covers rows
// [oh*stride - pad, oh*stride - pad + k).
struct Range {
  int first, last;
};
__device__ __forceinline__ Range windows_over(int i, int pad, int k, int stride, int out) {
  const int lo = i + pad - k + 1;  // smallest oh * stride
  const int first = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  const int last = min((i + pad) / stride, out - 1);
  return {first, last};
}

// Element i of a stack of h x w planes: its plane, its index in the plane, its row and column.
struct PlanePixel {
  int64_t plane;
  int p, row, col;
};
__device__ __forceinline__ PlanePixel plane_pixel(int64_t i, int h, int w) {
  const int64_t plane = i / (h * w);
  const int p = int(i - plane * (h * w));
  const int row = p / w;
  return {plane, p, row, p - row * w};
}

__global__ void maxpool2d_forward_kernel(Pool2DShape s, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t count = int64_t(s.n) * s.c * s.h_out * s.w_out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const PlanePixel px = plane_pixel(i, s.h_out, s.w_out);
    const float* plane = x + px.plane * s.h_in * s.w_in;
    y[i] = plane[argmax_in(s, plane, window_at(s, px.row, px.col))];
  }
}

__global__ void avgpool2d_forward_kernel(Pool2DShape s, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t count = int64_t(s.n) * s.c * s.h_out * s.w_out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const PlanePixel px = plane_pixel(i, s.h_out, s.w_out);
    const float* plane = x + px.plane * s.h_in * s.w_in;
    const Window win = window_at(s, px.row, px.col);
    float sum = 0.f;
    for (int ih = win.h0; ih < win.h1; ++ih)
      for (int iw = win.w0; iw < win.w1; ++iw) sum += plane[ih * s.w_in + iw];
    y[i] = sum / float((win.h1 - win.h0) * (win.w1 - win.w0));
  }
}

// What a backward pass writes at input element i: its gradient `sum`, or with the activation
// below (ops.hpp) the gradient before it, as activation_backward_kernel would compute it from
// the pool's input x (that layer's output).
__device__ __forceinline__ float with_activation_below(ActivationSpec below, const float* x, int64_t i, float sum) {
  return below.kind == Activation::Linear ? sum : formulas::activation_grad<float>(below, nullptr, i, x[i], sum);
}

// dx[ih, iw] = sum of dy over the windows whose first maximum is (ih, iw).
__global__ void maxpool2d_backward_kernel(Pool2DShape s, const float* __restrict__ x, const float* __restrict__ dy,
                                          float* __restrict__ dx, ActivationSpec below) {
  const int64_t count = int64_t(s.n) * s.c * s.h_in * s.w_in;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const PlanePixel px = plane_pixel(i, s.h_in, s.w_in);
    const int ih = px.row, iw = px.col;
    const float* plane = x + px.plane * s.h_in * s.w_in;
    const float* grad = dy + px.plane * s.h_out * s.w_out;
    const Range rows = windows_over(ih, s.pad_top, s.k_h, s.stride_h, s.h_out);
    const Range cols = windows_over(iw, s.pad_left, s.k_w, s.stride_w, s.w_out);
    float sum = 0.f;
    for (int oh = rows.first; oh <= rows.last; ++oh)
      for (int ow = cols.first; ow <= cols.last; ++ow)
        if (argmax_in(s, plane, window_at(s, oh, ow)) == px.p) sum += grad[oh * s.w_out + ow];
    dx[i] = with_activation_below(below, x, i, sum);
  }
}

// dx[ih, iw] = sum over the windows containing (ih, iw) of dy / (the window's in-bounds count).
__global__ void avgpool2d_backward_kernel(Pool2DShape s, const float* __restrict__ dy, float* __restrict__ dx,
                                          const float* __restrict__ x, ActivationSpec below) {
  const int64_t count = int64_t(s.n) * s.c * s.h_in * s.w_in;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const PlanePixel px = plane_pixel(i, s.h_in, s.w_in);
    const int ih = px.row, iw = px.col;
    const float* grad = dy + px.plane * s.h_out * s.w_out;
    const Range rows = windows_over(ih, s.pad_top, s.k_h, s.stride_h, s.h_out);
    const Range cols = windows_over(iw, s.pad_left, s.k_w, s.stride_w, s.w_out);
    float sum = 0.f;
    for (int oh = rows.first; oh <= rows.last; ++oh)
      for (int ow = cols.first; ow <= cols.last; ++ow) {
        const Window win = window_at(s, oh, ow);
        sum += grad[oh * s.w_out + ow] / float((win.h1 - win.h0) * (win.w1 - win.w0));
      }
    dx[i] = with_activation_below(below, x, i, sum);
  }
}

void check_activation_below(ActivationSpec below, const float* x) {
  CNN_CHECK(pool_backward_takes_activation(below) && (x || below.kind == Activation::Linear),
            "pooling backward: cannot take the gradient of ", to_string(below.kind), " below it");
}

}  // namespace

void maxpool2d_forward(Context& ctx, const Pool2DShape& s, const float* x, float* y) {
  const int64_t count = s.y_size();
  if (count <= 0) return;
  maxpool2d_forward_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(s, x, y);
  CNN_CUDA_CHECK_LAUNCH("maxpool2d_forward_kernel");
}


void maxpool2d_backward(Context& ctx, const Pool2DShape& s, const float* x, const float* dy, float* dx,
                        ActivationSpec below) {
  check_activation_below(below, x);
  const int64_t count = s.x_size();
  if (count <= 0) return;
  maxpool2d_backward_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(s, x, dy, dx, below);
  CNN_CUDA_CHECK_LAUNCH("maxpool2d_backward_kernel");
}

void avgpool2d_forward(Context& ctx, const Pool2DShape& s, const float* x, float* y) {
  const int64_t count = s.y_size();
  if (count <= 0) return;
  avgpool2d_forward_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(s, x, y);
  CNN_CUDA_CHECK_LAUNCH("avgpool2d_forward_kernel");
}

void avgpool2d_backward(Context& ctx, const Pool2DShape& s, const float* dy, float* dx, const float* x,
                        ActivationSpec below) {
  check_activation_below(below, x);
  const int64_t count = s.x_size();
  if (count <= 0) return;
  avgpool2d_backward_kernel<<<grid_for(ctx, count, kThreads), kThreads, 0, ctx.stream>>>(s, dy, dx, x, below);
  CNN_CUDA_CHECK_LAUNCH("avgpool2d_backward_kernel");
}

}  // namespace cnn::ops::cuda
