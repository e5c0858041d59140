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

}  // namespace cnn
