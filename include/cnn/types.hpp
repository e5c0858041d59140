#pragma once
// Small vocabulary types shared by the public API and the kernels: devices, padding
// modes and activations, with their Keras names.
#include <string>
#include <string_view>

namespace cnn {

enum class Device { CPU, CUDA };
std::string to_string(Device d);
Device parse_device(std::string_view name);  // "cpu" | "cuda"

// TensorFlow's padding rule: 'valid' uses no padding; 'same' pads so that
// out = ceil(in / stride), splitting an odd total with the extra row/column at the end.
enum class Padding { Valid, Same };
std::string to_string(Padding p);
Padding parse_padding(std::string_view name);  // "valid" | "same"

enum class Activation { Linear, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, GELU };
std::string to_string(Activation a);
// Keras names: "linear" (or "" / "none"), "relu", "leaky_relu", "sigmoid", "tanh",
// "softmax", "gelu". An unknown name raises cnn::Error listing the valid ones.
Activation parse_activation(std::string_view name);

// Keras's LeakyReLU default slope.
inline constexpr float kDefaultLeakyAlpha = 0.3f;

// An elementwise activation and its parameter (LeakyReLU's slope, >= 0).
struct ActivationSpec {
  Activation kind = Activation::Linear;
  float alpha = kDefaultLeakyAlpha;
};

// True when the CUDA backend was compiled in (it may still find no GPU at run time).
bool built_with_cuda();
// True when the CUDA backend is compiled in and at least one GPU is usable.
bool cuda_available();
// Why cuda_available() is false, in one line ("built without CUDA", "no CUDA device: ...").
std::string cuda_unavailable_reason();
// The instruction set the CPU kernels' fast paths use now: "avx512", "avx2" or "generic" (the
// reference code): what the processor has, lowered by $CNN_CPU_ISA.
const char* cpu_instruction_set();

}  // namespace cnn
