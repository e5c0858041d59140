// The CUDA runtime layer: availability reporting, contexts, the caching allocator, the
// error-check macros, and ordering between Tensor copies and the context's stream.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cnn/tensor.hpp"
#include "gpu_compare.hpp"
#include "kernels/cuda/context.cuh"
#include "kernels/nccl.hpp"

namespace cnn {
namespace {
using gputest::DeviceBuffer;
using gputest::GpuTest;
using gputest::OpCheck;
using ::testing::HasSubstr;

// Runs with or without a GPU: this binary always has the backend compiled in.
TEST(CudaBackend, ReportsWhetherAGpuIsUsable) {
  EXPECT_TRUE(built_with_cuda());
  if (cuda_available()) {
    EXPECT_EQ(cuda_unavailable_reason(), "");
  } else {
    EXPECT_THAT(cuda_unavailable_reason(), HasSubstr("no CUDA device"));
    try {
      cuda::create_context();
      ADD_FAILURE() << "create_context succeeded without a GPU";
    } catch (const Error& e) {
      EXPECT_THAT(std::string(e.what()), HasSubstr("no CUDA device"));
    }
  }
}

// NCCL, the path GPU ranks all-reduce their gradients on (docs/DISTRIBUTED.md), on this one
// GPU as a communicator of one rank (no MPI: one process is the whole world; two ranks would
// need two GPUs, which tools/gpu_check.sh runs where it finds them). The mean over one rank is
// its values times the rank's weight, exactly (one float multiply; ncclAvg over 1 divides by 1).
#if CNN_WITH_NCCL
cuda::NcclComm* one_rank_nccl() {
  unsigned char id[cuda::kNcclIdBytes] = {};
  cuda::nccl_unique_id(id);
  return cuda::nccl_create(id, 0, 1);
}
#endif

TEST_F(GpuTest, NcclAllReduceMeanOverOneRankIsTheWeightedValuesAlsoInBuckets) {
#if !CNN_WITH_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  cuda::NcclComm* comm = one_rank_nccl();
  std::vector<float> x(1001);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i) * 0.37f - 150.f;
  DeviceBuffer data(x.size() * sizeof(float));
  data.upload(x);
  cuda::nccl_allreduce_mean(*comm, ctx(), static_cast<float*>(data.get()), int64_t(x.size()), 0.75f);
  cuda::nccl_allreduce_mean(*comm, ctx(), static_cast<float*>(data.get()), 0, 2.f);  // nothing to do
  CNN_CUDA_CHECK(cudaStreamSynchronize(ctx().stream));
  const std::vector<float> y = data.download<float>();
  // The bucketed form: two buckets on the communicator's stream, joined into the context's
  // stream; waiting for the context's stream alone must see both done.
  data.upload(x);
  float* d = static_cast<float*>(data.get());
  cuda::nccl_start_bucket(*comm, ctx(), d + 500, int64_t(x.size()) - 500, 0.5f);
  cuda::nccl_start_bucket(*comm, ctx(), d, 500, 0.5f);
  cuda::nccl_join_buckets(*comm, ctx());
  CNN_CUDA_CHECK(cudaStreamSynchronize(ctx().stream));
  const std::vector<float> z = data.download<float>();
  cuda::nccl_destroy(comm);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], x[i] * 0.75f) << "value " << i;
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(z[i], x[i] * 0.5f) << "bucketed, value " << i;
#endif
}

// The sum of doubles synchronised BatchNormalization all-reduces on GPU ranks, over one rank:
// the values, exactly, also with a gradient bucket in flight on the same communicator (both
// run on the bucket stream, in the order issued), and ordered before the context's later work.
TEST_F(GpuTest, NcclSumOfDoublesOverOneRankIsTheValuesInOrderWithBuckets) {
#if !CNN_WITH_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  cuda::NcclComm* comm = one_rank_nccl();
  std::vector<float> g(3000);
  for (size_t i = 0; i < g.size(); ++i) g[i] = float(i) * 0.5f - 700.f;
  std::vector<double> v(33);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 1.0 / double(i + 3) - 0.1;  // not representable in float
  DeviceBuffer grads(g.size() * sizeof(float)), sums(v.size() * sizeof(double));
  grads.upload(g);
  sums.upload(v);
  cuda::nccl_start_bucket(*comm, ctx(), static_cast<float*>(grads.get()), int64_t(g.size()), 0.25f);
  cuda::nccl_allreduce_sum(*comm, ctx(), static_cast<double*>(sums.get()), int64_t(v.size()));
  cuda::nccl_allreduce_sum(*comm, ctx(), static_cast<double*>(sums.get()), 0);  // nothing to do
  cuda::nccl_join_buckets(*comm, ctx());
  CNN_CUDA_CHECK(cudaStreamSynchronize(ctx().stream));
  const std::vector<float> g_after = grads.download<float>();
  const std::vector<double> v_after = sums.download<double>();
  cuda::nccl_destroy(comm);
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v_after[i], v[i]) << "sum " << i;
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g_after[i], g[i] * 0.25f) << "bucket value " << i;
#endif
}

TEST_F(GpuTest, ContextsAreIndependentAndSynchronize) {
  cuda::Context* other = cuda::create_context();
  EXPECT_NE(other->stream, ctx().stream);
  EXPECT_GE(other->sm_count, 1);
  cuda::synchronize(*other);
  cuda::synchronize(ctx());
  cuda::destroy_context(other);
}

// ---- Caching allocator ------------------------------------------------------------------------
TEST_F(GpuTest, AllocatorReusesReleasedBlocksOfTheSameSizeClass) {
  void* a = memory::allocate(1000, Device::CUDA);
  void* b = memory::allocate(1000, Device::CUDA);
  EXPECT_NE(a, b);
  memory::release(a, Device::CUDA);
  void* c = memory::allocate(700, Device::CUDA);  // 700 and 1000 both round up to 1024 bytes
  EXPECT_EQ(c, a);
  // Above 1 MiB: 3 MiB + 1 and 3 MiB + 4000 share the 3.5 MiB class.
  void* big = memory::allocate((3 << 20) + 1, Device::CUDA);
  memory::release(big, Device::CUDA);
  void* big2 = memory::allocate((3 << 20) + 4000, Device::CUDA);
  EXPECT_EQ(big2, big);
  memory::release(big2, Device::CUDA);
  memory::release(b, Device::CUDA);
  memory::release(c, Device::CUDA);
  EXPECT_EQ(memory::allocate(0, Device::CUDA), nullptr);
}

TEST_F(GpuTest, AllocatorOutOfMemoryNamesTheRequestAndFreeMemory) {
  const size_t huge = size_t(1) << 50;  // 1 PiB
  try {
    memory::allocate(huge, Device::CUDA);
    FAIL() << "allocating 1 PiB succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_THAT(msg, HasSubstr("out of memory"));
    EXPECT_THAT(msg, HasSubstr(std::to_string(huge) + " bytes"));
    EXPECT_THAT(msg, HasSubstr("free of"));
  }
  // The failed cudaMalloc must not surface as an error at the next launch check.
  OpCheck op(ctx(), 81);
  const int x = op.input("x", 1000), y = op.output("y", 1000);
  op.run([&](auto& d) { ops::cuda::activation_forward(ctx(), {Activation::ReLU}, 1000, d[x], d[y]); },
         [&](auto& h) { ops::cpu::activation_forward<double>({Activation::ReLU}, 1000, h[x], h[y]); });
}

// cuda_memory_peak_bytes (cnn bench's "GPU memory"): blocks in use count at their size class,
// released ones stop counting, and a reset starts from what is in use now.
TEST_F(GpuTest, AllocatorReportsThePeakOfTheBytesInUse) {
  cuda_memory_reset_peak();
  const size_t base = cuda_memory_peak_bytes();
  {
    DeviceBuffer a(3 << 20), b(1 << 20);
    EXPECT_GE(cuda_memory_peak_bytes(), base + (4 << 20));
  }
  EXPECT_GE(cuda_memory_peak_bytes(), base + (4 << 20)) << "the peak outlives the blocks";
  cuda_memory_reset_peak();
  EXPECT_EQ(cuda_memory_peak_bytes(), base) << "after a reset, the peak is what is in use";
  DeviceBuffer c(1 << 20);
  EXPECT_EQ(cuda_memory_peak_bytes(), base + (1 << 20));  // 1 MiB is a size class of its own
}

TEST_F(GpuTest, AllocatorIsThreadSafe) {
  auto worker = [](int seed) {
    std::vector<void*> live;
    for (int i = 0; i < 300; ++i) {
      live.push_back(memory::allocate(size_t(64 + (i * 7919 + seed * 104729) % 5000), Device::CUDA));
      if (i % 3 == 2) {
        memory::release(live.front(), Device::CUDA);
        live.erase(live.begin());
      }
    }
    for (void* p : live) memory::release(p, Device::CUDA);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t);
  for (auto& t : threads) t.join();
  // Every block is back in the cache and handed out once at a time.
  std::set<void*> seen;
  std::vector<void*> blocks;
  for (int i = 0; i < 50; ++i) {
    blocks.push_back(memory::allocate(4096, Device::CUDA));
    EXPECT_TRUE(seen.insert(blocks.back()).second);
  }
  for (void* p : blocks) memory::release(p, Device::CUDA);
}

// ---- Error checks --------------------------------------------------------------------------
TEST_F(GpuTest, CudaCheckThrowsNamingTheCallAndLocation) {
  DeviceBuffer buf(64);
  float host[16] = {};
  try {
    CNN_CUDA_CHECK(cudaMemcpy(buf.get(), host, sizeof(host), static_cast<cudaMemcpyKind>(12345)));
    FAIL() << "a bad cudaMemcpy direction was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_THAT(msg, HasSubstr("cudaMemcpy(buf.get(), host, sizeof(host), static_cast<cudaMemcpyKind>(12345))"));
    EXPECT_THAT(msg, HasSubstr("test_gpu_runtime.cpp"));
    EXPECT_THAT(msg, HasSubstr(cudaGetErrorName(cudaErrorInvalidMemcpyDirection)));
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the failure must not linger as CUDA's last error";
}

TEST_F(GpuTest, CublasCheckThrowsNamingTheCall) {
  const float one = 1.f;
  try {
    CNN_CUBLAS_CHECK(cublasSgemm(ctx().cublas, CUBLAS_OP_N, CUBLAS_OP_N, -1, 1, 1, &one, nullptr, 1, nullptr, 1,
                                 &one, nullptr, 1));
    FAIL() << "cublasSgemm with m = -1 was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_THAT(msg, HasSubstr("cublasSgemm(ctx().cublas"));
    EXPECT_THAT(msg, HasSubstr("CUBLAS_STATUS_INVALID_VALUE"));
  }
}

// ---- Tensors on the device -----------------------------------------------------------------
TEST_F(GpuTest, TensorRoundTripsThroughTheDevice) {
  std::vector<float> values(1000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i) * 0.5f - 3.f;
  const Tensor host = Tensor::from_vector({10, 100}, values);
  const Tensor dev = host.to(Device::CUDA);
  EXPECT_EQ(dev.device(), Device::CUDA);
  EXPECT_EQ(dev.clone().to_vector(), values);
  EXPECT_EQ(Tensor({3, 5}, Device::CUDA).to_vector(), std::vector<float>(15, 0.f));
  EXPECT_EQ(Tensor::full({7}, 2.5f, Device::CUDA).to_vector(), std::vector<float>(7, 2.5f));
}

// Tensor uploads and downloads use plain cudaMemcpy; the context's stream is a blocking
// stream, so they are ordered with its kernels without any explicit synchronize.
TEST_F(GpuTest, TensorCopiesAreOrderedWithTheContextStream) {
  const auto s = ops::Conv2DShape::make(64, 32, 32, 32, 64, 3, 3, 1, 1, Padding::Same);
  Rng rng(5);
  std::vector<float> xv(size_t(s.x_size())), wv(size_t(s.w_size()));
  for (auto& v : xv) v = float(rng.uniform(-1, 1));
  for (auto& v : wv) v = float(rng.uniform(-1, 1));
  const Tensor x = Tensor::from_vector({s.n, s.c_in, s.h_in, s.w_in}, xv).to(Device::CUDA);
  const Tensor w = Tensor::from_vector({s.c_out, s.c_in, s.k_h, s.k_w}, wv).to(Device::CUDA);
  Tensor y({s.n, s.c_out, s.h_out, s.w_out}, Device::CUDA);
  for (int rep = 0; rep < 3; ++rep)  // queue a few milliseconds of work
    ops::cuda::conv2d_forward(ctx(), s, x.data(), w.data(), nullptr, {Activation::Linear}, y.data());
  const std::vector<float> got = y.to_vector();  // no synchronize before this copy
  std::vector<float> ref(got.size());
  ops::cpu::conv2d_forward<float>(s, xv.data(), wv.data(), nullptr, {Activation::Linear}, ref.data());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  // Float on both sides (K = 288): each carries ~1e-7 relative rounding.
  EXPECT_LE(std::sqrt(num / den), 1e-5);
}

}  // namespace
}  // namespace cnn
