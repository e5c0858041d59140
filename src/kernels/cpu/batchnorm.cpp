// Batch normalisation on the CPU (formulas in ops.hpp). Channels run in parallel, each one
// by a single thread in a fixed order, so results do not depend on the thread count. Sums
// are accumulated in double for either T, and the variance is taken about the mean (two
// passes), so a channel whose mean is large next to its spread loses nothing.
#include <cmath>
#include <vector>

#include "cnn/error.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ops.hpp"

namespace cnn::ops::cpu {
namespace {

void check_shape(int n, int c, int hw, const char* op) {
  CNN_CHECK(n >= 0 && c >= 0 && hw >= 0, op, ": negative shape n=", n, " c=", c, " hw=", hw);
}

// body(k) for every channel, in parallel when the channels are big enough to pay for it.
template <class Body>
void for_channels(int n, int c, int hw, Body body) {
  parallel_for(c, threads_for(c, 4.0 * double(n) * hw), [&](int64_t k) { body(int(k)); });
}

// Calls f(value pointer) on every plane of channel k: sample i's hw values of channel k.
template <class T, class F>
void planes_of(int n, int c, int hw, int k, T* base, F f) {
  for (int i = 0; i < n; ++i) f(base + (int64_t(i) * c + k) * hw);
}

// y = gamma (x - mean) invstd + beta over channel k.
template <class T>
void normalize_channel(int n, int c, int hw, int k, const T* x, T mean, T invstd, T g, T b, T* y) {
  for (int i = 0; i < n; ++i) {
    const int64_t at = (int64_t(i) * c + k) * hw;
    for (int p = 0; p < hw; ++p) y[at + p] = g * ((x[at + p] - mean) * invstd) + b;
  }
}

// sum(dy) and sum(dy xhat) over channel k.
template <class T>
void gradient_sums(int n, int c, int hw, int k, const T* x, const T* dy, T mean, T invstd, double& sum_dy,
                   double& sum_dy_xhat) {
  sum_dy = 0;
  sum_dy_xhat = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t at = (int64_t(i) * c + k) * hw;
    for (int p = 0; p < hw; ++p) {
      sum_dy += double(dy[at + p]);
      sum_dy_xhat += double(dy[at + p]) * double((x[at + p] - mean) * invstd);
    }
  }
}

}  // namespace

template <class T>
void batchnorm_forward_training(int n, int c, int hw, const BatchNormForwardTrainingArgs<T>& a) {
  check_shape(n, c, hw, "batchnorm_forward_training");
  const int64_t m = int64_t(n) * hw;
  if (m == 0 && !a.across_ranks) return;
  // Three passes over each channel: the sum, the squared deviations about the mean, the
  // normalisation; synchronised statistics add the ranks' sums between them.
  std::vector<double> sum(size_t(c) + 1), sq(static_cast<size_t>(c));
  for_channels(n, c, hw, [&](int k) {
    planes_of(n, c, hw, k, a.x, [&](const T* v) {
      for (int p = 0; p < hw; ++p) sum[k] += double(v[p]);
    });
  });
  sum[c] = double(m);
  if (a.across_ranks) (*a.across_ranks)(sum.data(), c + 1);
  const double count = sum[c];
  if (count == 0) return;
  for_channels(n, c, hw, [&](int k) {
    const double mean = sum[k] / count;
    planes_of(n, c, hw, k, a.x, [&](const T* v) {
      for (int p = 0; p < hw; ++p) sq[k] += (double(v[p]) - mean) * (double(v[p]) - mean);
    });
  });
  if (a.across_ranks) (*a.across_ranks)(sq.data(), c);
  for_channels(n, c, hw, [&](int k) {
    const double var = sq[k] / count;
    const T mean_t = T(sum[k] / count), invstd = T(1.0 / std::sqrt(var + double(a.eps)));
    if (a.save_mean) a.save_mean[k] = mean_t;
    if (a.save_invstd) a.save_invstd[k] = invstd;
    if (a.running_mean) a.running_mean[k] = (T(1) - a.momentum) * a.running_mean[k] + a.momentum * mean_t;
    if (a.running_var) {
      const T unbiased = T(count > 1 ? var * count / (count - 1) : var);
      a.running_var[k] = (T(1) - a.momentum) * a.running_var[k] + a.momentum * unbiased;
    }
    normalize_channel(n, c, hw, k, a.x, mean_t, invstd, a.gamma ? a.gamma[k] : T(1), a.beta ? a.beta[k] : T(0),
                      a.y);
  });
}

template <class T>
void batchnorm_forward_inference(int n, int c, int hw, const BatchNormForwardInferenceArgs<T>& a) {
  check_shape(n, c, hw, "batchnorm_forward_inference");
  if (int64_t(n) * hw == 0) return;
  for_channels(n, c, hw, [&](int k) {
    const T invstd = T(1) / std::sqrt(a.running_var[k] + a.eps);
    normalize_channel(n, c, hw, k, a.x, a.running_mean[k], invstd, a.gamma ? a.gamma[k] : T(1),
                      a.beta ? a.beta[k] : T(0), a.y);
  });
}

template <class T>
void batchnorm_backward_training(int n, int c, int hw, const BatchNormBackwardTrainingArgs<T>& a) {
  check_shape(n, c, hw, "batchnorm_backward_training");
  const int64_t m = int64_t(n) * hw;
  // Per channel sum(dy) and sum(dy xhat) (this rank's: dbeta and dgamma), then the means the
  // input gradient subtracts: these sums over m, or with synchronised statistics the ranks'
  // row-weighted sums (ops.hpp).
  std::vector<double> sums(2 * size_t(c) + 1);
  for_channels(n, c, hw, [&](int k) {
    if (m > 0) gradient_sums(n, c, hw, k, a.x, a.dy, a.save_mean[k], a.save_invstd[k], sums[2 * k], sums[2 * k + 1]);
    if (a.dgamma) a.dgamma[k] = T(sums[2 * k + 1]);
    if (a.dbeta) a.dbeta[k] = T(sums[2 * k]);
  });
  if (!a.dx || (m == 0 && !a.across_ranks)) return;  // (every rank reaches the collective alike)
  double divisor = double(m);
  if (a.across_ranks) {
    for (int k = 0; k < 2 * c; ++k) sums[k] *= double(m);
    sums[2 * size_t(c)] = double(m);
    (*a.across_ranks)(sums.data(), 2 * c + 1);
    divisor = sums[2 * size_t(c)] * double(m);
  }
  for_channels(n, c, hw, [&](int k) {
    const T mean = a.save_mean[k], invstd = a.save_invstd[k];
    const T g = a.gamma ? a.gamma[k] : T(1);
    const T mean_dy = T(sums[2 * k] / divisor), mean_dy_xhat = T(sums[2 * k + 1] / divisor), factor = g * invstd;
    for (int i = 0; i < n; ++i) {
      const int64_t at = (int64_t(i) * c + k) * hw;
      for (int p = 0; p < hw; ++p) {
        const T xhat = (a.x[at + p] - mean) * invstd;
        a.dx[at + p] = factor * (a.dy[at + p] - mean_dy - xhat * mean_dy_xhat);
      }
    }
  });
}

template <class T>
void batchnorm_backward_inference(int n, int c, int hw, const BatchNormBackwardInferenceArgs<T>& a) {
  check_shape(n, c, hw, "batchnorm_backward_inference");
  for_channels(n, c, hw, [&](int k) {
    const T mean = a.running_mean[k], invstd = T(1) / std::sqrt(a.running_var[k] + a.eps);
    if (a.dgamma || a.dbeta) {
      double sum_dy, sum_dy_xhat;
      gradient_sums(n, c, hw, k, a.x, a.dy, mean, invstd, sum_dy, sum_dy_xhat);
      if (a.dgamma) a.dgamma[k] = T(sum_dy_xhat);
      if (a.dbeta) a.dbeta[k] = T(sum_dy);
    }
    if (!a.dx) return;
    const T factor = (a.gamma ? a.gamma[k] : T(1)) * invstd;
    for (int i = 0; i < n; ++i) {
      const int64_t at = (int64_t(i) * c + k) * hw;
      for (int p = 0; p < hw; ++p) a.dx[at + p] = factor * a.dy[at + p];
    }
  });
}

#define CNN_INSTANTIATE(T)                                                                                  \
  template void batchnorm_forward_training<T>(int, int, int, const BatchNormForwardTrainingArgs<T>&);     \
  template void batchnorm_forward_inference<T>(int, int, int, const BatchNormForwardInferenceArgs<T>&);   \
  template void batchnorm_backward_training<T>(int, int, int, const BatchNormBackwardTrainingArgs<T>&);   \
  template void batchnorm_backward_inference<T>(int, int, int, const BatchNormBackwardInferenceArgs<T>&);
CNN_INSTANTIATE(float)
CNN_INSTANTIATE(double)

}  // namespace cnn::ops::cpu
