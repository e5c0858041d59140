// The weight-averaging callback (EMA or lookahead), updating a shadow copy of the flat
// parameter buffer on the model's device with one lerp launch per step.
#include <cmath>

#include "cnn/callbacks.hpp"
#include "cnn/error.hpp"
#include "layers/layer_impl.hpp"
#include "model/state.hpp"

namespace cnn {
namespace {

class WeightAveraging : public Callback {
 public:
  explicit WeightAveraging(WeightAveragingOptions o)
      : o_(std::move(o)), method_(parse_averaging_method(o_.method, "weight_averaging")) {
    CNN_CHECK(o_.decay >= 0 && o_.decay < 1, "weight_averaging: decay must be in [0, 1), got ", o_.decay);
    CNN_CHECK(o_.every > 0, "weight_averaging: every must be positive, got ", o_.every);
    CNN_CHECK(o_.alpha > 0 && o_.alpha <= 1, "weight_averaging: alpha must be in (0, 1], got ", o_.alpha);
    CNN_CHECK(o_.alpha_decay >= 0 && o_.alpha_decay < 1, "weight_averaging: alpha_decay must be in [0, 1), got ",
              o_.alpha_decay);
    CNN_CHECK(std::isfinite(o_.alpha_decay_power) && o_.alpha_decay_power > 0,
              "weight_averaging: alpha_decay_power must be positive, got ", o_.alpha_decay_power);
  }
  void on_train_begin(Sequential& m) override {
    const Tensor& p = m.state().params;
    shadow_ = p.empty() ? Tensor() : p.clone();
  }
  void on_step_end(Sequential& m, int64_t step) override {
    auto& s = m.state();
    if (shadow_.empty()) return;
    if (shadow_.device() != s.device) shadow_ = shadow_.to(s.device);
    const Exec e = s.exec(true);
    const int64_t count = s.params.numel();
    if (method_ == AveragingMethod::EMA) {
      run::lerp<float>(e, count, shadow_.data(), s.params.data(), 1.0f - o_.decay);
    } else if (step % o_.every == 0) {
      const double decay = o_.alpha_decay * std::pow(s.step_progress, double(o_.alpha_decay_power));
      run::lerp<float>(e, count, shadow_.data(), s.params.data(), float(double(o_.alpha) * (1.0 - decay)));
      run::lerp<float>(e, count, s.params.data(), shadow_.data(), 1.0f);  // fast = slow
    }
  }
  void on_train_end(Sequential& m) override {
    if (o_.use_average_at_end && !shadow_.empty()) m.state().params.copy_from(shadow_);
  }

 private:
  WeightAveragingOptions o_;
  AveragingMethod method_;
  Tensor shadow_;
};

}  // namespace

CallbackPtr weight_averaging(WeightAveragingOptions options) {
  return std::make_shared<WeightAveraging>(std::move(options));
}

}  // namespace cnn
