// cnn bench: training throughput of a model description on synthetic data.
//
//   cnn bench --model models/lenet5.json --device cpu --batch-size 128
//   cnn bench --model models/cifar_cnn.json --device cuda --batch-size 128 --json
//
// The model is built from its JSON description (compile settings included); one batch of
// seeded random inputs in [0, 1) and random labels is copied to the device once. After
// `warmup` steps, `repeats` runs of `steps` optimizer steps are timed around
// Sequential::train_steps (which waits for the device at its end), and the median, min and
// max over the repeats are reported. A last, separate run with per-layer profiling on
// (which synchronises after every layer, so it is a little slower) gives the breakdown.
// tools/bench_torch.py measures PyTorch the same way; tools/compare.sh runs both.
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.hpp"

namespace cnn::cli {
namespace {

struct BenchArgs {
  std::string model, device = "cpu";
  std::optional<std::string> precision;
  int batch_size = 0, steps = 20, warmup = 5, repeats = 7, threads = 0;
  uint64_t seed = 1;
  bool json = false, no_profile = false, tune = false;
  std::string tuning_file;
};

// The CPU kernels' instruction set (AVX-512, AVX2 or the generic reference code).
std::string cpu_isa() { return cpu_instruction_set(); }

struct Spread {
  double median = 0, min = 0, max = 0;
};

Spread spread_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return {median, v.front(), v.back()};
}

// Multiply-adds of the conv and dense layers, counted as 2 FLOPs each (pooling, activations,
// the loss and the optimizer are left out: together well under 1% for these models).
// Training = forward + weight gradient + input gradient, except that the first layer with
// weights needs no input gradient (nothing below it learns), as in PyTorch.
struct Flops {
  double forward = 0, train = 0;
};

Flops count_flops(const Sequential& model) {
  Flops f;
  bool below_has_params = false;
  for (size_t i = 0; i < model.size(); ++i) {
    const Layer& l = model.layer(i);
    double fwd = 0;
    const nlohmann::json c = l.config();
    if (l.type() == "Conv2D") {
      const Shape& in = l.input_shape();
      const Shape& out = l.output_shape();
      const double k = double(c["kernel_size"][0].get<int>()) * c["kernel_size"][1].get<int>();
      fwd = 2.0 * double(out[0]) * double(out[1]) * double(out[2]) * double(in[0]) * k;
    } else if (l.type() == "Dense") {
      fwd = 2.0 * double(shape_numel(l.input_shape())) * double(shape_numel(l.output_shape()));
    }
    if (fwd == 0) continue;
    f.forward += fwd;
    f.train += fwd * (l.trainable ? 2 : 1) + (below_has_params ? fwd : 0);
    below_has_params = below_has_params || l.trainable;
  }
  return f;
}

// Synthetic data: inputs uniform in [0, 1), one random class per row; dense targets
// (one-hot rows) for the losses that need them.
std::pair<Tensor, Tensor> synthetic_batch(const Sequential& model, int n, uint64_t seed) {
  const CompileOptions& co = model.compile_options();
  Shape shape{n};
  shape.insert(shape.end(), co.input_shape.begin(), co.input_shape.end());
  Tensor x(shape);
  Rng rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = float(rng.uniform());
  const int64_t classes = shape_numel(model.layer(model.size() - 1).output_shape());
  const bool dense = co.loss == "mse" || co.loss == "mean_squared_error" || co.loss == "bce" ||
                     co.loss == "binary_crossentropy" || classes == 1;
  Tensor y = dense ? Tensor({n, classes}) : Tensor({n});
  for (int i = 0; i < n; ++i) {
    const int64_t label = int64_t(rng.below(uint64_t(classes)));
    if (dense) y.data()[int64_t(i) * classes + label] = 1.0f;
    else y.data()[i] = float(label);
  }
  return {x, y};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// CPU time of the whole process (all threads), seconds: next to the wall time it shows how
// much of a step the threads really ran, and how much other processes took the cores.
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

int run_bench(const BenchArgs& a) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  const int threads = omp_get_max_threads();
  const Device device = parse_device(a.device);
  if (device == Device::CUDA && !cuda_available())
    fail("--device cuda: ", cuda_unavailable_reason());
  CNN_CHECK(!(a.tune || !a.tuning_file.empty()) || device == Device::CUDA,
            "--tune and --tuning-file time the CUDA convolution kernels: they need --device cuda");
  CNN_CHECK(a.tuning_file.empty() || a.tune, "--tuning-file holds the choices of --tune: give both");
  // The CUDA context reads both when the model moves to the GPU (conv_tuner.cuh).
  if (a.tune) ::setenv("CNN_CUDA_CONV_KERNELS", "tune", 1);
  if (!a.tuning_file.empty()) ::setenv("CNN_CUDA_CONV_TUNING_FILE", a.tuning_file.c_str(), 1);

  Sequential model = load_model(a.model);
  CNN_CHECK(model.compiled(), "'", a.model, "' has no input_shape, so it cannot be compiled");
  apply_precision(model, a.precision);
  cuda_memory_reset_peak();
  model.to(device);
  const auto [x, y] = synthetic_batch(model, a.batch_size, a.seed);
  const Flops flops = count_flops(model);
  const std::string name = std::filesystem::path(a.model).stem().string();

  // The first step at this batch size runs eagerly (CUDA graphs capture the second): its
  // kernel launches are the step's (with --tune also the candidates timed on first use).
  const int64_t launches_before = cuda_kernel_launches();
  model.train_steps(x, y, std::min(a.warmup, 1));
  const int64_t launches_per_step = cuda_kernel_launches() - launches_before;
  model.train_steps(x, y, a.warmup - std::min(a.warmup, 1));
  std::vector<double> step_ms, images_per_s, cpu_ms;
  for (int r = 0; r < a.repeats; ++r) {
    const double c0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    model.train_steps(x, y, a.steps);
    const double s = seconds_since(t0);
    cpu_ms.push_back((process_cpu_seconds() - c0) * 1e3 / a.steps);
    step_ms.push_back(s * 1e3 / a.steps);
    images_per_s.push_back(double(a.batch_size) * a.steps / s);
  }
  const Spread ms = spread_of(step_ms), ips = spread_of(images_per_s), cpu = spread_of(cpu_ms);
  // The model, its arena, its layers' buffers and the batch, as training at this size holds them.
  const double peak_mib = double(cuda_memory_peak_bytes()) / double(1 << 20);

  std::vector<Sequential::LayerTiming> layers;
  if (!a.no_profile) {
    model.set_profiling(true);
    model.reset_timings();
    model.train_steps(x, y, a.steps);
    layers = model.layer_timings();
    model.set_profiling(false);
  }
  double profiled_total = 0;
  for (const auto& l : layers) profiled_total += l.forward_ms + l.backward_ms;

  if (a.json) {
    nlohmann::json j;
    j["framework"] = "cnn";
    j["model"] = name;
    j["model_file"] = a.model;
    j["device"] = a.device;
    j["precision"] = to_string(model.precision());
    j["batch_size"] = a.batch_size;
    j["steps"] = a.steps;
    j["warmup"] = a.warmup;
    j["repeats"] = a.repeats;
    j["threads"] = threads;
    j["seed"] = a.seed;
    j["images_per_s"] = {{"median", ips.median}, {"min", ips.min}, {"max", ips.max}};
    j["ms_per_step"] = {{"median", ms.median}, {"min", ms.min}, {"max", ms.max}};
    j["ms_per_step_all"] = step_ms;
    j["cpu_ms_per_step"] = {{"median", cpu.median}, {"min", cpu.min}, {"max", cpu.max}};
    j["isa"] = cpu_isa();
    j["train_flops_per_image"] = flops.train;
    j["forward_flops_per_image"] = flops.forward;
    j["gflops"] = flops.train * ips.median / 1e9;
    if (device == Device::CUDA && a.warmup > 0) j["kernel_launches_per_step"] = launches_per_step;
    if (device == Device::CUDA) j["peak_device_mib"] = peak_mib;
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& l : layers)
      rows.push_back({{"name", l.name},
                      {"forward_ms", l.forward_ms / a.steps},
                      {"backward_ms", l.backward_ms / a.steps}});
    j["layers_ms_per_step"] = rows;
    if (a.tune) j["conv_tuning"] = cuda_conv_tuning_report();
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }

  std::printf("Model %s on %s%s, batch %d, %d thread%s (CPU kernels: %s); %d warm-up steps, %d repeats of %d steps\n",
              name.c_str(), a.device.c_str(),
              model.precision() == Precision::FP32 ? "" : (" (" + to_string(model.precision()) + ")").c_str(), a.batch_size, threads, threads == 1 ? "" : "s", cpu_isa().c_str(),
              a.warmup, a.repeats, a.steps);
  std::printf("  images/s   %10.1f  (min %.1f, max %.1f)\n", ips.median, ips.min, ips.max);
  std::printf("  ms/step    %10.3f  (min %.3f, max %.3f)\n", ms.median, ms.min, ms.max);
  std::printf("  CPU ms/step%10.3f  (all threads; min %.3f, max %.3f)\n", cpu.median, cpu.min, cpu.max);
  if (device == Device::CUDA && a.warmup > 0)
    std::printf("  launches   %10lld  CUDA kernels in one training step (a cuBLAS GEMM counted once)%s\n",
                (long long)launches_per_step, a.tune ? ", the tuner's timing runs included" : "");
  if (device == Device::CUDA)
    std::printf("  GPU memory %10.1f  MiB at the peak (the library's blocks in use; CUDA's own not included)\n",
                peak_mib);
  std::printf("  FLOPs      %10.3f MFLOP per training image (conv + dense); %.1f GFLOP/s at the median\n",
              flops.train / 1e6, flops.train * ips.median / 1e9);
  if (layers.empty()) return 0;
  std::printf("\nPer-layer time, ms per step (one profiled run of %d steps; it synchronises after every layer)\n",
              a.steps);
  std::printf("  %-24s %10s %10s %10s %7s\n", "layer", "forward", "backward", "total", "share");
  for (const auto& l : layers) {
    const double f = l.forward_ms / a.steps, b = l.backward_ms / a.steps;
    std::printf("  %-24s %10.3f %10.3f %10.3f %6.1f%%\n", l.name.c_str(), f, b, f + b,
                profiled_total > 0 ? 100.0 * (l.forward_ms + l.backward_ms) / profiled_total : 0.0);
  }
  std::printf("  %-24s %10s %10s %10.3f\n", "sum", "", "", profiled_total / a.steps);
  if (a.tune) std::printf("\nConvolution kernels timed on first use (CNN_CUDA_CONV_KERNELS=tune):\n%s",
                          cuda_conv_tuning_report().c_str());
  return 0;
}

}  // namespace

Runner add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* sub = app.add_subcommand("bench", "Measure training throughput (images/s) on synthetic data, per-layer times");
  sub->add_option("--model", a->model, "Model description (models/*.json) or saved model")->required();
  sub->add_option("--device", a->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  add_precision_flag(sub, a->precision);
  sub->add_option("--batch-size", a->batch_size, "Images per training step")->required()->check(CLI::PositiveNumber);
  sub->add_option("--steps", a->steps, "Training steps per timed repeat (default 20)")->check(CLI::PositiveNumber);
  sub->add_option("--warmup", a->warmup, "Untimed steps first (default 5)")->check(CLI::NonNegativeNumber);
  sub->add_option("--repeats", a->repeats, "Timed repeats; median, min and max are reported (default 7)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--threads", a->threads, "CPU threads (default: OpenMP's, e.g. $OMP_NUM_THREADS or all cores)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--seed", a->seed, "Seed of the synthetic inputs and labels (default 1)");
  sub->add_flag("--json", a->json, "Print one JSON object instead of the tables");
  sub->add_flag("--no-profile", a->no_profile, "Skip the per-layer profiled run");
  sub->add_flag("--tune", a->tune,
                "Let the GPU choose each convolution's kernels (time every candidate on first use) and print the table");
  sub->add_option("--tuning-file", a->tuning_file,
                  "Read the convolution tuning table from this file and write new entries back (with --tune)");
  return [a] { return run_bench(*a); };
}

}  // namespace cnn::cli
