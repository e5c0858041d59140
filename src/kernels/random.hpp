#pragma once
// Counter-based random numbers shared by the CPU reference and the CUDA kernels: the same
// inline functions compile as host code (.cpp) and as device code (.cu), so a seed gives
// bit-identical dropout masks and augmentations on both backends, in any thread order, and
// a mask can be recomputed in backward instead of stored.
//
// random_bits(seed, counter) is splitmix64's output for the state mix64(seed) advanced
// `counter` steps: mix64(mix64(seed) + counter * golden). For one seed the map from counter
// to bits is a bijection (no two elements share a draw); seeds are hashed before use, so
// nearby seeds (step t, step t + 1) give unrelated streams.
#include <cstdint>

#include "kernels/host_device.hpp"

namespace cnn::random {

inline constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64's finaliser (Stafford's Mix13): a bijection that avalanches every input bit.
CNN_HOST_DEVICE uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 64 random bits for element `counter` of the stream `seed`.
CNN_HOST_DEVICE uint64_t random_bits(uint64_t seed, uint64_t counter) {
  return mix64(mix64(seed) + (counter + 1) * kGolden);
}

// An integer in [0, range) from the top 32 bits (multiply-shift; the bias, at most
// range / 2^32, is far below anything a training run could notice). range in [1, 2^32).
CNN_HOST_DEVICE uint32_t below(uint64_t bits, uint32_t range) {
  return uint32_t((uint64_t(uint32_t(bits >> 32)) * range) >> 32);
}

// Streams for the different users of one seed, so dropout and augmentation given the same
// seed draw unrelated numbers.
inline constexpr uint64_t kDropoutStream = 0x64726F706F757431ull;  // "dropout1"
inline constexpr uint64_t kAugmentStream = 0x6175676D656E7431ull;  // "augment1"

// ---- Dropout ------------------------------------------------------------------------------
// Element i is dropped when the top 24 bits of its draw, u in [0, 2^24), fall below
// rate * 2^24 (computed in float, exact: a power-of-two scaling, truncated), so the keep
// probability is 1 - floor(rate 2^24) / 2^24 and the decision is integer-only on both
// backends. rate must lie in [0, 1).
CNN_HOST_DEVICE uint32_t dropout_threshold(float rate) { return uint32_t(rate * 16777216.0f); }

CNN_HOST_DEVICE bool dropout_keep(uint64_t seed, uint64_t index, uint32_t threshold) {
  return uint32_t(random_bits(seed ^ kDropoutStream, index) >> 40) >= threshold;
}

}  // namespace cnn::random
