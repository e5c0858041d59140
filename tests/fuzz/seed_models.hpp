#pragma once
// The small models the model-file seeds are saved from (tests/fuzz/make_corpus.cpp) and that
// fuzz_model_file restores fuzzed checkpoints into: the same architectures, so mutated seeds
// get past the architecture comparison into the tensor checks.
#include "cnn/cnn.hpp"

namespace cnn::fuzz {

inline Sequential seed_conv_model(const char* optimizer) {
  Sequential m({Conv2D(2, 3, 1, "same", "relu"), MaxPooling2D(2), Flatten(), Dense(3, "softmax")});
  CompileOptions o;
  o.optimizer = optimizer;
  o.loss = "scce";
  o.momentum = std::string(optimizer) == "sgd" ? 0.9f : 0.0f;
  o.input_shape = {1, 4, 4};
  m.compile(o);
  return m;
}

inline Sequential seed_dense_model() {
  Sequential m({Flatten(), Dense(2, "relu"), Dense(1, "sigmoid")});
  CompileOptions o;
  o.loss = "bce";
  o.input_shape = {3};
  m.compile(o);
  return m;
}

}  // namespace cnn::fuzz
