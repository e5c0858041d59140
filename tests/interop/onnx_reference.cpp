// The library's side of the ONNX interop test (tests/interop/test_onnx_export.py):
//   cnn_onnx_reference save MODEL.json OUT.safetensors SEED
//       builds the description with its initial weights, then gives every parameter that
//       starts constant (biases, BatchNormalization's gamma, beta and running statistics) a
//       random value, so the export of each is really compared; saves the model
//   cnn_onnx_reference predict MODEL IN.f32 OUT.f32
//       IN holds n samples (raw float32, the model's input shape each); writes predict()'s
//       outputs [n, outputs] as raw float32
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cnn/cnn.hpp"

namespace {

using namespace cnn;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

void save(const std::string& description, const std::string& out, uint64_t seed) {
  Sequential m = Sequential::from_json_file(description);
  Rng rng(seed);
  auto weights = m.weights();
  for (auto& [name, t] : weights) {
    const bool bn = name.find(".BatchNormalization.") != std::string::npos;
    double lo = 0, hi = 0;
    if (ends_with(name, ".bias") || ends_with(name, ".running_mean")) lo = -0.5, hi = 0.5;
    else if (ends_with(name, ".running_var") || (bn && ends_with(name, ".weight"))) lo = 0.5, hi = 2.0;
    else continue;
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = float(rng.uniform(lo, hi));
  }
  m.set_weights(weights);
  m.save(out);
}

void predict(const std::string& model_path, const std::string& in_path, const std::string& out_path) {
  Sequential m = Sequential::load(model_path);
  std::ifstream in(in_path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const Shape sample = m.compile_options().input_shape;
  const int64_t per = shape_numel(sample) * int64_t(sizeof(float));
  CNN_CHECK(in && !bytes.empty() && int64_t(bytes.size()) % per == 0, "'", in_path, "' is not a whole number of ",
            shape_str(sample), " float32 samples");
  Shape shape{int64_t(bytes.size()) / per};
  shape.insert(shape.end(), sample.begin(), sample.end());
  Tensor x(shape);
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(x.data()));
  const Tensor y = m.predict(x);
  std::ofstream out(out_path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(y.data()), std::streamsize(y.numel() * int64_t(sizeof(float))));
  CNN_CHECK(out.good(), "cannot write '", out_path, "'");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "save" && argc == 5) save(argv[2], argv[3], std::stoull(argv[4]));
    else if (mode == "predict" && argc == 5) predict(argv[2], argv[3], argv[4]);
    else {
      std::fprintf(stderr, "usage: %s save MODEL.json OUT.safetensors SEED | predict MODEL IN.f32 OUT.f32\n", argv[0]);
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cnn_onnx_reference: %s\n", e.what());
    return 1;
  }
  return 0;
}
