// CNN_CUDA_CONV_KERNELS=tune: times the candidate convolution kernels on first use and keeps
// the fastest correct one per GPU model, pass and shape (conv_tuner.cuh).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "cnn/error.hpp"
#include "cnn/types.hpp"
#include "kernels/cuda/conv_tuner.cuh"

namespace cnn {
namespace ops::cuda {
namespace {

constexpr int kTimedRuns = 5;  // after one warm-up run; the fastest counts
constexpr double kAgreement = 1e-3;

std::mutex table_mutex;
bool file_read = false;

const char* tuning_file() {
  const char* path = std::getenv("CNN_CUDA_CONV_TUNING_FILE");
  return path && *path ? path : nullptr;
}

// Once per process, under table_mutex: the entries of CNN_CUDA_CONV_TUNING_FILE, when it exists.
void read_tuning_file_once() {
  if (file_read) return;
  file_read = true;
  const char* path = tuning_file();
  if (!path || !std::filesystem::exists(path)) return;
  std::ifstream in(path, std::ios::binary);
  CNN_CHECK(in, "cannot read the conv tuning file ", path, " (CNN_CUDA_CONV_TUNING_FILE)");
  std::stringstream text;
  text << in.rdbuf();
  const ConvTuningTable from_file = ConvTuningTable::parse(text.str(), path);
  for (const ConvTuningEntry& e : from_file.entries()) conv_tuning_table().record(e);
}

// Under table_mutex: the whole table to CNN_CUDA_CONV_TUNING_FILE, through a temporary file
// renamed over it, so a crash never leaves half a table.
void write_tuning_file() {
  const char* path = tuning_file();
  if (!path) return;
  const std::string temporary = std::string(path) + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << conv_tuning_table().to_text();
    out.flush();
    CNN_CHECK(out, "cannot write the conv tuning file ", temporary, " (CNN_CUDA_CONV_TUNING_FILE)");
  }
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  CNN_CHECK(!ec, "cannot rename ", temporary, " to ", path, ": ", ec.message());
}

bool capturing(Context& ctx) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CNN_CUDA_CHECK(cudaStreamIsCapturing(ctx.stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

double fastest_run_ms(Context& ctx, const ConvCandidate& c) {
  cudaEvent_t start = nullptr, stop = nullptr;
  CNN_CUDA_CHECK(cudaEventCreate(&start));
  CNN_CUDA_CHECK(cudaEventCreate(&stop));
  c.run();
  float best = std::numeric_limits<float>::infinity();
  for (int i = 0; i < kTimedRuns; ++i) {
    CNN_CUDA_CHECK(cudaEventRecord(start, ctx.stream));
    c.run();
    CNN_CUDA_CHECK(cudaEventRecord(stop, ctx.stream));
    CNN_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CNN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    best = std::min(best, ms);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return best;
}

std::vector<std::vector<float>> download(Context& ctx, std::span<const ConvOutput> outputs) {
  std::vector<std::vector<float>> host;
  for (const ConvOutput& o : outputs) {
    host.emplace_back(o.data ? size_t(o.count) : 0);
    if (o.data)
      CNN_CUDA_CHECK(cudaMemcpyAsync(host.back().data(), o.data, size_t(o.count) * sizeof(float),
                                     cudaMemcpyDeviceToHost, ctx.stream));
  }
  CNN_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  return host;
}

bool agrees(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& reference) {
  for (size_t t = 0; t < reference.size(); ++t) {
    double largest = 0;
    for (float v : reference[t]) largest = std::max(largest, double(std::fabs(v)));
    const double allowed = kAgreement * std::max(largest, 1e-30);
    for (size_t i = 0; i < reference[t].size(); ++i) {
      const float a = got[t][i], b = reference[t][i];
      if (std::isnan(a) && std::isnan(b)) continue;
      if (!(std::fabs(double(a) - double(b)) <= allowed)) return false;
    }
  }
  return true;
}

ConvTuningEntry tune(Context& ctx, ConvPass pass, const Conv2DShape& s, std::span<const ConvCandidate> candidates,
                     std::span<const ConvOutput> outputs) {
  CNN_CHECK(!candidates.empty() && candidates[0].kernel == ConvKernel::Gemm,
            "run_tuned_conv: the first candidate must be the implicit GEMM");
  ConvTuningEntry entry{ctx.gpu_name, pass, s, ConvKernel::Gemm, {}};
  std::vector<std::vector<float>> reference;
  double best = std::numeric_limits<double>::infinity();
  for (const ConvCandidate& c : candidates) {
    ConvCandidateTime t{c.kernel, fastest_run_ms(ctx, c), true};
    if (c.kernel == ConvKernel::Gemm)
      reference = download(ctx, outputs);
    else
      t.correct = agrees(download(ctx, outputs), reference);
    if (t.correct && t.ms < best) {
      best = t.ms;
      entry.kept = c.kernel;
    }
    entry.candidates.push_back(t);
  }
  return entry;
}

}  // namespace

ConvTuningTable& conv_tuning_table() {
  static ConvTuningTable table;
  return table;
}

void run_tuned_conv(Context& ctx, ConvPass pass, const Conv2DShape& s, std::span<const ConvCandidate> candidates,
                    std::span<const ConvOutput> outputs) {
  ConvKernel kept = ConvKernel::Gemm;
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(table_mutex);
    read_tuning_file_once();
    if (const ConvTuningEntry* e = conv_tuning_table().find(ctx.gpu_name, pass, s)) {
      kept = e->kept;
      known = true;
    }
  }
  if (!known && !capturing(ctx)) {
    ConvTuningEntry entry = tune(ctx, pass, s, candidates, outputs);
    kept = entry.kept;
    std::lock_guard<std::mutex> lock(table_mutex);
    conv_tuning_table().record(std::move(entry));
    write_tuning_file();
  }
  for (const ConvCandidate& c : candidates) {
    if (c.kernel == kept) return c.run();
  }
  fail("conv tuning: the table keeps kernel '", to_string(kept), "' for the ", to_string(pass), " pass of ",
       conv_shape_text(s), " on ", ctx.gpu_name, ", which does not take that shape (a stale tuning file?)");
}

}  // namespace ops::cuda

std::string cuda_conv_tuning_report() {
  std::lock_guard<std::mutex> lock(ops::cuda::table_mutex);
  return ops::conv_tuning_report(ops::cuda::conv_tuning_table());
}

}  // namespace cnn
