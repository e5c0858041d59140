#include "cnn/types.hpp"

#include <algorithm>
#include <cctype>

#include "cnn/error.hpp"

namespace cnn {
namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}
std::string prefix(std::string_view where) { return where.empty() ? std::string() : std::string(where) + ": "; }
}  // namespace

std::string to_string(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

Device parse_device(std::string_view name) {
  const std::string n = lower(name);
  if (n == "cpu") return Device::CPU;
  if (n == "cuda" || n == "gpu") return Device::CUDA;
  fail("unknown device '", name, "'; valid devices: cpu, cuda");
}

std::string to_string(Padding p) { return p == Padding::Valid ? "valid" : "same"; }

Padding parse_padding(std::string_view name) {
  const std::string n = lower(name);
  if (n == "valid") return Padding::Valid;
  if (n == "same") return Padding::Same;
  fail("unknown padding '", name, "'; valid paddings: valid, same");
}

std::string to_string(Activation a) {
  switch (a) {
    case Activation::Linear: return "linear";
    case Activation::ReLU: return "relu";
    case Activation::LeakyReLU: return "leaky_relu";
    case Activation::Sigmoid: return "sigmoid";
    case Activation::Tanh: return "tanh";
    case Activation::Softmax: return "softmax";
    case Activation::GELU: return "gelu";
  }
  return "?";
}

Activation parse_activation(std::string_view name) {
  const std::string n = lower(name);
  if (n == "linear" || n.empty() || n == "none") return Activation::Linear;
  if (n == "relu") return Activation::ReLU;
  if (n == "leaky_relu" || n == "leakyrelu") return Activation::LeakyReLU;
  if (n == "sigmoid") return Activation::Sigmoid;
  if (n == "tanh") return Activation::Tanh;
  if (n == "softmax") return Activation::Softmax;
  if (n == "gelu") return Activation::GELU;
  fail("unknown activation '", name,
       "'; valid activations: linear, relu, leaky_relu, sigmoid, tanh, softmax, gelu");
}

// The recipe's names are exact (lower case), as model files and the CLI have always spelt them.
std::string to_string(OptimizerKind k) { return k == OptimizerKind::SGD ? "sgd" : "adam"; }

OptimizerKind parse_optimizer(std::string_view name, std::string_view where) {
  if (name == "sgd") return OptimizerKind::SGD;
  if (name == "adam") return OptimizerKind::Adam;
  fail(prefix(where), "unknown optimizer '", name, "'; valid optimizers: sgd, adam");
}

std::string to_string(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::Step: return "step";
    case ScheduleKind::Cosine: return "cosine";
    case ScheduleKind::OneCycle: return "onecycle";
  }
  return "?";
}

ScheduleKind parse_schedule(std::string_view name, std::string_view where) {
  if (name == "constant") return ScheduleKind::Constant;
  if (name == "step") return ScheduleKind::Step;
  if (name == "cosine") return ScheduleKind::Cosine;
  if (name == "onecycle") return ScheduleKind::OneCycle;
  fail(prefix(where), "unknown lr_schedule '", name, "'; valid schedules: constant, step, cosine, onecycle");
}

std::string to_string(FlipMode m) {
  switch (m) {
    case FlipMode::None: return "none";
    case FlipMode::Random: return "random";
    case FlipMode::Alternate: return "alternate";
  }
  return "?";
}

FlipMode parse_flip(std::string_view name, std::string_view where) {
  if (name == "none") return FlipMode::None;
  if (name == "random") return FlipMode::Random;
  if (name == "alternate") return FlipMode::Alternate;
  fail(prefix(where), "unknown augment.flip '", name, "'; valid: none, random, alternate");
}

std::string to_string(AveragingMethod m) { return m == AveragingMethod::EMA ? "ema" : "lookahead"; }

AveragingMethod parse_averaging_method(std::string_view name, std::string_view where) {
  if (name == "ema") return AveragingMethod::EMA;
  if (name == "lookahead") return AveragingMethod::Lookahead;
  fail(prefix(where), "unknown method '", name, "'; valid methods: ema, lookahead");
}

std::string to_string(Precision p) {
  switch (p) {
    case Precision::FP32: return "fp32";
    case Precision::TF32: return "tf32";
    case Precision::BF16: return "bf16";
  }
  return "?";
}

Precision parse_precision(std::string_view name, std::string_view where) {
  if (name == "fp32") return Precision::FP32;
  if (name == "tf32") return Precision::TF32;
  if (name == "bf16") return Precision::BF16;
  fail(prefix(where), "unknown precision '", name, "'; valid precisions: fp32, tf32, bf16");
}

}  // namespace cnn
