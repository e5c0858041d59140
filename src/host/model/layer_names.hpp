#pragma once
// The names layers go by outside the model (summary(), ONNX node and tensor names): a
// layer's own `name`, or Keras's default, its type in snake case numbered per type
// (conv2d, conv2d_1, ..., max_pooling2d).
#include <cctype>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cnn/layer.hpp"

namespace cnn {

inline std::string keras_kind(const std::string& type) {  // Conv2D -> conv2d, MaxPooling2D -> max_pooling2d
  std::string kind;
  for (char c : type) {
    if (std::isupper(static_cast<unsigned char>(c)) && !kind.empty() && std::islower(static_cast<unsigned char>(kind.back())))
      kind += '_';
    kind += char(std::tolower(static_cast<unsigned char>(c)));
  }
  return kind;
}

inline std::vector<std::string> layer_display_names(const std::vector<std::shared_ptr<Layer>>& layers) {
  std::vector<std::string> names;
  std::map<std::string, int> seen;
  for (const auto& l : layers) {
    const std::string kind = keras_kind(l->type());
    const int k = seen[kind]++;
    names.push_back(!l->name.empty() ? l->name : (k ? kind + "_" + std::to_string(k) : kind));
  }
  return names;
}

}  // namespace cnn
