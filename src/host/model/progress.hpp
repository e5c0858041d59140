#pragma once
// Keras-style progress for fit:
//   Epoch 3/30
//   1563/1563 [==============================] - 5s 3ms/step - loss: 1.5234 - accuracy: 0.4512
// Redrawn in place on a terminal; a single line per epoch otherwise.
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace cnn {

class ProgressBar {
 public:
  using Metrics = std::vector<std::pair<std::string, double>>;
  ProgressBar(int total_steps, int verbose, std::FILE* out = stdout);
  static bool is_terminal(std::FILE* out);
  // Whether an update at `step` would be drawn now (so callers fetch metrics only then).
  bool due(int step, double seconds) const;
  void update(int step, double seconds, const Metrics& metrics);
  void finish(double seconds, const Metrics& metrics);

 private:
  std::string line(int step, double seconds, const Metrics& metrics, bool done) const;
  int total_;
  int verbose_;
  std::FILE* out_;
  bool tty_;
  double last_draw_ = -1;
  size_t last_width_ = 0;
};

}  // namespace cnn
