#pragma once
// Small vocabulary types shared by the public API and the kernels: devices, padding
// modes, activations and the training recipe's choices (optimizer, learning-rate schedule,
// flip mode, weight-averaging method), with their names in model files and on the command
// line. Names are parsed once where they enter (file reader, CLI, compile, fit); an unknown
// one raises cnn::Error listing the valid names.
#include <cstddef>
#include <cstdint>
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

enum class OptimizerKind { SGD, Adam };
std::string to_string(OptimizerKind k);
// `where` prefixes the error ("compile" gives "compile: unknown optimizer ...").
OptimizerKind parse_optimizer(std::string_view name, std::string_view where = {});  // "sgd" | "adam"

// LRSchedule's kinds (model.hpp has the formulas).
enum class ScheduleKind { Constant, Step, Cosine, OneCycle };
std::string to_string(ScheduleKind k);
// "constant" | "step" | "cosine" | "onecycle"
ScheduleKind parse_schedule(std::string_view name, std::string_view where = {});

// Augmentation's left-right flip: none, per image at random, or every other epoch per image.
enum class FlipMode { None, Random, Alternate };
std::string to_string(FlipMode m);
FlipMode parse_flip(std::string_view name, std::string_view where = {});  // "none" | "random" | "alternate"

// Weight averaging (callbacks.hpp): exponential moving average or lookahead.
enum class AveragingMethod { EMA, Lookahead };
std::string to_string(AveragingMethod m);
// "ema" | "lookahead"
AveragingMethod parse_averaging_method(std::string_view name, std::string_view where = {});

// The precision policy of a model's products (compile option "precision"; src/kernels/ops.hpp
// round_to_precision says exactly where it rounds): FP32 computes everything in fp32; TF32 and
// BF16 round the operands of every convolution and dense product (activations, a copy of the
// weights, the incoming gradient) to tf32 / bf16, accumulate in fp32 and keep everything else
// (master weights, weight gradients, optimizer, BatchNorm statistics, loss) in fp32.
enum class Precision { FP32, TF32, BF16 };
std::string to_string(Precision p);
// "fp32" | "tf32" | "bf16"
Precision parse_precision(std::string_view name, std::string_view where = {});

// True when the CUDA backend was compiled in (it may still find no GPU at run time).
bool built_with_cuda();
// True when protobuf was found at build time (CNN_PROTOBUF): ONNX export and TensorBoard logs.
bool built_with_protobuf();
// True when the CUDA backend is compiled in and at least one GPU is usable.
bool cuda_available();
// The convolution kernels timed so far in this process with CNN_CUDA_CONV_KERNELS=tune: per
// GPU model, pass and shape, each candidate's fastest time and the one kept (a table for
// people; CNN_CUDA_CONV_TUNING_FILE holds the same entries for reuse). Empty without CUDA.
std::string cuda_conv_tuning_report();
// CUDA kernels this process has launched (or captured into a graph) so far, counted at the
// library's launch sites; a cuBLAS GEMM counts as one (cuBLAS may run more kernels for it).
// 0 without CUDA. `cnn bench` reports the launches of one training step.
int64_t cuda_kernel_launches();
// The most GPU memory the library's tensors and buffers held at once since the last reset (the
// caching allocator's blocks in use, by size class: at most 25% above what was asked; CUDA's
// and cuBLAS's own workspaces not included). 0 without CUDA.
size_t cuda_memory_peak_bytes();
void cuda_memory_reset_peak();
// Why cuda_available() is false, in one line ("built without CUDA", "no CUDA device: ...").
std::string cuda_unavailable_reason();
// The instruction set the CPU kernels' fast paths use now: "avx512", "avx2" or "generic" (the
// reference code): what the processor has, lowered by $CNN_CPU_ISA.
const char* cpu_instruction_set();

}  // namespace cnn
