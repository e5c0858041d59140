// cnn train / eval / predict / summary
#include <chrono>
#include <cmath>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>

#include "cli.hpp"

namespace cnn::cli {
namespace fs = std::filesystem;

namespace {

// `cnn train`'s flags. Unset ones stay empty and leave the model file's value (its "training"
// section, read by the library) or the model's compile options in place.
struct TrainFlags {
  std::string model, data, save, log, device = "cpu", checkpoint, resume, tensorboard;
  int tensorboard_every = 0;
  bool tensorboard_images = false;
  std::optional<std::string> optimizer, lr_schedule, flip, precision;
  std::optional<int> batch_size, translate, cutout, tta_translate;
  std::optional<double> epochs, lr, momentum, validation_split, ema;
  std::optional<uint64_t> seed;
  bool tta_flip = false, distributed = false, sync_batchnorm = false;
  int verbose = 1;
  int64_t limit = 0, test_limit = 0;
  int64_t bucket_kb = FitOptions{}.allreduce_bucket_bytes / 1024;
};

void add_train_flags(CLI::App* sub, TrainFlags& f) {
  sub->add_option("--model", f.model, "Model description (models/*.json) or a saved model to train further");
  sub->add_option("--checkpoint", f.checkpoint, "Write a training checkpoint here after every epoch");
  sub->add_option("--resume", f.resume, "Continue the run saved in this checkpoint (and keep checkpointing to it)")
      ->check(CLI::ExistingFile);
  sub->add_option("--data", f.data, "Data folder (CIFAR-10 binary, MNIST IDX, or image folders); default: search for CIFAR-10");
  sub->add_option("--epochs", f.epochs, "Epochs, a fraction training the last in part (default: the model file's training.epochs, else 10)")
      ->check(finite_number())
      ->check(CLI::PositiveNumber);
  sub->add_option("--batch-size", f.batch_size, "Batch size (default: training.batch_size, else 32)")->check(CLI::PositiveNumber);
  sub->add_option("--lr", f.lr, "Learning rate (default: the model's compile.learning_rate)")
      ->check(finite_number())->check(CLI::PositiveNumber);
  sub->add_option("--optimizer", f.optimizer, "sgd or adam (default: the model's)")->check(CLI::IsMember({"sgd", "adam"}));
  sub->add_option("--momentum", f.momentum, "SGD momentum")->check(finite_number())->check(CLI::Range(0.0, 0.999999));
  sub->add_option("--seed", f.seed, "Seed for initial weights and shuffling");
  sub->add_option("--validation-split", f.validation_split, "Fraction of the training set held out (default 0.1)")
      ->check(finite_number())->check(CLI::Range(0.0, 0.99));
  sub->add_option("--device", f.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  add_precision_flag(sub, f.precision);
  sub->add_option("--save", f.save, "Where to save the trained model (default: out/<model>.safetensors)");
  sub->add_option("--log", f.log, "Append per-epoch metrics to this CSV file");
  sub->add_option("--tensorboard", f.tensorboard,
                  "Write TensorBoard event files into this folder (scalars per epoch, the model summary)");
  sub->add_option("--tensorboard-every", f.tensorboard_every,
                  "With --tensorboard: also loss, accuracy and learning rate every N optimizer steps")
      ->check(CLI::PositiveNumber);
  sub->add_flag("--tensorboard-images", f.tensorboard_images,
                "With --tensorboard: also the first Conv2D's filters per epoch and the test set's confusion matrix");
  sub->add_option("--limit", f.limit, "Use only the first N training images")->check(CLI::PositiveNumber);
  sub->add_option("--test-limit", f.test_limit, "Use only the first N test images")->check(CLI::PositiveNumber);
  sub->add_option("--verbose", f.verbose, "0 silent, 1 progress bar, 2 one line per epoch")->check(CLI::Range(0, 2));
  sub->add_option("--lr-schedule", f.lr_schedule, "constant, step, cosine or onecycle (details: training.lr_schedule)")
      ->check(CLI::IsMember({"constant", "step", "cosine", "onecycle"}));
  sub->add_option("--augment-translate", f.translate, "Random shifts of up to N pixels (reflect padding)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--augment-flip", f.flip, "none, random or alternate")
      ->check(CLI::IsMember({"none", "random", "alternate"}));
  sub->add_option("--augment-cutout", f.cutout, "Zero a random NxN square per image")->check(CLI::NonNegativeNumber);
  sub->add_option("--ema", f.ema, "Keep an exponential moving average of the weights with this decay; use it at the end")
      ->check(finite_number())->check(CLI::Range(0.0, 0.999999));
  sub->add_flag("--distributed", f.distributed,
               "Data-parallel over the MPI ranks (implied when started by mpirun or srun); docs/DISTRIBUTED.md");
  sub->add_option("--allreduce-bucket-kb", f.bucket_kb,
                  "Data-parallel: all-reduce the gradients in buckets of this many KiB during backward (0: one "
                  "all-reduce after it)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  sub->add_flag("--sync-batchnorm", f.sync_batchnorm,
               "Data-parallel: BatchNormalization statistics over every rank's rows (default: per rank)");
  sub->add_flag("--tta-flip", f.tta_flip, "Test-time augmentation: average with the mirrored images");
  sub->add_option("--tta-translate", f.tta_translate, "Test-time augmentation: also shifted by +-N pixels")
      ->check(CLI::NonNegativeNumber);
}

// The model to train, with the optimizer flags applied. --seed draws new initial weights for
// a description; a saved model or checkpoint keeps its weights (the optimizer state restarts).
Sequential model_to_train(const TrainFlags& f) {
  Sequential model = load_model(f.model);
  CNN_CHECK(model.compiled(), "'", f.model, "' has no input_shape, so it cannot be compiled");
  CompileOptions co = model.compile_options();
  if (f.optimizer) co.optimizer = *f.optimizer;
  if (f.lr) co.learning_rate = float(*f.lr);
  if (f.momentum) co.momentum = float(*f.momentum);
  if (f.seed && model.weights_fresh()) {
    co.seed = *f.seed;
    model.compile(co);
  } else if (f.optimizer || f.momentum) {
    model.set_optimizer(co);
  } else if (f.lr) {
    model.set_learning_rate(co.learning_rate);
  }
  apply_precision(model, f.precision);
  model.to(parse_device(f.device));
  return model;
}

// The model file's training recipe with the flags on top.
TrainingRecipe recipe_with_flags(const TrainFlags& f) {
  TrainingRecipe r = read_training_recipe_file(f.model);
  FitOptions& fo = r.fit;
  if (f.epochs) fo.epochs = *f.epochs;
  if (f.batch_size) fo.batch_size = *f.batch_size;
  if (f.validation_split) fo.validation_split = float(*f.validation_split);
  fo.verbose = f.verbose;
  if (f.seed) fo.seed = *f.seed;
  if (f.lr_schedule) fo.lr_schedule.kind = *f.lr_schedule;
  if (f.translate) fo.augment.translate = *f.translate;
  if (f.flip) fo.augment.flip = *f.flip;
  if (f.cutout) fo.augment.cutout = *f.cutout;
  if (f.ema) fo.weight_averaging = WeightAveragingOptions{"ema", float(*f.ema)};
  if (f.tta_flip) r.tta.flip = true;
  if (f.tta_translate) r.tta.translate = *f.tta_translate;
  if (!f.log.empty() && distributed::rank() == 0) fo.callbacks.push_back(csv_logger(f.log, true));
  fo.distributed = f.distributed;
  fo.sync_batchnorm = f.sync_batchnorm;
  fo.allreduce_bucket_bytes = f.bucket_kb * 1024;
  fo.checkpoint_path = f.checkpoint;
  fo.resume_from = f.resume;
  return r;
}

// --tensorboard: the callback; with --tensorboard-images, the test set (when there is one)
// gives the confusion matrix drawn when training ends.
CallbackPtr tensorboard_callback(const TrainFlags& f, const Dataset& test) {
  TensorBoardOptions o;
  o.log_dir = f.tensorboard;
  o.every_steps = f.tensorboard_every;
  o.write_filters = f.tensorboard_images;
  if (f.tensorboard_images && test.size() > 0) {
    o.confusion_x = test.x;
    o.confusion_y = test.y;
  }
  return tensorboard(o);
}

// --resume takes a checkpoint; a model description or a saved model fails here, before the data
// loads, saying so (fit would report a file-format error about a "model file").
void check_resume_file(const std::string& path) {
  CNN_CHECK(is_saved_model(path), "--resume '", path,
            "' is not a training checkpoint (--checkpoint writes one); a model description trains with --model");
  try {
    Sequential::load_checkpoint(path);
  } catch (const Error& e) {
    fail("--resume takes a checkpoint written by --checkpoint (a saved model trains further with --model): ", e.what());
  }
}

int train(TrainFlags f) {
  if (f.model.empty() && f.resume.empty()) throw UsageError("train: give --model, or --resume CHECKPOINT");
  if (!f.resume.empty()) check_resume_file(f.resume);
  if ((f.tensorboard_every > 0 || f.tensorboard_images) && f.tensorboard.empty())
    throw UsageError("train: --tensorboard-every and --tensorboard-images need --tensorboard DIR");
  if (f.model.empty()) f.model = f.resume;
  if (!f.resume.empty() && f.checkpoint.empty()) f.checkpoint = f.resume;
  Sequential model = model_to_train(f);

  const TrainTest data = load_data_for(model.compile_options().input_shape, f.data, f.limit, f.test_limit);
  CNN_CHECK(data.train.size() > 0, "the data set has no training images");
  model.class_names = data.train.class_names;
  CNN_CHECK(int64_t(model.class_names.size()) <= model.layer(model.size() - 1).output_shape()[0],
            "the data set has ", model.class_names.size(), " classes but the model outputs ",
            model.layer(model.size() - 1).output_shape()[0]);

  TrainingRecipe recipe = recipe_with_flags(f);
  if (!f.tensorboard.empty()) recipe.fit.callbacks.push_back(tensorboard_callback(f, data.test));
  const FitOptions& fo = recipe.fit;
  const std::string save = !f.save.empty() ? f.save : "out/" + fs::path(f.model).stem().string() + ".safetensors";
  if (fs::path(save).has_parent_path()) fs::create_directories(fs::path(save).parent_path());

  // fit would apply the data-dependent initialisers itself; done here first to log them
  // before the "Training" line (whatever --verbose says).
  // Data-parallel: only rank 0 prints, saves and evaluates (fit keeps the ranks' weights equal).
  const bool rank0 = distributed::rank() == 0;
  if (fo.resume_from.empty())
    for (const InitializationReport& r : apply_data_dependent_initializers(model, data.train.x, fo))
      if (rank0) std::printf("%s\n", r.describe().c_str());

  const int ranks = f.distributed ? distributed::size() : 1;
  if (rank0)
    std::printf("Training %s on %lld images (%s), %g epochs, batch %d, on %s%s%s\n", f.model.c_str(),
                (long long)data.train.size(), fo.validation_split > 0 ? "with a validation split" : "no validation",
                fo.epochs, fo.batch_size, to_string(model.device()).c_str(),
                model.precision() == Precision::FP32 ? "" : (", precision " + to_string(model.precision())).c_str(),
                ranks > 1 ? (", data-parallel on " + std::to_string(ranks) + " ranks (global batch " +
                             std::to_string(ranks * fo.batch_size) + ")").c_str()
                          : "");
  const auto start = std::chrono::steady_clock::now();
  const History h = model.fit(data.train.x, data.train.y, fo);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!rank0) return 0;
  model.save(save);
  std::printf("Trained %d epochs in %.1f s (%.1f s per epoch); saved %s\n", h.epochs(), seconds,
              h.epochs() ? seconds / h.epochs() : 0.0, save.c_str());
  if (data.test.size() > 0) {
    EvaluateOptions eo;
    eo.tta = recipe.tta;
    const Evaluation ev = model.evaluate(data.test.x, data.test.y, eo);
    std::printf("Test: loss %.4f, accuracy %.4f (%lld images%s)\n", ev.loss, ev.accuracy, (long long)data.test.size(),
                eo.tta.flip || eo.tta.translate ? ", test-time augmentation" : "");
  }
  return 0;
}

// Started by mpirun/srun (or --distributed): MPI first; an error on any rank, before fit as
// within it, ends the whole job naming the rank instead of leaving the others waiting.
int run_train(TrainFlags f) {
  f.distributed = f.distributed || distributed::launched_by_mpi();
  if (!f.distributed) return train(f);
  distributed::init();
  try {
    if (f.device == "cuda") distributed::use_local_gpu();
    return train(f);
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    distributed::abort(1, e.what());
  }
}

}  // namespace

Runner add_train(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  auto* sub = app.add_subcommand("train", "Train a model (JSON description) on a data set, save it, evaluate it");
  add_train_flags(sub, *flags);
  return [flags] { return run_train(*flags); };
}

// eval --confusion / --mistakes. Class names: the data set's, else the model's, padded with
// numbers to the model's output count; mistakes tiles are 64 pixels high or more (scale 64 / H).
namespace {
void write_eval_pictures(Sequential& model, const Dataset& test, const Evaluation& ev, const std::string& confusion,
                         const std::string& mistakes, int mistakes_count, int batch_size) {
  if (confusion.empty() && mistakes.empty()) return;
  std::vector<std::string> names = test.class_names.empty() ? model.class_names : test.class_names;
  names.resize(std::max(names.size(), ev.confusion.size()));
  for (size_t c = 0; c < names.size(); ++c)
    if (names[c].empty()) names[c] = std::to_string(c);
  if (!confusion.empty()) {
    const std::vector<std::string> matrix_names(names.begin(), names.begin() + ptrdiff_t(ev.confusion.size()));
    save_picture(confusion_matrix_image(ev.confusion, matrix_names), confusion,
                 "confusion matrix of " + std::to_string(test.size()) + " test images");
  }
  if (!mistakes.empty()) {
    const Tensor p = model.predict(test.x, batch_size);
    const int64_t n = p.dim(0), k = p.dim(1);
    const std::vector<float> probs = p.to_vector(), labels = test.y.to_vector();
    std::vector<int> truth(static_cast<size_t>(n)), predicted(static_cast<size_t>(n));
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = probs.data() + i * k;
      predicted[size_t(i)] = int(std::max_element(row, row + k) - row);
      truth[size_t(i)] = int(labels[size_t(i)]);
      wrong += truth[size_t(i)] != predicted[size_t(i)];
    }
    const int scale = std::max(1, 64 / int(test.x.dim(2)));
    save_picture(mistakes_grid(test.x, truth, predicted, names, mistakes_count, scale), mistakes,
                 std::to_string(std::min<int64_t>(wrong, mistakes_count)) + " of " + std::to_string(wrong) +
                     " misclassified test images");
  }
}
}  // namespace

Runner add_eval(CLI::App& app) {
  struct Args {
    std::string model, data, device = "cpu", confusion, mistakes;
    std::optional<std::string> precision;
    int batch_size = 256, mistakes_count = 32;
    int64_t limit = 0;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("eval", "Evaluate a saved model on a data set's test images");
  sub->add_option("--model", a->model, "Saved model (.safetensors)")->required();
  sub->add_option("--data", a->data, "Data folder (default: search for CIFAR-10)");
  sub->add_option("--batch-size", a->batch_size, "Batch size")->check(CLI::PositiveNumber);
  sub->add_option("--limit", a->limit, "Use only the first N test images")->check(CLI::PositiveNumber);
  sub->add_option("--device", a->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  add_precision_flag(sub, a->precision);
  sub->add_option("--confusion", a->confusion, "Also draw the confusion matrix into this PNG file");
  sub->add_option("--mistakes", a->mistakes, "Also draw misclassified test images into this PNG file");
  sub->add_option("--mistakes-count", a->mistakes_count, "At most this many images in --mistakes (default 32)")
      ->check(CLI::PositiveNumber);
  return [a] {
    Sequential model = load_model(a->model);
    CNN_CHECK(model.compiled(), "'", a->model, "' has no input_shape");
    apply_precision(model, a->precision);
    model.to(parse_device(a->device));
    const TrainTest data = load_data_for(model.compile_options().input_shape, a->data, 1, a->limit);
    CNN_CHECK(data.test.size() > 0, "the data set has no test images");
    EvaluateOptions eo;
    eo.batch_size = a->batch_size;
    eo.per_class = true;
    const Evaluation ev = model.evaluate(data.test.x, data.test.y, eo);
    const auto& names = data.test.class_names;
    std::printf("Test: loss %.4f, accuracy %.4f (%lld images)\n\nPer-class accuracy:\n", ev.loss, ev.accuracy,
                (long long)data.test.size());
    for (size_t c = 0; c < ev.per_class_accuracy.size(); ++c)
      std::printf("  %-12s %.4f\n", c < names.size() ? names[c].c_str() : std::to_string(c).c_str(),
                  ev.per_class_accuracy[c]);
    std::printf("\nConfusion matrix (rows: true class, columns: predicted):\n%12s", "");
    for (size_t c = 0; c < ev.confusion.size(); ++c)
      std::printf(" %6.6s", c < names.size() ? names[c].c_str() : std::to_string(c).c_str());
    std::printf("\n");
    for (size_t r = 0; r < ev.confusion.size(); ++r) {
      std::printf("  %-10.10s", r < names.size() ? names[r].c_str() : std::to_string(r).c_str());
      for (int64_t v : ev.confusion[r]) std::printf(" %6lld", (long long)v);
      std::printf("\n");
    }
    write_eval_pictures(model, data.test, ev, a->confusion, a->mistakes, a->mistakes_count, a->batch_size);
    return 0;
  };
}

Runner add_predict(CLI::App& app) {
  struct Args {
    std::string model;
    std::vector<std::string> images;
    int top = 3;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("predict", "Classify image files with a saved model (top-k classes)");
  sub->add_option("--model", a->model, "Saved model (.safetensors)")->required();
  sub->add_option("--top", a->top, "How many classes to show")->check(CLI::PositiveNumber);
  sub->add_option("images", a->images, "PNG/JPEG/BMP files")->required()->check(CLI::ExistingFile);
  return [a] {
    Sequential model = load_model(a->model);
    CNN_CHECK(model.compiled(), "'", a->model, "' has no input_shape");
    const Shape in = model.compile_options().input_shape;
    CNN_CHECK(in.size() == 3, "the model's input ", shape_str(in), " is not an image");
    for (const auto& path : a->images) {
      const Tensor x = load_image(path, int(in[0]), int(in[1]), int(in[2]));
      const std::vector<float> p = model.predict(x).to_vector();
      std::vector<int> order(p.size());
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int i, int j) { return p[size_t(i)] > p[size_t(j)]; });
      std::printf("%s:", path.c_str());
      for (int k = 0; k < std::min<int>(a->top, int(p.size())); ++k) {
        const int c = order[size_t(k)];
        const std::string name = size_t(c) < model.class_names.size() ? model.class_names[size_t(c)] : std::to_string(c);
        std::printf("  %s %.3f", name.c_str(), p[size_t(c)]);
      }
      std::printf("\n");
    }
    return 0;
  };
}

Runner add_summary(CLI::App& app) {
  auto model_path = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("summary", "Print a model's layers, output shapes and parameter counts");
  sub->add_option("--model", *model_path, "Model description (.json) or saved model (.safetensors)")->required();
  return [model_path] {
    Sequential model = load_model(*model_path);
    CNN_CHECK(model.compiled(), "'", *model_path, "' has no input_shape, so shapes cannot be inferred");
    model.summary();
    return 0;
  };
}

}  // namespace cnn::cli

namespace cnn::cli {

Runner add_data_dir(CLI::App& app) {
  auto name = std::make_shared<std::string>("cifar-10-batches-bin");
  auto* sub = app.add_subcommand("data-dir", "Print where a data set is found ($CNN_DATA, ./data, ../shared/data)");
  sub->add_option("--name", *name, "Data set folder name (cifar-10-batches-bin, mnist)");
  return [name] {
    std::printf("%s\n", find_data_dir(*name).c_str());
    return 0;
  };
}

}  // namespace cnn::cli

namespace cnn::cli {

Runner add_gradcheck(CLI::App& app) {
  struct Args {
    std::string model, layers;
    int batch_size = 2;
    int64_t max_elements = 32;
    uint64_t seed = 1;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("gradcheck", "Check a model's gradients against central differences (double, CPU)");
  sub->add_option("--model", a->model, "Model description (.json) or saved model")->required();
  sub->add_option("--layers", a->layers, "Only these layers, e.g. 0,3,5");
  sub->add_option("--batch-size", a->batch_size, "Batch size")->check(CLI::PositiveNumber);
  sub->add_option("--max-elements", a->max_elements, "Elements sampled per tensor")->check(CLI::PositiveNumber);
  sub->add_option("--seed", a->seed, "Seed for the random batch and the sample");
  return [a] {
    Sequential model = load_model(a->model);
    CNN_CHECK(model.compiled(), "'", a->model, "' has no input_shape");
    GradcheckOptions o;
    o.batch_size = a->batch_size;
    o.max_elements = a->max_elements;
    o.seed = a->seed;
    std::stringstream list(a->layers);
    for (std::string item; std::getline(list, item, ',');) {
      try {
        o.layers.push_back(std::stoi(item));
      } catch (const std::exception&) {
        throw UsageError("gradcheck: --layers takes comma-separated layer indices, got '" + a->layers + "'");
      }
    }
    const CheckReport r = gradcheck(model, o);
    std::printf("%s%s\n", r.table().c_str(), r.passed() ? "gradcheck: PASS" : "gradcheck: FAIL");
    return r.passed() ? 0 : 1;
  };
}

Runner add_check(CLI::App& app) {
  struct Args {
    std::string model, data;
    std::optional<std::string> precision;
    bool random = false;
    int batch_size = 8;
    uint64_t seed = 1;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand(
      "check", "Run one batch forward, backward and one optimizer step on the GPU and on the CPU reference, and "
               "compare layer by layer (exit 0: all pass, 1: a mismatch, 3: no GPU)");
  sub->add_option("--model", a->model, "Model description (.json) or saved model")->required();
  auto* random = sub->add_flag("--random", a->random, "Use a random batch (the default)");
  sub->add_option("--data", a->data, "Take the batch from this data set's training images")->excludes(random);
  sub->add_option("--batch-size", a->batch_size, "Batch size")->check(CLI::PositiveNumber);
  sub->add_option("--seed", a->seed, "Seed for the random batch");
  add_precision_flag(sub, a->precision);
  return [a] {
    Sequential model = load_model(a->model);
    CNN_CHECK(model.compiled(), "'", a->model, "' has no input_shape");
    // Both devices run under the policy; the tolerances follow it (compare_devices).
    apply_precision(model, a->precision);
    if (!cuda_available()) {
      std::fprintf(stderr, "cnn check: no GPU to compare against: %s\n", cuda_unavailable_reason().c_str());
      return 3;
    }
    CompareOptions o;
    o.batch_size = a->batch_size;
    o.seed = a->seed;
    Tensor x, y;
    if (!a->data.empty()) {
      const TrainTest data = load_data_for(model.compile_options().input_shape, a->data, a->batch_size, 1);
      x = data.train.x;
      y = data.train.y;
      o.x = &x;
      o.y = &y;
    }
    const CheckReport r = compare_devices(model, o);
    std::printf("%s%s\n", r.table().c_str(), r.passed() ? "check: PASS (GPU matches the CPU reference)" : "check: FAIL");
    return r.passed() ? 0 : 1;
  };
}

}  // namespace cnn::cli
