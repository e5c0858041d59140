#pragma once
// The model tests/crash_helper.cpp trains and saves, and tests/test_crash_safety.cpp loads.
#include "cnn/cnn.hpp"

namespace cnn::test {

// About 100,000 parameters with Adam's state: a 1.2 MB checkpoint, so that writing one takes
// long enough for random kills to land inside writes.
inline Sequential crash_test_model() {
  Sequential m({Conv2D(4, 3, 1, "same", "relu"), MaxPooling2D(2), Flatten(), Dense(96, "relu"), Dense(4, "softmax")});
  CompileOptions o;
  o.optimizer = "adam";
  o.loss = "scce";
  o.learning_rate = 0.001f;
  o.input_shape = {1, 32, 32};
  m.compile(o);
  return m;
}

}  // namespace cnn::test
