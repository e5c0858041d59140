// Sequential::export_onnx and `cnn export`: the file parses back with protobuf (the generated
// onnx.pb.h) and has the documented graph: interface, opset, metadata, nodes and attributes
// that reproduce the library's padding, initializers holding the weights in their layouts;
// bad requests fail naming the problem. That onnxruntime computes the library's outputs is
// tests/interop/test_onnx_export.py (CTest interop.onnx). Without protobuf, only the error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_runner.hpp"
#include "cnn/cnn.hpp"
#include "test_util.hpp"

#if CNN_WITH_PROTOBUF
#include "onnx/onnx.pb.h"
#endif

namespace cnn {
namespace {

using test::error_of;

std::string temp_path(const std::string& name) { return testing::TempDir() + "/" + name; }

Sequential odd_model() {
  Conv2DOptions conv{.filters = 4, .kernel_size = {4, 2}, .strides = 2, .padding = "same", .activation = "relu"};
  DenseOptions dense{.units = 5, .activation = "softmax", .scale = 0.5f};
  Sequential m({Conv2D(conv), BatchNormalization(BatchNormOptions{.epsilon = 1e-3f}),
                MaxPooling2D(Pooling2DOptions{.pool_size = 3, .strides = Size2(2), .padding = "same"}), Flatten(),
                Dropout(0.5f), Dense(dense)});
  m.layer(0).name = "features";
  m.class_names = {"a", "b", "c", "d", "e"};
  m.compile("sgd", "cce", 0.1f, {3, 17, 13});
  return m;
}

TEST(OnnxExport, WithoutProtobufTheErrorSaysSo) {
#if CNN_WITH_PROTOBUF
  GTEST_SKIP() << "built with protobuf: the export works (the tests below)";
#else
  Sequential m = odd_model();
  EXPECT_NE(error_of([&] { m.export_onnx(temp_path("none.onnx")); }).find("built without protobuf"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(temp_path("none.onnx")));
#endif
}

#if CNN_WITH_PROTOBUF

onnx::ModelProto read_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromIstream(&in)) << path << " does not parse as an ONNX ModelProto";
  return m;
}

const onnx::AttributeProto* attribute(const onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

std::vector<int64_t> ints(const onnx::NodeProto& n, const std::string& name) {
  const onnx::AttributeProto* a = attribute(n, name);
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{-1};
}

std::vector<std::string> dims(const onnx::ValueInfoProto& v) {
  std::vector<std::string> d;
  for (const auto& dim : v.type().tensor_type().shape().dim())
    d.push_back(dim.has_dim_param() ? dim.dim_param() : std::to_string(dim.dim_value()));
  return d;
}

TEST(OnnxExport, GraphHasTheInterfaceNodesAndWeights) {
  Sequential m = odd_model();
  const std::string path = temp_path("odd.onnx");
  m.export_onnx(path, {.name = "odd", .description = "odd cases"});
  const onnx::ModelProto p = read_model(path);
  EXPECT_EQ(p.ir_version(), 8);
  ASSERT_EQ(p.opset_import_size(), 1);
  EXPECT_EQ(p.opset_import(0).domain(), "");
  EXPECT_EQ(p.opset_import(0).version(), 17);
  EXPECT_EQ(p.producer_name(), "CNNFromScratch");
  EXPECT_EQ(p.doc_string(), "odd cases");
  std::map<std::string, std::string> meta;
  for (const auto& e : p.metadata_props()) meta[e.key()] = e.value();
  EXPECT_EQ(meta["name"], "odd");
  EXPECT_EQ(meta["description"], "odd cases");
  EXPECT_EQ(meta["class_names"], R"(["a","b","c","d","e"])");

  const onnx::GraphProto& g = p.graph();
  EXPECT_EQ(g.name(), "odd");
  ASSERT_EQ(g.input_size(), 1);
  EXPECT_EQ(g.input(0).name(), "input");
  EXPECT_EQ(g.input(0).type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(dims(g.input(0)), (std::vector<std::string>{"N", "3", "17", "13"}));
  ASSERT_EQ(g.output_size(), 1);
  EXPECT_EQ(g.output(0).name(), "probabilities");
  EXPECT_EQ(dims(g.output(0)), (std::vector<std::string>{"N", "5"}));

  // Nodes named after the layers; Dropout leaves none; each layer's last output is its name.
  std::vector<std::string> nodes, outputs;
  for (const auto& n : g.node()) {
    nodes.push_back(n.name() + ":" + n.op_type());
    outputs.push_back(n.output(0));
  }
  EXPECT_EQ(nodes, (std::vector<std::string>{"features/Conv:Conv", "features/Relu:Relu",
                                             "batch_normalization/BatchNormalization:BatchNormalization",
                                             "max_pooling2d/MaxPool:MaxPool", "flatten/Flatten:Flatten",
                                             "dense/Gemm:Gemm", "dense/Softmax:Softmax"}));
  EXPECT_EQ(outputs, (std::vector<std::string>{"features/Conv", "features", "batch_normalization", "max_pooling2d",
                                               "flatten", "dense/Gemm", "probabilities"}));
  EXPECT_EQ(g.node(5).input(0), "flatten");  // Dense reads Flatten's output: Dropout is gone

  // TensorFlow's 'same' split, odd pixel after: 17 rows, k 4, s 2 -> 9 rows, 3 padded (1 + 2);
  // 13 columns, k 2, s 2 -> 7, 1 padded (0 + 1). Pooling 3/2 'same' on 9x7: 2 (1 + 1), 2 (1 + 1).
  EXPECT_EQ(ints(g.node(0), "pads"), (std::vector<int64_t>{1, 0, 2, 1}));
  EXPECT_EQ(ints(g.node(0), "kernel_shape"), (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(ints(g.node(0), "strides"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ints(g.node(3), "pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  ASSERT_NE(attribute(g.node(3), "ceil_mode"), nullptr);
  EXPECT_EQ(attribute(g.node(3), "ceil_mode")->i(), 0);
  ASSERT_NE(attribute(g.node(2), "epsilon"), nullptr);
  EXPECT_FLOAT_EQ(attribute(g.node(2), "epsilon")->f(), 1e-3f);
  for (const char* key : {"alpha", "beta"}) {
    ASSERT_NE(attribute(g.node(5), key), nullptr) << key;
    EXPECT_FLOAT_EQ(attribute(g.node(5), key)->f(), 0.5f) << key;
  }
  EXPECT_EQ(attribute(g.node(5), "transB")->i(), 1);

  // Every parameter, under "<layer>.<param>", in the library's layout, bit for bit.
  const auto weights = m.weights();
  const std::vector<std::string> expected_names{"features.weight",
                                                "features.bias",
                                                "batch_normalization.weight",
                                                "batch_normalization.bias",
                                                "batch_normalization.running_mean",
                                                "batch_normalization.running_var",
                                                "dense.weight",
                                                "dense.bias"};
  ASSERT_EQ(g.initializer_size(), int(weights.size()));
  for (int i = 0; i < g.initializer_size(); ++i) {
    const onnx::TensorProto& t = g.initializer(i);
    const Tensor& w = weights[size_t(i)].second;
    EXPECT_EQ(t.name(), expected_names[size_t(i)]);
    EXPECT_EQ(t.doc_string(), weights[size_t(i)].first);
    EXPECT_EQ(t.data_type(), onnx::TensorProto::FLOAT);
    EXPECT_EQ(std::vector<int64_t>(t.dims().begin(), t.dims().end()), w.shape()) << t.name();
    ASSERT_EQ(t.raw_data().size(), size_t(w.numel()) * sizeof(float)) << t.name();
    EXPECT_EQ(std::memcmp(t.raw_data().data(), w.data(), t.raw_data().size()), 0) << t.name();
  }
  EXPECT_EQ(weights[0].second.shape(), (Shape{4, 3, 4, 2}));  // [filters, in, k_h, k_w], as ONNX's Conv
  EXPECT_EQ(weights[6].second.shape(), (Shape{5, 4 * 5 * 4}));  // [units, in] with transB
}

TEST(OnnxExport, FixedBatchOpset20GeluAndFromLogitsSoftmax) {
  Sequential m({Conv2D(3, 3, 1, "valid", "gelu"), GlobalAveragePooling2D(), Dense(4)});
  CompileOptions o;
  o.loss = "scce";
  o.from_logits = true;
  o.input_shape = {2, 5, 6};
  m.compile(o);
  const std::string path = temp_path("gelu20.onnx");
  m.export_onnx(path, {.opset = 20, .batch = 7});
  const onnx::ModelProto p = read_model(path);
  EXPECT_EQ(p.ir_version(), 9);
  EXPECT_EQ(p.opset_import(0).version(), 20);
  EXPECT_EQ(dims(p.graph().input(0)), (std::vector<std::string>{"7", "2", "5", "6"}));
  EXPECT_EQ(dims(p.graph().output(0)), (std::vector<std::string>{"7", "4"}));
  std::vector<std::string> ops;
  for (const auto& n : p.graph().node()) ops.push_back(n.op_type());
  // predict() applies softmax to the linear last layer's logits: so does the graph.
  EXPECT_EQ(ops, (std::vector<std::string>{"Conv", "Gelu", "GlobalAveragePool", "Flatten", "Gemm", "Softmax"}));
  EXPECT_EQ(attribute(p.graph().node(1), "approximate")->s(), "none");

  m.export_onnx(path, {.opset = 17});  // no Gelu op before 20: the erf form
  const onnx::ModelProto q = read_model(path);
  ops.clear();
  for (const auto& n : q.graph().node()) ops.push_back(n.op_type());
  EXPECT_EQ(ops, (std::vector<std::string>{"Conv", "Mul", "Erf", "Add", "Mul", "Mul", "GlobalAveragePool", "Flatten",
                                           "Gemm", "Softmax"}));
  EXPECT_EQ(q.graph().node(5).output(0), "conv2d");
}

TEST(OnnxExport, TheModelsNameAndDescriptionAreSavedAndExported) {
  Sequential m = Sequential::from_json_file(CNN_SOURCE_DIR "/models/lenet5.json");
  EXPECT_EQ(m.name, "lenet5");
  EXPECT_EQ(m.description.substr(0, 17), "The seed's LeNet-");
  const std::string saved = temp_path("named.safetensors"), path = temp_path("named.onnx");
  m.save(saved);
  const Sequential loaded = Sequential::load(saved);
  EXPECT_EQ(loaded.name, m.name);
  EXPECT_EQ(loaded.description, m.description);
  loaded.export_onnx(path);  // the options' empty name and description: the model's
  onnx::ModelProto p = read_model(path);
  std::map<std::string, std::string> meta;
  for (const auto& e : p.metadata_props()) meta[e.key()] = e.value();
  EXPECT_EQ(meta["name"], "lenet5");
  EXPECT_EQ(meta["description"], m.description);
  EXPECT_EQ(p.graph().name(), "lenet5");
  EXPECT_EQ(p.doc_string(), m.description);

  Sequential unnamed({Flatten(), Dense(2, "softmax")});
  unnamed.compile("sgd", "cce", 0.1f, {3});
  unnamed.export_onnx(path);
  p = read_model(path);
  EXPECT_EQ(p.graph().name(), "sequential");
  EXPECT_EQ(p.doc_string(), "");
  EXPECT_NE(error_of([] { Sequential::from_json(nlohmann::json::parse(R"({"name": 5, "layers": [{"type": "Flatten"}]})")); })
                .find("\"name\" must be a string"),
            std::string::npos);
}

TEST(OnnxExport, BadRequestsFailNamingTheProblem) {
  Sequential m = odd_model();
  EXPECT_NE(error_of([&] { m.export_onnx(temp_path("x.onnx"), {.opset = 12}); }).find("opset 12 is not supported"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.export_onnx(temp_path("x.onnx"), {.opset = 23}); }).find("use 13 to 22"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.export_onnx(temp_path("x.onnx"), {.batch = -1}); }).find("batch -1"), std::string::npos);
  const std::string unwritable = temp_path("no_such_dir/x.onnx");
  EXPECT_NE(error_of([&] { m.export_onnx(unwritable); }).find(unwritable), std::string::npos);

  Sequential uncompiled({Flatten(), Dense(2)});
  EXPECT_NE(error_of([&] { uncompiled.export_onnx(temp_path("x.onnx")); }).find("compile the model first"),
            std::string::npos);

  Sequential twins({Flatten(), Dense(3, "relu"), Dense(2, "softmax")});
  twins.layer(1).name = twins.layer(2).name = "head";
  twins.compile("sgd", "cce", 0.1f, {2, 2});
  EXPECT_NE(error_of([&] { twins.export_onnx(temp_path("x.onnx")); }).find("layers 1 and 2 are both named 'head'"),
            std::string::npos);
  twins.layer(1).name = "input";
  EXPECT_NE(error_of([&] { twins.export_onnx(temp_path("x.onnx")); }).find("layer 1 is named 'input'"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(temp_path("x.onnx")));  // nothing written by a failed export
}

TEST(OnnxExport, CliWritesTheFileAndRefusesABadBatch) {
  using namespace cli_test;
  const std::string out = (scratch() / "lenet5.onnx").string();
  const Result ok = cnn("export --model " + quoted(CNN_SOURCE_DIR "/models/lenet5.json") + " --onnx " + quoted(out) +
                        " --batch 3");
  ASSERT_EQ(ok.code, 0) << show(ok);
  EXPECT_NE(ok.out.find("batch 3"), std::string::npos) << show(ok);
  const onnx::ModelProto p = read_model(out);
  EXPECT_EQ(dims(p.graph().input(0)), (std::vector<std::string>{"3", "3", "32", "32"}));
  EXPECT_EQ(p.graph().name(), "lenet5");  // the description's name

  const Result bad = cnn("export --model " + quoted(CNN_SOURCE_DIR "/models/lenet5.json") + " --onnx x.onnx --batch 0");
  EXPECT_EQ(bad.code, 2) << show(bad);
  EXPECT_NE(bad.err.find("--batch must be 'dynamic' or a positive integer"), std::string::npos) << show(bad);
}

#endif  // CNN_WITH_PROTOBUF

}  // namespace
}  // namespace cnn
