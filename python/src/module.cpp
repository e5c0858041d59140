// cnnfromscratch._core: the C++ Sequential as nanobind sees it. The Keras-shaped keyword
// handling lives in python/cnnfromscratch/*.py; this file only moves arrays and options
// across, releases the GIL while the library computes, and turns cnn::Error into the
// Python exception its context calls for (ValueError unless said otherwise below).
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <nlohmann/json.hpp>

#include <cnn/cnn.hpp>
#include <cnn/pictures.hpp>

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using FloatArray = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using NumpyFloat = nb::ndarray<nb::numpy, float>;

// A library tensor over the array's own memory, no copy (float32, C-contiguous: nanobind has
// already converted anything else, once). The tensor keeps the array alive; the last tensor
// to go may be dropped on a thread without the GIL, so the release takes it.
cnn::Tensor to_tensor(const FloatArray& a) {
  cnn::Shape shape(a.shape_ptr(), a.shape_ptr() + a.ndim());
  std::shared_ptr<void> owner(new FloatArray(a), [](void* p) {
    nb::gil_scoped_acquire gil;
    delete static_cast<FloatArray*>(p);
  });
  return cnn::Tensor::borrow(const_cast<float*>(a.data()), std::move(shape), std::move(owner));
}

// The array shares the tensor's storage: the capsule keeps a copy of the tensor alive.
NumpyFloat to_numpy(const cnn::Tensor& tensor) {
  auto* owner = new cnn::Tensor(tensor.device() == cnn::Device::CPU ? tensor : tensor.to(cnn::Device::CPU));
  nb::capsule keep(owner, [](void* p) noexcept { delete static_cast<cnn::Tensor*>(p); });
  std::vector<size_t> shape(owner->shape().begin(), owner->shape().end());
  return NumpyFloat(owner->data(), shape.size(), shape.data(), keep);
}

// Runs `body` and raises `python_type` with the library's message for a cnn::Error.
template <class Body>
auto raising(PyObject* python_type, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const cnn::Error& e) {
    PyErr_SetString(python_type, e.what());
    throw nb::python_error();
  }
}

// Keras's metric names for one epoch's logs (EpochLogs: numbers) or a whole History (lists).
template <class Metrics>
nb::dict keras_metrics_dict(const Metrics& m) {
  nb::dict d;
  d["loss"] = m.loss;
  d["accuracy"] = m.accuracy;
  d["val_loss"] = m.val_loss;
  d["val_accuracy"] = m.val_accuracy;
  d["lr"] = m.learning_rate;
  d["seconds"] = m.seconds;
  return d;
}

// Forwards fit's hooks to a Python dispatcher (cnnfromscratch.callbacks._Dispatcher) with the
// GIL held; a Python callback stops training through model.stop_training (the C++ field).
// Between steps, at most every kSignalCheckInterval, it also lets Python handle pending
// signals, so Ctrl-C raises KeyboardInterrupt within about that time. Not after every step:
// taking the GIL back waits for whichever Python thread holds it to reach its switch
// interval (5 ms), which made fit beside a busy Python thread about 600 times slower.
class PythonCallback : public cnn::Callback {
 public:
  explicit PythonCallback(nb::object dispatcher) : dispatcher_(std::move(dispatcher)) {}
  ~PythonCallback() override {
    nb::gil_scoped_acquire gil;
    dispatcher_.reset();
  }
  void on_train_begin(cnn::Sequential&) override { call("on_train_begin"); }
  void on_epoch_begin(cnn::Sequential&, int epoch) override { call("on_epoch_begin", epoch); }
  void on_batch_end(cnn::Sequential&, const cnn::BatchLogs& l) override {
    nb::gil_scoped_acquire gil;
    nb::dict d;
    d["loss"] = l.loss;
    d["accuracy"] = l.accuracy;
    dispatcher_.attr("on_train_batch_end")(l.batch, d);
  }
  void on_step_end(cnn::Sequential&, int64_t) override {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_signal_check_ < kSignalCheckInterval) return;
    last_signal_check_ = now;
    nb::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
  }
  void on_epoch_end(cnn::Sequential&, const cnn::EpochLogs& l) override {
    nb::gil_scoped_acquire gil;
    dispatcher_.attr("on_epoch_end")(l.epoch, keras_metrics_dict(l));
  }
  void on_train_end(cnn::Sequential&) override { call("on_train_end"); }
  bool wants_batch_logs() const override {
    nb::gil_scoped_acquire gil;
    return nb::cast<bool>(dispatcher_.attr("wants_batch_logs"));
  }

 private:
  template <class... Args>
  void call(const char* hook, Args... args) {
    nb::gil_scoped_acquire gil;
    dispatcher_.attr(hook)(args...);
  }
  static constexpr std::chrono::milliseconds kSignalCheckInterval{50};
  nb::object dispatcher_;
  std::chrono::steady_clock::time_point last_signal_check_{};
};

}  // namespace

// A data set's images and labels as numpy arrays (float32 [N, C, H, W], int64 [N]) and its class names.
static nb::tuple dataset_tuple(const cnn::Dataset& d) {
  const std::vector<float> labels = d.y.empty() ? std::vector<float>{} : d.y.to_vector();
  auto* y = new std::vector<int64_t>(labels.begin(), labels.end());
  nb::capsule keep(y, [](void* p) noexcept { delete static_cast<std::vector<int64_t>*>(p); });
  const size_t n = y->size();
  nb::ndarray<nb::numpy, int64_t> y_array(y->data(), 1, &n, keep);
  nb::object x_array = d.x.empty() ? nb::none() : nb::cast(to_numpy(d.x));
  return nb::make_tuple(x_array, y_array, d.class_names);
}

NB_MODULE(_core, m) {
  m.doc() = "The CNNFromScratch C++ library; use the cnnfromscratch package, not this module.";
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const cnn::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("built_with_cuda", &cnn::built_with_cuda);
  m.def("built_with_protobuf", &cnn::built_with_protobuf);
  // Data-parallel (cnn/distributed.hpp; the Python face is cnnfromscratch.distributed).
  m.def("distributed_available", &cnn::distributed::available);
  m.def("launched_by_mpi", &cnn::distributed::launched_by_mpi);
  m.def("distributed_rank", &cnn::distributed::rank);
  m.def("distributed_size", &cnn::distributed::size);
  m.def("distributed_local_rank", &cnn::distributed::local_rank);
  m.def("distributed_init", &cnn::distributed::init);
  m.def("distributed_use_local_gpu", &cnn::distributed::use_local_gpu);
  // For the tests: the address of the data of the tensor an array becomes (zero-copy check).
  m.def("_tensor_data_address", [](const FloatArray& a) {
    return reinterpret_cast<uintptr_t>(to_tensor(a).data());
  });
  m.def("find_data_dir", &cnn::find_data_dir, "name"_a, "explicit_dir"_a = "");
  // (train, test), each (x, y, class_names).
  m.def("load_dataset",
        [](const std::string& kind, const std::string& dir, bool grayscale, bool standardize, int64_t train_limit,
           int64_t test_limit) {
          const cnn::ImageDataOptions o{grayscale, standardize, train_limit, test_limit};
          cnn::TrainTest t;
          {
            nb::gil_scoped_release release;
            t = kind == "mnist" ? cnn::load_mnist(dir, o) : cnn::load_cifar10(dir, o);
          }
          return nb::make_tuple(dataset_tuple(t.train), dataset_tuple(t.test));
        });
  m.def("load_image_folder", [](const std::string& dir, int channels, int height, int width) {
    cnn::Dataset d;
    {
      nb::gil_scoped_release release;
      d = cnn::load_image_folder(dir, channels, height, width);
    }
    return dataset_tuple(d);
  });

  // `cnn plot`: loss and accuracy per epoch from a CSVLogger file, as a PNG.
  m.def("plot_training_curves", [](const std::filesystem::path& csv_path, const std::filesystem::path& png_path,
                                   const std::string& title) {
    raising(PyExc_OSError, [&] {
      nb::gil_scoped_release release;
      cnn::save_png(cnn::plot_training_curves(cnn::read_metrics_csv(csv_path.string()), title), png_path.string());
    });
  }, "csv_path"_a, "png_path"_a, "title"_a = "",
  "Loss and accuracy per epoch from a CSVLogger file (or `cnn train --log`), drawn into a PNG file.");

  // The library's callbacks (callbacks.hpp), opaque to Python.
  nb::class_<cnn::Callback>(m, "NativeCallback");
  m.def("early_stopping", [](std::string monitor, double min_delta, int patience, bool restore_best_weights) {
    return cnn::early_stopping({std::move(monitor), min_delta, patience, restore_best_weights});
  });
  m.def("model_checkpoint", [](std::string filepath, std::string monitor, bool save_best_only) {
    return cnn::model_checkpoint({std::move(filepath), std::move(monitor), save_best_only});
  });
  m.def("csv_logger", [](const std::string& path, bool append) { return cnn::csv_logger(path, append); });
  m.def("tensorboard", [](std::string log_dir, int every_steps, bool write_filters) {
    return cnn::tensorboard({std::move(log_dir), every_steps, write_filters});
  });
  m.def("weight_averaging", [](std::string method, float decay, int every, float alpha, float alpha_decay,
                               float alpha_decay_power, bool use_average_at_end) {
    return cnn::weight_averaging(
        {std::move(method), decay, every, alpha, alpha_decay, alpha_decay_power, use_average_at_end});
  });

  nb::class_<cnn::LRSchedule>(m, "LRSchedule")
      .def(nb::init<>())
      .def_rw("kind", &cnn::LRSchedule::kind)
      .def_rw("step_epochs", &cnn::LRSchedule::step_epochs)
      .def_rw("gamma", &cnn::LRSchedule::gamma)
      .def_rw("min_factor", &cnn::LRSchedule::min_factor)
      .def_rw("warmup", &cnn::LRSchedule::warmup)
      .def_rw("start_factor", &cnn::LRSchedule::start_factor)
      .def_rw("end_factor", &cnn::LRSchedule::end_factor);
  nb::class_<cnn::Augmentation>(m, "Augmentation")
      .def(nb::init<>())
      .def_rw("translate", &cnn::Augmentation::translate)
      .def_rw("flip", &cnn::Augmentation::flip)
      .def_rw("cutout", &cnn::Augmentation::cutout);
  nb::class_<cnn::Evaluation>(m, "Evaluation")
      .def_ro("loss", &cnn::Evaluation::loss)
      .def_ro("accuracy", &cnn::Evaluation::accuracy)
      .def_ro("per_class_accuracy", &cnn::Evaluation::per_class_accuracy)
      .def_ro("confusion", &cnn::Evaluation::confusion);
  m.def("cuda_available", &cnn::cuda_available);

  nb::class_<cnn::Sequential>(m, "Model")
      .def(nb::init<>())
      .def("add", [](cnn::Sequential& s, const std::string& config) {
        s.add(cnn::layer_from_config(nlohmann::json::parse(config)));
      })
      .def("layer_configs",
           [](const cnn::Sequential& s) {
             std::vector<std::string> out;
             for (size_t i = 0; i < s.size(); ++i) out.push_back(s.layer(i).config().dump());
             return out;
           })
      .def("compile",
           [](cnn::Sequential& s, std::string optimizer, std::string loss, float learning_rate,
              std::vector<int64_t> input_shape, float momentum, bool nesterov, float beta1, float beta2, float epsilon,
              float weight_decay, bool decoupled_weight_decay, float label_smoothing, float bias_lr_scale,
              bool from_logits, uint64_t seed, const std::string& device, std::string precision) {
             cnn::CompileOptions o;
             o.optimizer = std::move(optimizer);
             o.loss = std::move(loss);
             o.learning_rate = learning_rate;
             o.input_shape = std::move(input_shape);
             o.momentum = momentum;
             o.nesterov = nesterov;
             o.beta1 = beta1;
             o.beta2 = beta2;
             o.epsilon = epsilon;
             o.weight_decay = weight_decay;
             o.decoupled_weight_decay = decoupled_weight_decay;
             o.label_smoothing = label_smoothing;
             o.bias_lr_scale = bias_lr_scale;
             o.from_logits = from_logits;
             o.seed = seed;
             o.precision = std::move(precision);
             o.device = cnn::parse_device(device);
             // An unusable GPU is a RuntimeError (CUDA's); the rest of compile's errors are ValueErrors.
             PyObject* error_type = o.device == cnn::Device::CUDA && !cnn::cuda_available() ? PyExc_RuntimeError
                                                                                             : PyExc_ValueError;
             raising(error_type, [&] {
               nb::gil_scoped_release release;
               s.compile(o);
             });
           },
           "optimizer"_a, "loss"_a, "learning_rate"_a, "input_shape"_a, "momentum"_a, "nesterov"_a, "beta1"_a,
           "beta2"_a, "epsilon"_a, "weight_decay"_a, "decoupled_weight_decay"_a, "label_smoothing"_a,
           "bias_lr_scale"_a, "from_logits"_a, "seed"_a, "device"_a, "precision"_a)
      .def_prop_ro("compiled", &cnn::Sequential::compiled)
      .def_rw("stop_training", &cnn::Sequential::stop_training)
      .def("input_shape", [](const cnn::Sequential& s) { return s.compile_options().input_shape; })
      .def("loss", [](const cnn::Sequential& s) { return s.compile_options().loss; })
      .def("fit",
           [](cnn::Sequential& s, const FloatArray& x, const FloatArray& y, double epochs, int batch_size, bool shuffle,
              bool drop_last,
              float validation_split, std::optional<FloatArray> val_x, std::optional<FloatArray> val_y, int verbose,
              uint64_t seed, int initial_epoch, nb::object dispatcher, const cnn::LRSchedule& lr_schedule,
              const cnn::Augmentation& augment, const std::vector<cnn::CallbackPtr>& native_callbacks,
              bool distributed, bool sync_batchnorm) {
             cnn::FitOptions o;
             o.distributed = distributed;
             o.sync_batchnorm = sync_batchnorm;
             o.lr_schedule = lr_schedule;
             o.augment = augment;
             o.epochs = epochs;
             o.batch_size = batch_size;
             o.shuffle = shuffle;
             o.drop_last = drop_last;
             o.validation_split = validation_split;
             if (val_x && val_y) o.validation_data = cnn::ValidationData{to_tensor(*val_x), to_tensor(*val_y)};
             o.verbose = verbose;
             o.seed = seed;
             o.initial_epoch = initial_epoch;
             // The library's callbacks first, then the Python ones (in their list order).
             o.callbacks = native_callbacks;
             o.callbacks.push_back(std::make_shared<PythonCallback>(std::move(dispatcher)));
             const cnn::Tensor xt = to_tensor(x), yt = to_tensor(y);
             cnn::History h;
             {
               nb::gil_scoped_release release;
               h = s.fit(xt, yt, o);
             }
             return keras_metrics_dict(h);
           })
      .def("evaluate",
           [](cnn::Sequential& s, const FloatArray& x, const FloatArray& y, int batch_size, bool per_class,
              bool tta_flip, int tta_translate, double tta_shifted_share) {
             const cnn::Tensor xt = to_tensor(x), yt = to_tensor(y);
             nb::gil_scoped_release release;
             return s.evaluate(xt, yt,
                               {.batch_size = batch_size,
                                .per_class = per_class,
                                .tta = {.flip = tta_flip, .translate = tta_translate, .shifted_share = tta_shifted_share}});
           })
      .def("predict",
           [](cnn::Sequential& s, const FloatArray& x, int batch_size) {
             const cnn::Tensor xt = to_tensor(x);
             cnn::Tensor out;
             {
               nb::gil_scoped_release release;
               out = s.predict(xt, batch_size);
             }
             return to_numpy(out);
           })
      .def("summary_string", &cnn::Sequential::summary_string)
      .def("count_params", &cnn::Sequential::count_params)
      .def("trainable_params", &cnn::Sequential::trainable_params)
      .def("weights",
           [](const cnn::Sequential& s) {
             std::vector<std::pair<std::string, NumpyFloat>> out;
             for (const auto& [name, t] : s.weights()) out.emplace_back(name, to_numpy(t));
             return out;
           })
      .def("set_weights",
           [](cnn::Sequential& s, const std::vector<std::pair<std::string, FloatArray>>& weights) {
             std::vector<std::pair<std::string, cnn::Tensor>> named;
             for (const auto& [name, a] : weights) named.emplace_back(name, to_tensor(a));
             s.set_weights(named);
           })
      // File problems are OSErrors (the caller raises FileNotFoundError for a missing file).
      .def("save",
           [](const cnn::Sequential& s, const std::string& path) {
             raising(PyExc_OSError, [&] {
               nb::gil_scoped_release release;
               s.save(path);
             });
           })
      // ONNX export (docs/FORMATS.md); bad options are ValueErrors raised by models.py first.
      .def("export_onnx",
           [](const cnn::Sequential& s, const std::string& path, int opset, int64_t batch, const std::string& name,
              const std::string& description) {
             raising(PyExc_OSError, [&] {
               nb::gil_scoped_release release;
               s.export_onnx(path, {.opset = opset, .batch = batch, .name = name, .description = description});
             });
           },
           nb::arg("path"), nb::arg("opset"), nb::arg("batch"), nb::arg("name"), nb::arg("description"))
      .def_static("load",
                  [](const std::string& path) {
                    return raising(PyExc_OSError, [&] {
                      nb::gil_scoped_release release;
                      return cnn::Sequential::load(path);
                    });
                  })
      // A device that cannot be used is a RuntimeError (CUDA's).
      .def("to",
           [](cnn::Sequential& s, const std::string& device) {
             const cnn::Device d = cnn::parse_device(device);
             raising(PyExc_RuntimeError, [&] {
               nb::gil_scoped_release release;
               s.to(d);
             });
           })
      .def("device", [](const cnn::Sequential& s) { return cnn::to_string(s.device()); });
}
