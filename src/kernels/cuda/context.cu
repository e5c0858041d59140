// The CUDA context (stream, cuBLAS handle, scratch), the error reporting behind the check
// macros, and the run-time probe for a usable GPU.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "cnn/error.hpp"
#include "cnn/types.hpp"
#include "kernels/cuda/context.cuh"
#include "kernels/device_memory.hpp"

namespace cnn {
namespace {

struct Probe {
  bool available = false;
  std::string reason;
};

// Asked once per process: the first CUDA call initialises the driver, which is slow, and
// the answer does not change while the process runs.
const Probe& probe() {
  static const Probe result = [] {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      return Probe{false, std::string("no CUDA device: ") + cudaGetErrorString(err)};
    }
    if (count == 0) return Probe{false, "no CUDA device: the driver reports 0 devices"};
    return Probe{true, ""};
  }();
  return result;
}

// CNN_CUDA_CONV_KERNELS, parsed once where a context is made: unset or "default" keeps
// the implicit-GEMM kernels, "fast" turns on the specialised ones, "tune" times them all on
// first use and keeps the fastest; anything else is refused.
cuda::ConvKernels conv_kernels_from_environment() {
  const char* value = std::getenv("CNN_CUDA_CONV_KERNELS");
  if (!value || std::string(value).empty() || std::string(value) == "default") return cuda::ConvKernels::Default;
  if (std::string(value) == "fast") return cuda::ConvKernels::Fast;
  if (std::string(value) == "tune") return cuda::ConvKernels::Tuned;
  fail("CNN_CUDA_CONV_KERNELS must be 'default', 'fast' or 'tune', not '", value, "'");
}

}  // namespace

bool built_with_cuda() { return true; }
bool cuda_available() { return probe().available; }
std::string cuda_unavailable_reason() { return probe().reason; }

namespace {
std::atomic<int64_t> kernel_launches{0};
}
int64_t cuda_kernel_launches() { return kernel_launches.load(std::memory_order_relaxed); }

namespace cuda {

namespace detail {

void count_launch() { kernel_launches.fetch_add(1, std::memory_order_relaxed); }

void cuda_failed(cudaError_t err, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // consume it; sticky errors stay reported by every later call anyway
  fail("CUDA error: ", call, " failed at ", file, ":", line, ": ", cudaGetErrorName(err), " (",
       cudaGetErrorString(err), ")");
}

void cublas_failed(cublasStatus_t status, const char* call, const char* file, int line) {
  (void)cudaGetLastError();
  fail("cuBLAS error: ", call, " failed at ", file, ":", line, ": ", cublasGetStatusName(status), " (",
       cublasGetStatusString(status), ")");
}

}  // namespace detail

Context::~Context() {
  // Errors are ignored here: a destructor must not throw, and a failed teardown leaves
  // nothing the caller could act on.
  if (stream) (void)cudaStreamSynchronize(stream);
  for (auto& [key, exec] : graphs) (void)cudaGraphExecDestroy(exec);
  for (auto& slot : staging) {
    if (slot.host) (void)cudaFreeHost(slot.host);
    if (slot.copied) (void)cudaEventDestroy(slot.copied);
  }
  if (scratch_) memory::cuda_release(scratch_);
  if (cublas) (void)cublasDestroy(cublas);
  if (stream) (void)cudaStreamDestroy(stream);
  (void)cudaGetLastError();
}

float* Context::scratch(size_t count) {
  if (count <= scratch_count_) return scratch_;
  if (scratch_) {
    // Kernels queued earlier may still read the old buffer; once it is back in the cache
    // another user could be handed it.
    CNN_CUDA_CHECK(cudaStreamSynchronize(stream));
    memory::cuda_release(scratch_);
    scratch_ = nullptr;
    scratch_count_ = 0;
  }
  scratch_ = static_cast<float*>(memory::cuda_allocate(count * sizeof(float)));
  scratch_count_ = count;
  return scratch_;
}

Context* create_context() {
  const Probe& p = probe();
  CNN_CHECK(p.available, "cnn::cuda::create_context: cannot use the CUDA backend: ", p.reason);
  auto ctx = std::make_unique<Context>();
  ctx->conv_kernels = conv_kernels_from_environment();
  ctx->conv_mma = parse_conv_mma(std::getenv("CNN_CUDA_CONV_MMA"));
  CNN_CUDA_CHECK(cudaGetDevice(&ctx->device));
  CNN_CUDA_CHECK(cudaDeviceGetAttribute(&ctx->sm_count, cudaDevAttrMultiProcessorCount, ctx->device));
  cudaDeviceProp properties{};
  CNN_CUDA_CHECK(cudaGetDeviceProperties(&properties, ctx->device));
  ctx->gpu_name = properties.name;
  CNN_CUDA_CHECK(cudaStreamCreate(&ctx->stream));  // default flags: blocking (see context.cuh)
  CNN_CUBLAS_CHECK(cublasCreate(&ctx->cublas));
  CNN_CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
  // Full FP32 products (no TF32 tensor cores) so results match the CPU reference.
  CNN_CUBLAS_CHECK(cublasSetMathMode(ctx->cublas, CUBLAS_DEFAULT_MATH));
  return ctx.release();
}

void destroy_context(Context* ctx) { delete ctx; }

bool conv_mma_enabled(const Context& ctx) { return ctx.conv_mma; }

void synchronize(Context& ctx) {
  CNN_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  CNN_CUDA_CHECK(cudaGetLastError());
}

void* upload_staging(Context& ctx, size_t bytes) {
  const int index = ctx.staging_next;
  ctx.staging_next = (index + 1) % Context::kStagingSlots;
  Context::StagingSlot& slot = ctx.staging[index];
  // Waits only for this slot's previous copy, queued kStagingSlots uploads ago.
  if (slot.pending) CNN_CUDA_CHECK(cudaEventSynchronize(slot.copied));
  slot.pending = false;
  if (!slot.copied) CNN_CUDA_CHECK(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
  if (slot.bytes < bytes) {
    if (slot.host) CNN_CUDA_CHECK(cudaFreeHost(slot.host));
    slot.host = nullptr;
    slot.bytes = 0;
    CNN_CUDA_CHECK(cudaMallocHost(&slot.host, bytes));
    slot.bytes = bytes;
  }
  ctx.staging_last = index;
  return slot.host;
}

void upload(Context& ctx, void* device_dst, const void* staging, size_t bytes) {
  CNN_CHECK(ctx.staging_last >= 0 && ctx.staging[ctx.staging_last].host == staging &&
                bytes <= ctx.staging[ctx.staging_last].bytes,
            "cnn::cuda::upload: the source must be the buffer the last upload_staging call returned");
  Context::StagingSlot& slot = ctx.staging[ctx.staging_last];
  CNN_CUDA_CHECK(cudaMemcpyAsync(device_dst, staging, bytes, cudaMemcpyHostToDevice, ctx.stream));
  CNN_CUDA_CHECK(cudaEventRecord(slot.copied, ctx.stream));
  slot.pending = true;
  ctx.staging_last = -1;
}

void capture_begin(Context& ctx) {
  CNN_CUDA_CHECK(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeThreadLocal));
}

void capture_end(Context& ctx, int64_t key) {
  cudaGraph_t graph = nullptr;
  CNN_CUDA_CHECK(cudaStreamEndCapture(ctx.stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  if (err != cudaSuccess) detail::cuda_failed(err, "cudaGraphInstantiate", __FILE__, __LINE__);
  auto [it, fresh] = ctx.graphs.emplace(key, exec);
  if (!fresh) {
    (void)cudaGraphExecDestroy(it->second);
    it->second = exec;
  }
}

bool replay(Context& ctx, int64_t key) {
  const auto it = ctx.graphs.find(key);
  if (it == ctx.graphs.end()) return false;
  CNN_CUDA_CHECK(cudaGraphLaunch(it->second, ctx.stream));
  return true;
}

void clear_graphs(Context& ctx) {
  for (auto& [key, exec] : ctx.graphs) (void)cudaGraphExecDestroy(exec);
  ctx.graphs.clear();
}

}  // namespace cuda
}  // namespace cnn
