#pragma once
// The library's random numbers: xoshiro256** seeded through splitmix64, with our own
// conversions to floats, so a seed gives the same numbers on every platform and compiler.
#include <cstdint>

namespace cnn {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed);
  uint64_t next_u64();
  double uniform();                     // [0, 1)
  double uniform(double lo, double hi); // [lo, hi)
  double normal();                      // standard normal (Box-Muller)
  uint64_t below(uint64_t n);           // uniform integer in [0, n), unbiased

  struct State {
    uint64_t s[4];
  };
  State state() const { return {{s_[0], s_[1], s_[2], s_[3]}}; }
  void set_state(const State& st) {
    for (int i = 0; i < 4; ++i) s_[i] = st.s[i];
  }

 private:
  uint64_t s_[4];
};

}  // namespace cnn
