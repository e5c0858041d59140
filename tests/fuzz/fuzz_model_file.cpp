// Fuzzes the model-file / checkpoint reader: the input is written to a file and read back with
// Sequential::load, Sequential::load_checkpoint and restore_checkpoint (into models of the seed
// architectures). A model the reader accepts must also describe, summarise and (when small)
// run a forward pass without trouble.
#include <cstdint>

#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "fuzz_util.hpp"
#include "seed_models.hpp"

namespace {

using namespace cnn;

// A forward pass on one zero sample, for models small enough to be quick.
void exercise(Sequential& m) {
  (void)m.summary_string();
  (void)m.to_json().dump();
  const Shape in = m.compile_options().input_shape;
  if (shape_numel(in) > 4096) return;
  for (size_t i = 0; i < m.size(); ++i)
    if (shape_numel(m.layer(i).output_shape()) > (1 << 16)) return;
  Shape batch{1};
  batch.insert(batch.end(), in.begin(), in.end());
  if (batch.size() > 4) return;
  const Tensor p = m.predict(Tensor(batch));
  if (p.dim(0) != 1) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& scratch = fuzz::Scratch::get();
  scratch.reset();
  const std::string path = (scratch.root() / "model.safetensors").string();
  fuzz::write_bytes(path, {reinterpret_cast<const char*>(data), size});

  fuzz::expect_only_cnn_errors([&] {
    Sequential m = Sequential::load(path);
    exercise(m);
  });
  fuzz::expect_only_cnn_errors([&] {
    TrainingProgress progress;
    Sequential m = Sequential::load_checkpoint(path, &progress);
    (void)progress.history.epochs();
  });
  static Sequential targets[] = {fuzz::seed_conv_model("sgd"), fuzz::seed_conv_model("adam"), fuzz::seed_dense_model()};
  for (Sequential& target : targets) fuzz::expect_only_cnn_errors([&] { target.restore_checkpoint(path); });
  return 0;
}
