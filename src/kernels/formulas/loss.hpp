#pragma once
// The element-wise losses, written once for the CPU reference (float/double) and the CUDA
// kernels: each gives one element's loss term and its derivative, before the 1 / cols of
// the row mean and the 1 / rows of the batch mean, which the callers apply in that order.
#include <cmath>

#include "kernels/formulas/activation.hpp"
#include "kernels/host_device.hpp"

namespace cnn::formulas {

template <class T>
struct LossTerm {
  T loss, grad;
};

// Keras's epsilon for losses on probabilities: p is clipped to [kClip, 1 - kClip], the
// bounds rounded to T.
inline constexpr double kClip = 1e-7;

// std::clamp's comparisons (a NaN stays NaN), on both backends.
template <class T>
CNN_HOST_DEVICE T clip_probability(T p) {
  return p < T(kClip) ? T(kClip) : (T(1 - kClip) < p ? T(1 - kClip) : p);
}

// True where the clip is active: there the loss has no gradient (as in Keras).
template <class T>
CNN_HOST_DEVICE bool probability_clipped(T p) {
  return p < T(kClip) || p > T(1 - kClip);
}

// (pred - target)^2.
template <class T>
CNN_HOST_DEVICE LossTerm<T> squared_error(T p, T t) {
  const T d = p - t;
  return {d * d, T(2) * d};
}

// -(t log p + (1 - t) log(1 - p)), p clipped.
template <class T>
CNN_HOST_DEVICE LossTerm<T> binary_cross_entropy(T p, T t) {
  const bool clipped = probability_clipped(p);
  const T pc = clip_probability(p);
  return {-(t * std::log(pc) + (T(1) - t) * std::log(T(1) - pc)),
          clipped ? T(0) : -t / pc + (T(1) - t) / (T(1) - pc)};
}

// The same loss on logits z, written so no exp overflows: max(z, 0) - z t + log(1 + e^-|z|)
// (max as std::max: z when z is NaN); the derivative is sigmoid(z) - t.
template <class T>
CNN_HOST_DEVICE LossTerm<T> binary_cross_entropy_logits(T z, T t) {
  const T positive = z < T(0) ? T(0) : z;
  return {positive - z * t + std::log1p(std::exp(-std::abs(z))), sigmoid(z) - t};
}

}  // namespace cnn::formulas
