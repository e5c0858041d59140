# Protobuf for the file formats that are protobuf messages (ONNX models, TensorBoard event
# records): the published schemas in third_party/ are compiled by protoc at build time into one
# OBJECT library, cnn_protos, folded into libcnn.a like the kernels. The generated code is not
# ours, so it builds without the project's warnings-as-errors.
#   CNN_PROTOBUF = AUTO (when protobuf and protoc are found), ON or OFF.
# Without protobuf the library still builds; what needs it (cnn export --onnx, --tensorboard)
# says so in its error. third_party/CMakeLists.txt defines cnn_protos and lists the schemas, paths
# relative to third_party/, which is also protoc's import root, so a schema's generated header
# is "<its path>.pb.h" (e.g. "onnx/onnx.pb.h").
set(CNN_PROTOBUF "AUTO" CACHE STRING "Build the protobuf file writers (ONNX, TensorBoard): AUTO, ON or OFF")
set_property(CACHE CNN_PROTOBUF PROPERTY STRINGS AUTO ON OFF)
set(CNN_WITH_PROTOBUF OFF)
if(CNN_PROTOBUF STREQUAL "ON" OR CNN_PROTOBUF STREQUAL "AUTO")
  find_package(Protobuf 3.12)
  if(Protobuf_FOUND AND Protobuf_PROTOC_EXECUTABLE)
    set(CNN_WITH_PROTOBUF ON)
  elseif(CNN_PROTOBUF STREQUAL "ON")
    message(FATAL_ERROR "CNN_PROTOBUF=ON but protobuf (libprotobuf-dev, protobuf-compiler) was not found")
  endif()
endif()
message(STATUS "CNNFromScratch: protobuf file writers ${CNN_WITH_PROTOBUF}")

set(CNN_PROTO_OUT_DIR ${PROJECT_BINARY_DIR}/protos)
