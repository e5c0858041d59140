// A child process for tests/test_crash_safety.cpp, killed with SIGKILL at random moments while
// it writes checkpoints. It prints "ready" on stdout once its first checkpoint is complete,
// then keeps writing until killed.
//   cnn_crash_helper save <checkpoint>   save_checkpoint in a tight loop; checkpoint k holds
//                                        epoch k, k history entries and every weight equal to k
//   cnn_crash_helper train <checkpoint>  fit with FitOptions::checkpoint_path (one checkpoint
//                                        per epoch) on a small synthetic data set
#include <cstdio>
#include <cstring>
#include <string>

#include "cnn/cnn.hpp"
#include "crash_model.hpp"
#include "test_data_util.hpp"

namespace {

using namespace cnn;

void ready() {
  std::fputs("ready\n", stdout);
  std::fflush(stdout);
}

// Marks the first completed epoch.
class ReadyAfterFirstEpoch : public Callback {
 public:
  void on_epoch_end(Sequential&, const EpochLogs&) override {
    if (!done_) ready();
    done_ = true;
  }

 private:
  bool done_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: cnn_crash_helper save|train <checkpoint>\n");
    return 2;
  }
  const std::string mode = argv[1], path = argv[2];
  Sequential model = test::crash_test_model();
  if (mode == "save") {
    for (int k = 1;; ++k) {
      auto weights = model.weights();
      for (auto& [name, t] : weights) t.fill(float(k));
      model.set_weights(weights);
      TrainingProgress p;
      p.epoch = k;
      p.history.loss.assign(size_t(k % 1000), double(k));
      model.save_checkpoint(path, p);
      if (k == 1) ready();
    }
  }
  if (mode == "train") {
    const auto data = test::make_quadrant_data(64, 1, 32, 32, 5);
    FitOptions f;
    f.epochs = 1000000;
    f.batch_size = 32;
    f.verbose = 0;
    f.checkpoint_path = path;
    f.callbacks.push_back(std::make_shared<ReadyAfterFirstEpoch>());
    model.fit(data.x, data.y, f);
    return 0;
  }
  std::fprintf(stderr, "cnn_crash_helper: unknown mode '%s'\n", mode.c_str());
  return 2;
}
