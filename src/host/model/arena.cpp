#include "model/arena.hpp"

#include <algorithm>
#include <bit>
#include <string>
#include <string_view>

#include "cnn/error.hpp"
#include "kernels/device_memory.hpp"
#include "model/state.hpp"

namespace cnn {

template <class T>
bool Arena<T>::plan(const Sequential::State& s, int batch, Device d) {
  if (batch <= planned_batch) return false;
  const size_t B = size_t(batch);
  act_offset.clear();
  input_grad_offset.clear();
  aliases_input.clear();
  int64_t total = 0, widest = s.input_size, inputs_total = 0;
  for (size_t i = 0; i < s.out_size.size(); ++i) {
    const bool alias = !keep_input_grads && s.output_is_input[i];
    aliases_input.push_back(alias);
    if (alias) {
      act_offset.push_back(act_offset.back());
    } else {
      act_offset.push_back(total * batch);
      total += s.out_size[i];
    }
    widest = std::max(widest, s.out_size[i]);
    if (keep_input_grads) {
      input_grad_offset.push_back(inputs_total * batch);
      inputs_total += i ? s.out_size[i - 1] : s.input_size;
    }
  }
  planned_batch = 0;
  try {
    input.reset(B * size_t(s.input_size), d);
    acts.reset(B * size_t(total), d);
    grad_a.reset(B * size_t(widest), d);
    grad_b.reset(B * size_t(widest), d);
    row_loss.reset(B, d);
    targets.reset(B * size_t(s.output_size()), d);
    labels.reset(B, d);
    metrics.reset(2, d);
    augmented.reset(B * size_t(s.input_size), d);
    if (keep_input_grads) input_grads.reset(B * size_t(inputs_total), d);
  } catch (const Error& e) {
    if (d != Device::CUDA || std::string_view(e.what()).find("out of memory") == std::string_view::npos) throw;
    // Say which batch size would fit: these buffers grow linearly with the batch (layer
    // scratch and cuBLAS workspaces come on top, hence the margin).
    for (Buffer<T>* b : {&input, &acts, &grad_a, &grad_b, &row_loss, &targets, &augmented, &input_grads}) *b = Buffer<T>();
    const double per_sample =
        double(sizeof(T)) * double(2 * s.input_size + total + 2 * widest + s.output_size() + 2 + inputs_total);
    const double available = double(memory::cuda_available_bytes());
    const int64_t fits = std::min<int64_t>(batch - 1, int64_t(0.7 * available / per_sample));
    const double mib = 1024.0 * 1024.0;
    fail(e.what(), "\nThe activations and gradients of batch size ", batch, " need ",
         int64_t(per_sample * double(batch) / mib), " MiB (", int64_t(per_sample / 1024.0), " KiB per sample); ",
         int64_t(available / mib), " MiB are available. ",
         fits >= 1 ? "Try a batch size of " + std::to_string(std::bit_floor(uint64_t(fits))) + " or less (--batch-size)."
                   : std::string("Even one sample does not fit: use a smaller model or the CPU."));
  }
  planned_batch = batch;
  return true;
}

template struct Arena<float>;
template struct Arena<double>;

}  // namespace cnn
