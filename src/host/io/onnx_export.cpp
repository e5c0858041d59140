// Sequential::export_onnx: the compiled model in inference mode as an ONNX ModelProto, built
// with the protobuf classes protoc generates from the published onnx.proto (third_party/onnx).
// Each layer becomes the ONNX ops that compute what its CPU reference kernel computes
// (docs/FORMATS.md, "ONNX export", has the table):
//   - 'same' padding is TensorFlow's split (kernels/shapes.cpp: the odd pixel after), written
//     as explicit pads; the library's output size ceil(in / stride) is then ONNX's
//     floor((in + pads - k) / stride) + 1 with ceil_mode 0.
//   - pooling windows clip to the image: MaxPool ignores pads, AveragePool with
//     count_include_pad 0 divides by the in-bounds count, as kernels/cpu/pool2d.cpp.
//   - Dense y = act(scale (x W^T + b)) is Gemm(transB, alpha = beta = scale).
//   - GELU is the exact erf form (formulas/activation.hpp): a Gelu node from opset 20, else
//     0.5 x (1 + Erf(x / sqrt 2)) in elementary nodes.
//   - BatchNormalization uses the running statistics; Dropout is the identity and vanishes.
// The output is what predict() returns: when the loss fuses softmax or sigmoid into a linear
// last layer (from_logits), the graph ends in that activation.
#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cnn/error.hpp"
#include "cnn/layers.hpp"
#include "cnn/model.hpp"
#include "io/atomic_file.hpp"
#include "kernels/ops.hpp"
#include "model/layer_names.hpp"
#include "model/state.hpp"

#if CNN_WITH_PROTOBUF
#include "onnx/onnx.pb.h"
#endif

namespace cnn {

#if !CNN_WITH_PROTOBUF

void Sequential::export_onnx(const std::string& path, const OnnxExportOptions&) const {
  fail("export_onnx: this library was built without protobuf (CNN_PROTOBUF=OFF, or libprotobuf-dev and protoc "
       "were not found), so it cannot write the ONNX file '", path, "'");
}

#else

namespace {

constexpr int kMinOpset = 13, kMaxOpset = 22;

// The IR version of the ONNX release that introduced each opset (onnx/docs/Versioning.md), so
// a runtime that reads the opset reads the file.
int64_t ir_version_for(int opset) {
  if (opset <= 18) return 8;  // onnx 1.13
  if (opset <= 20) return 9;  // onnx 1.14, 1.15
  return 10;                  // onnx 1.16, 1.17
}

void set_ints(onnx::NodeProto* n, const char* name, const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}
void set_int(onnx::NodeProto* n, const char* name, int64_t value) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}
void set_float(onnx::NodeProto* n, const char* name, float value) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}
void set_string(onnx::NodeProto* n, const char* name, const std::string& value) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(value);
}

// A float32 initializer holding `values` (row-major) with `dims`.
void add_initializer(onnx::GraphProto* g, const std::string& name, const std::vector<int64_t>& dims,
                     const float* values, int64_t count, const std::string& doc) {
  static_assert(std::endian::native == std::endian::little, "ONNX raw_data is little-endian");
  onnx::TensorProto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(reinterpret_cast<const char*>(values), size_t(count) * sizeof(float));
  if (!doc.empty()) t->set_doc_string(doc);
}

// Builds the graph layer by layer. `current` is the tensor the next layer reads; each layer's
// nodes are named "<layer>/<Op>", its intermediate tensors likewise, and its last output
// takes the layer's own name.
class GraphWriter {
 public:
  GraphWriter(onnx::GraphProto* g, int opset) : g_(g), opset_(opset) {}

  std::string current = "input";

  void begin_layer(const std::string& name) {
    layer_ = name;
    first_node_ = g_->node_size();
  }
  // The layer's last node writes the tensor named after the layer (its output is read by no
  // other node yet, so renaming it is safe). A layer without nodes (Dropout) passes through.
  void end_layer() {
    if (g_->node_size() == first_node_) return;
    onnx::NodeProto* last = g_->mutable_node(g_->node_size() - 1);
    last->set_output(0, layer_);
    current = layer_;
  }

  // A node of this layer reading `inputs`; its output becomes `current`.
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> inputs, const std::string& tag = "") {
    onnx::NodeProto* n = g_->add_node();
    const std::string id = layer_ + "/" + (tag.empty() ? op : tag);
    n->set_op_type(op);
    n->set_name(id);
    for (auto& in : inputs) n->add_input(in);
    n->add_output(id);
    current = id;
    return n;
  }

  // A parameter of this layer as an initializer "<layer>.<param>"; `library_name` (the name
  // in saved model files) goes into its doc_string.
  std::string param(const std::string& param, const std::pair<std::string, Tensor>& w) {
    const std::string name = layer_ + "." + param;
    add_initializer(g_, name, w.second.shape(), w.second.data(), w.second.numel(), w.first);
    return name;
  }

  // A float scalar shared by the whole graph (the erf-form GELU's constants).
  std::string scalar(const std::string& name, float value) {
    for (const auto& t : g_->initializer())
      if (t.name() == name) return name;
    add_initializer(g_, name, {}, &value, 1, "");
    return name;
  }

  // The elementwise activation (or the softmax over the last axis) of `current`.
  void activation(ActivationSpec act) {
    const std::string x = current;
    switch (act.kind) {
      case Activation::Linear: return;
      case Activation::ReLU: node("Relu", {x}); return;
      case Activation::LeakyReLU: set_float(node("LeakyRelu", {x}), "alpha", act.alpha); return;
      case Activation::Sigmoid: node("Sigmoid", {x}); return;
      case Activation::Tanh: node("Tanh", {x}); return;
      case Activation::Softmax: set_int(node("Softmax", {x}), "axis", -1); return;
      case Activation::GELU: gelu(x); return;
    }
    fail("export_onnx: layer '", layer_, "': activation ", to_string(act.kind), " has no ONNX mapping");
  }

  void gelu(const std::string& x) {
    if (opset_ >= 20) {
      set_string(node("Gelu", {x}), "approximate", "none");
      return;
    }
    // 0.5 x (1 + erf(x / sqrt 2)), in formulas::gelu's order: (0.5 x) (1 + erf(x kInvSqrt2)).
    const std::string half = scalar("gelu.half", 0.5f), one = scalar("gelu.one", 1.0f),
                      inv_sqrt2 = scalar("gelu.inv_sqrt2", float(0.70710678118654752440));
    const std::string scaled = node("Mul", {x, inv_sqrt2}, "Mul_inv_sqrt2")->output(0);
    const std::string erf = node("Erf", {scaled})->output(0);
    const std::string one_plus = node("Add", {erf, one}, "Add_one")->output(0);
    const std::string half_x = node("Mul", {x, half}, "Mul_half")->output(0);
    node("Mul", {half_x, one_plus}, "Gelu");
  }

  const std::string& layer() const { return layer_; }

 private:
  onnx::GraphProto* g_;
  int opset_;
  std::string layer_;
  int first_node_ = 0;
};

// pads [begin_h, begin_w, end_h, end_w] of a window over an image [h, w], with the library's
// rule for 'same' (ops::window_axis: total = max((out - 1) stride + k - in, 0), the odd one
// after). ONNX's output size with these pads and ceil_mode 0 is then the library's; the check
// says so, and refuses pads ONNX forbids (a pooling pad must be smaller than the window).
std::vector<int64_t> window_pads(const std::string& layer, int h, int w, Size2 k, Size2 s, Padding padding,
                                 bool pooling) {
  std::vector<int64_t> pads(4);
  const int in[2] = {h, w}, kernel[2] = {k.h, k.w}, stride[2] = {s.h, s.w};
  for (int axis = 0; axis < 2; ++axis) {
    const ops::WindowAxis a = ops::window_axis(in[axis], kernel[axis], stride[axis], padding, "export_onnx");
    const int total = padding == Padding::Same ? std::max((a.out - 1) * stride[axis] + kernel[axis] - in[axis], 0) : 0;
    pads[size_t(axis)] = a.pad_before;
    pads[size_t(axis) + 2] = total - a.pad_before;
    const int onnx_out = (in[axis] + total - kernel[axis]) / stride[axis] + 1;
    CNN_CHECK(onnx_out == a.out && (!pooling || total - a.pad_before < kernel[axis]), "export_onnx: layer '", layer,
              "': its window (", kernel[axis], ", stride ", stride[axis], ", input ", in[axis],
              ") cannot be written as ONNX pads that give the library's output size ", a.out);
  }
  return pads;
}

using Weights = std::vector<std::pair<std::string, Tensor>>;

void write_conv2d(GraphWriter& gw, const Conv2D& l, const Weights& w) {
  const Conv2DOptions& o = l.options();
  const Shape& in = l.input_shape();
  std::vector<std::string> inputs{gw.current, gw.param("weight", w.at(0))};
  if (o.use_bias) inputs.push_back(gw.param("bias", w.at(1)));
  onnx::NodeProto* n = gw.node("Conv", inputs);
  set_ints(n, "kernel_shape", {o.kernel_size.h, o.kernel_size.w});
  set_ints(n, "strides", {o.strides.h, o.strides.w});
  set_ints(n, "pads", window_pads(gw.layer(), int(in[1]), int(in[2]), o.kernel_size, o.strides,
                                  parse_padding(o.padding), false));
  set_ints(n, "dilations", {1, 1});
  set_int(n, "group", 1);
  gw.activation({l.activation(), o.alpha});
}

void write_dense(GraphWriter& gw, const Dense& l, const Weights& w) {
  const DenseOptions& o = l.options();
  std::vector<std::string> inputs{gw.current, gw.param("weight", w.at(0))};
  if (o.use_bias) inputs.push_back(gw.param("bias", w.at(1)));
  onnx::NodeProto* n = gw.node("Gemm", inputs);
  set_int(n, "transB", 1);
  // scale (x W^T + b) = scale x W^T + scale b
  set_float(n, "alpha", o.scale);
  set_float(n, "beta", o.scale);
  gw.activation({l.activation(), o.alpha});
}

void write_pooling(GraphWriter& gw, const Pooling2D& l) {
  const Pooling2DOptions& o = l.options();
  const Shape& in = l.input_shape();
  const bool average = l.type() == "AveragePooling2D";
  onnx::NodeProto* n = gw.node(average ? "AveragePool" : "MaxPool", {gw.current});
  set_ints(n, "kernel_shape", {o.pool_size.h, o.pool_size.w});
  set_ints(n, "strides", {o.strides->h, o.strides->w});
  set_ints(n, "pads", window_pads(gw.layer(), int(in[1]), int(in[2]), o.pool_size, *o.strides,
                                  parse_padding(o.padding), true));
  set_int(n, "ceil_mode", 0);
  if (average) set_int(n, "count_include_pad", 0);  // divide by the in-bounds count
}

void write_batchnorm(GraphWriter& gw, const BatchNormalization& l, const Weights& w) {
  onnx::NodeProto* n = gw.node("BatchNormalization", {gw.current, gw.param("weight", w.at(0)),
                                                      gw.param("bias", w.at(1)), gw.param("running_mean", w.at(2)),
                                                      gw.param("running_var", w.at(3))});
  set_float(n, "epsilon", l.options().epsilon);
}

void write_global_pooling(GraphWriter& gw, const GlobalPooling2D& l) {
  gw.node(l.type() == "GlobalMaxPooling2D" ? "GlobalMaxPool" : "GlobalAveragePool", {gw.current});
  set_int(gw.node("Flatten", {gw.current}), "axis", 1);  // [N, C, 1, 1] -> [N, C]
}

void write_activation_layer(GraphWriter& gw, const ActivationLayer& l) {
  const nlohmann::json c = l.config();
  gw.activation({l.activation(), c.contains("alpha") ? c["alpha"].get<float>() : kDefaultLeakyAlpha});
}

void write_layer(GraphWriter& gw, const Layer& l, const Weights& w) {
  if (const auto* conv = dynamic_cast<const Conv2D*>(&l)) return write_conv2d(gw, *conv, w);
  if (const auto* dense = dynamic_cast<const Dense*>(&l)) return write_dense(gw, *dense, w);
  if (const auto* pool = dynamic_cast<const Pooling2D*>(&l)) return write_pooling(gw, *pool);
  if (const auto* bn = dynamic_cast<const BatchNormalization*>(&l)) return write_batchnorm(gw, *bn, w);
  if (const auto* gp = dynamic_cast<const GlobalPooling2D*>(&l)) return write_global_pooling(gw, *gp);
  if (const auto* act = dynamic_cast<const ActivationLayer*>(&l)) return write_activation_layer(gw, *act);
  if (dynamic_cast<const Flatten*>(&l)) {
    set_int(gw.node("Flatten", {gw.current}), "axis", 1);
    return;
  }
  if (dynamic_cast<const Dropout*>(&l)) return;  // the identity in inference
  fail("export_onnx: layer '", gw.layer(), "' (", l.type(), ") has no ONNX mapping");
}

void set_tensor_type(onnx::ValueInfoProto* v, const std::string& name, int64_t batch, const Shape& per_sample) {
  v->set_name(name);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* shape = t->mutable_shape();
  if (batch > 0) shape->add_dim()->set_dim_value(batch);
  else shape->add_dim()->set_dim_param("N");
  for (int64_t d : per_sample) shape->add_dim()->set_dim_value(d);
}

void add_metadata(onnx::ModelProto& m, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* e = m.add_metadata_props();
  e->set_key(key);
  e->set_value(value);
}

}  // namespace

void Sequential::export_onnx(const std::string& path, const OnnxExportOptions& options) const {
  const State& s = *state_;
  CNN_CHECK(s.compiled, "export_onnx: compile the model first (the graph needs its input shape)");
  CNN_CHECK(options.opset >= kMinOpset && options.opset <= kMaxOpset, "export_onnx: opset ", options.opset,
            " is not supported; use ", kMinOpset, " to ", kMaxOpset);
  CNN_CHECK(options.batch >= 0, "export_onnx: batch ", options.batch, " must be positive, or 0 for a dynamic batch");

  onnx::ModelProto model;
  model.set_ir_version(ir_version_for(options.opset));
  model.set_producer_name("CNNFromScratch");
  model.set_producer_version("0.1.0");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  const std::string graph_name = !options.name.empty() ? options.name : !name.empty() ? name : "sequential";
  const std::string& doc = !options.description.empty() ? options.description : description;
  if (!doc.empty()) model.set_doc_string(doc);
  add_metadata(model, "name", graph_name);
  if (!doc.empty()) add_metadata(model, "description", doc);
  if (!class_names.empty()) add_metadata(model, "class_names", nlohmann::json(class_names).dump());

  onnx::GraphProto* g = model.mutable_graph();
  g->set_name(graph_name);
  set_tensor_type(g->add_input(), "input", options.batch, s.opt.input_shape);

  const Weights weights = this->weights();
  const std::vector<std::string> names = layer_display_names(layers_);
  for (size_t i = 0; i < names.size(); ++i) {  // every name becomes a tensor name: one each
    CNN_CHECK(names[i] != "input" && names[i] != "probabilities", "export_onnx: layer ", i, " is named '", names[i],
              "', the name of the graph's ", names[i] == "input" ? "input" : "output", "; rename it");
    for (size_t j = 0; j < i; ++j)
      CNN_CHECK(names[j] != names[i], "export_onnx: layers ", j, " and ", i, " are both named '", names[i],
                "'; ONNX tensor names must be unique");
  }
  GraphWriter gw(g, options.opset);
  size_t next_weight = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = *layers_[i];
    const size_t count = l.param_specs().size();
    const Weights mine(weights.begin() + std::ptrdiff_t(next_weight),
                       weights.begin() + std::ptrdiff_t(next_weight + count));
    next_weight += count;
    gw.begin_layer(names[i]);
    write_layer(gw, l, mine);
    gw.end_layer();
  }
  // predict() applies the fused activation to a last layer that emits logits (from_logits).
  if (s.fused && layers_.back()->activation() == Activation::Linear) {
    gw.begin_layer(s.output_activation == Activation::Softmax ? "softmax" : "sigmoid");
    gw.activation({s.output_activation});
    gw.end_layer();
  }
  // The last node writes "probabilities" (an Identity when no node computes anything).
  if (gw.current == "input") gw.node("Identity", {"input"});
  g->mutable_node(g->node_size() - 1)->set_output(0, "probabilities");
  set_tensor_type(g->add_output(), "probabilities", options.batch, layers_.back()->output_shape());

  CNN_CHECK(model.ByteSizeLong() < (size_t(1) << 31), "export_onnx: the model is ", model.ByteSizeLong(),
            " bytes, over protobuf's 2 GiB limit for one message (ONNX external data is not supported)");
  std::string bytes;
  CNN_CHECK(model.SerializeToString(&bytes), "export_onnx: protobuf could not serialise the model");
  write_file_atomically(path, {bytes});
}

#endif  // CNN_WITH_PROTOBUF

bool built_with_protobuf() { return CNN_WITH_PROTOBUF != 0; }

}  // namespace cnn
