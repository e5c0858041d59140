#pragma once
// Test-only hook of the step runner: while a ScopedGradientFault lives, the double-precision
// backward (gradcheck's) multiplies layer `layer`'s parameter gradients by `scale` on this
// thread, so the tests can check that the checker catches a broken layer.
namespace cnn::test_seam {

struct GradientFault {
  int layer = -1;  // -1: off
  double scale = 1;
};
GradientFault& gradient_fault();  // thread-local

class ScopedGradientFault {
 public:
  ScopedGradientFault(int layer, double scale) : saved_(gradient_fault()) { gradient_fault() = {layer, scale}; }
  ~ScopedGradientFault() { gradient_fault() = saved_; }
  ScopedGradientFault(const ScopedGradientFault&) = delete;
  ScopedGradientFault& operator=(const ScopedGradientFault&) = delete;

 private:
  GradientFault saved_;
};

}  // namespace cnn::test_seam
