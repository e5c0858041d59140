#include <algorithm>

#include "cnn/error.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops {

WindowAxis window_axis(int in, int kernel, int stride, Padding padding, const char* what) {
  CNN_CHECK(in > 0, what, ": input size ", in, " must be positive");
  CNN_CHECK(kernel > 0, what, ": kernel/pool size ", kernel, " must be positive");
  CNN_CHECK(stride > 0, what, ": stride ", stride, " must be positive");
  WindowAxis axis;
  if (padding == Padding::Valid) {
    CNN_CHECK(kernel <= in, what, ": window ", kernel, " is larger than the input ", in,
              " with 'valid' padding");
    axis.out = (in - kernel) / stride + 1;
    axis.pad_before = 0;
  } else {
    axis.out = (in + stride - 1) / stride;
    const int total = std::max((axis.out - 1) * stride + kernel - in, 0);
    axis.pad_before = total / 2;  // the odd one goes after, as in TensorFlow
  }
  return axis;
}

Conv2DShape Conv2DShape::make(int n, int c_in, int h_in, int w_in, int c_out, int k_h, int k_w,
                              int stride_h, int stride_w, Padding padding) {
  CNN_CHECK(n > 0 && c_in > 0 && h_in > 0 && w_in > 0, "Conv2D: input [", n, ", ", c_in, ", ", h_in,
            ", ", w_in, "] has a dimension <= 0");
  CNN_CHECK(c_out > 0, "Conv2D: filters ", c_out, " must be positive");
  CNN_CHECK(k_h > 0 && k_w > 0, "Conv2D: kernel size ", k_h, "x", k_w, " must be positive");
  CNN_CHECK(stride_h > 0 && stride_w > 0, "Conv2D: strides ", stride_h, "x", stride_w,
            " must be positive");
  CNN_CHECK(padding != Padding::Valid || (k_h <= h_in && k_w <= w_in), "Conv2D: kernel ", k_h, "x",
            k_w, " is larger than the input ", h_in, "x", w_in, " with 'valid' padding");
  const WindowAxis rows = window_axis(h_in, k_h, stride_h, padding, "Conv2D");
  const WindowAxis cols = window_axis(w_in, k_w, stride_w, padding, "Conv2D");
  return Conv2DShape{n, c_in, h_in, w_in, c_out, k_h, k_w, stride_h, stride_w, rows.pad_before,
                     cols.pad_before, rows.out, cols.out};
}

Pool2DShape Pool2DShape::make(int n, int c, int h_in, int w_in, int k_h, int k_w, int stride_h,
                              int stride_w, Padding padding) {
  CNN_CHECK(n > 0 && c > 0 && h_in > 0 && w_in > 0, "Pooling2D: input [", n, ", ", c, ", ", h_in, ", ",
            w_in, "] has a dimension <= 0");
  CNN_CHECK(k_h > 0 && k_w > 0, "Pooling2D: pool size ", k_h, "x", k_w, " must be positive");
  CNN_CHECK(stride_h > 0 && stride_w > 0, "Pooling2D: strides ", stride_h, "x", stride_w,
            " must be positive");
  CNN_CHECK(padding != Padding::Valid || (k_h <= h_in && k_w <= w_in), "Pooling2D: pool ", k_h, "x",
            k_w, " is larger than the input ", h_in, "x", w_in, " with 'valid' padding");
  const WindowAxis rows = window_axis(h_in, k_h, stride_h, padding, "Pooling2D");
  const WindowAxis cols = window_axis(w_in, k_w, stride_w, padding, "Pooling2D");
  return Pool2DShape{n, c, h_in, w_in, k_h, k_w, stride_h, stride_w, rows.pad_before, cols.pad_before,
                     rows.out, cols.out};
}

}  // namespace cnn::ops
