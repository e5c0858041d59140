// CNN_CUDA_CONV_KERNELS=tune (conv_tuner.cuh): the first call of a pass on a shape times the
// candidates, keeps the fastest correct one, and its outputs are that kernel's own; a tuning
// file makes a later run choose the same; the entry points still match the CPU.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cnn/cnn.hpp"
#include "gpu_compare.hpp"
#include "kernels/cuda/conv2d_fast.cuh"
#include "kernels/cuda/conv_tuner.cuh"
#include "test_util.hpp"

namespace cnn {
namespace {
using gputest::DeviceBuffer;
using gputest::GpuTest;
using gputest::OpCheck;
namespace gpu = ops::cuda;
namespace cpu = ops::cpu;
using ops::ConvKernel;
using ops::ConvPass;

const ops::ActivationSpec kRelu{Activation::ReLU, 0};

struct Conv {
  ops::Conv2DShape s;
  DeviceBuffer x, w, bias, dy;
  Conv(const ops::Conv2DShape& shape, OpCheck& values) : s(shape) {
    x = upload(values.random(s.x_size()));
    w = upload(values.random(s.w_size()));
    bias = upload(values.random(s.c_out));
    dy = upload(values.random(s.y_size()));
  }
  static DeviceBuffer upload(const std::vector<float>& v) {
    DeviceBuffer b(v.size() * sizeof(float));
    b.upload(v);
    return b;
  }
  static float* f(const DeviceBuffer& b) { return static_cast<float*>(b.get()); }
  // y, dx, dw, dbias through the public entry points, with the context's current switch.
  std::vector<std::vector<float>> passes(cuda::Context& ctx) const {
    DeviceBuffer y(size_t(s.y_size()) * 4), dx(size_t(s.x_size()) * 4), dw(size_t(s.w_size()) * 4),
        db(size_t(s.c_out) * 4);
    gpu::conv2d_forward(ctx, s, f(x), f(w), f(bias), kRelu, f(y));
    gpu::conv2d_backward_input(ctx, s, f(dy), f(w), f(dx));
    gpu::conv2d_backward_params(ctx, s, f(x), f(dy), f(dw), f(db));
    cuda::synchronize(ctx);
    return {y.download<float>(), dx.download<float>(), dw.download<float>(), db.download<float>()};
  }
};

class ConvTuningGpu : public GpuTest {
 protected:
  void SetUp() override {
    GpuTest::SetUp();
    gpu::conv_tuning_table().clear();
  }
  void TearDown() override { gpu::conv_tuning_table().clear(); }
};

TEST_F(ConvTuningGpu, FirstUseTimesEveryCandidateAndTheOutputsAreTheKeptKernels) {
  OpCheck values(ctx(), 41);
  const Conv c(ops::Conv2DShape::make(64, 3, 32, 32, 6, 5, 5, 1, 1, Padding::Valid), values);  // LeNet conv1
  ctx().conv_kernels = cuda::ConvKernels::Tuned;
  const auto tuned = c.passes(ctx());
  const ops::ConvTuningTable& table = gpu::conv_tuning_table();
  ASSERT_EQ(table.entries().size(), 3u) << ops::conv_tuning_report(table);
  for (const ops::ConvTuningEntry& e : table.entries()) {
    SCOPED_TRACE(std::string(ops::to_string(e.pass)));
    EXPECT_EQ(e.gpu, ctx().gpu_name);
    ASSERT_EQ(e.candidates.size(), 2u);  // LeNet's conv1 passes every rule
    for (const auto& t : e.candidates) {
      EXPECT_TRUE(t.correct);
      EXPECT_GT(t.ms, 0);
    }
  }
  // What each pass kept, run directly, gives the tuned outputs to the bit.
  const auto kept = [&](ConvPass p) { return table.find(ctx().gpu_name, p, c.s)->kept; };
  ctx().conv_kernels = cuda::ConvKernels::Default;
  const auto gemm = c.passes(ctx());
  ctx().conv_kernels = cuda::ConvKernels::Fast;
  const auto fast = c.passes(ctx());
  EXPECT_EQ(tuned[0], kept(ConvPass::Forward) == ConvKernel::Gemm ? gemm[0] : fast[0]);
  EXPECT_EQ(tuned[1], kept(ConvPass::BackwardInput) == ConvKernel::Gemm ? gemm[1] : fast[1]);
  const bool params_gemm = kept(ConvPass::BackwardParams) == ConvKernel::Gemm;
  EXPECT_EQ(tuned[2], params_gemm ? gemm[2] : fast[2]);
  EXPECT_EQ(tuned[3], params_gemm ? gemm[3] : fast[3]);
  // Known now: a second call times nothing and gives the same bits.
  ctx().conv_kernels = cuda::ConvKernels::Tuned;
  EXPECT_EQ(c.passes(ctx()), tuned);
  EXPECT_EQ(gpu::conv_tuning_table().entries().size(), 3u);
}

TEST_F(ConvTuningGpu, ShapesOnlyTheGemmTakesAreRecordedWithOneCandidate) {
  OpCheck values(ctx(), 42);
  const Conv c(ops::Conv2DShape::make(7, 64, 9, 9, 64, 3, 3, 1, 1, Padding::Same), values);
  ctx().conv_kernels = cuda::ConvKernels::Tuned;
  c.passes(ctx());
  for (const ops::ConvTuningEntry& e : gpu::conv_tuning_table().entries()) {
    EXPECT_EQ(e.kept, ConvKernel::Gemm);
    EXPECT_EQ(e.candidates.size(), 1u);
  }
}

TEST_F(ConvTuningGpu, TunedEntryPointsMatchTheCpu) {
  const auto s = ops::Conv2DShape::make(7, 5, 15, 17, 13, 3, 3, 2, 2, Padding::Same);
  ctx().conv_kernels = cuda::ConvKernels::Tuned;
  OpCheck op(ctx(), 43);
  const int x = op.input("x", s.x_size()), w = op.input("w", s.w_size()), b = op.input("bias", s.c_out);
  const int dy = op.input("dy", s.y_size());
  const int y = op.output("y", s.y_size()), dx = op.output("dx", s.x_size()), dw = op.output("dw", s.w_size()),
            db = op.output("dbias", s.c_out);
  op.run(
      [&](auto& d) {
        gpu::conv2d_forward(ctx(), s, d[x], d[w], d[b], kRelu, d[y]);
        gpu::conv2d_backward_input(ctx(), s, d[dy], d[w], d[dx]);
        gpu::conv2d_backward_params(ctx(), s, d[x], d[dy], d[dw], d[db]);
      },
      [&](auto& h) {
        cpu::conv2d_forward<double>(s, h[x], h[w], h[b], kRelu, h[y]);
        cpu::conv2d_backward_input<double>(s, h[dy], h[w], h[dx]);
        cpu::conv2d_backward_params<double>(s, h[x], h[dy], h[dw], h[db]);
      });
}

// A tuning file fixes the choices: here one that keeps the GEMM for every pass of a shape the
// fast kernels take, so the tuned outputs are the GEMM's bits, and nothing is timed again.
TEST_F(ConvTuningGpu, ATuningFileFixesTheChoicesAndIsWrittenBackWithNewEntries) {
  const auto dir = std::filesystem::temp_directory_path() / ("cnn_tuning_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "tuning.txt").string();
  OpCheck values(ctx(), 44);
  const Conv c(ops::Conv2DShape::make(16, 3, 32, 32, 6, 5, 5, 1, 1, Padding::Valid), values);
  {
    std::ofstream out(path);
    for (const char* pass : {"forward", "backward_input", "backward_params"})
      out << ctx().gpu_name << " | " << pass << " | " << ops::conv_shape_text(c.s) << " | gemm | gemm=1\n";
  }
  test::ScopedEnv file("CNN_CUDA_CONV_TUNING_FILE", path.c_str());
  ctx().conv_kernels = cuda::ConvKernels::Default;
  const auto gemm = c.passes(ctx());
  // The table reads the file once per process: this test must be the first to set it.
  ctx().conv_kernels = cuda::ConvKernels::Tuned;
  EXPECT_EQ(c.passes(ctx()), gemm);
  // A new shape is tuned, and the file rewritten with both shapes: 3 + 3 entries.
  const Conv other(ops::Conv2DShape::make(16, 6, 14, 14, 16, 5, 5, 1, 1, Padding::Valid), values);
  other.passes(ctx());
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(ops::ConvTuningTable::parse(text, path).entries().size(), 6u) << text;
  std::filesystem::remove_all(dir);
}

TEST_F(ConvTuningGpu, AKeptKernelThatDoesNotTakeTheShapeIsAClearError) {
  OpCheck values(ctx(), 45);
  const Conv c(ops::Conv2DShape::make(2, 64, 8, 8, 64, 3, 3, 1, 1, Padding::Same), values);
  ops::ConvTuningEntry stale{ctx().gpu_name, ConvPass::Forward, c.s, ConvKernel::Direct, {{ConvKernel::Direct, 1, true}}};
  gpu::conv_tuning_table().record(stale);
  ctx().conv_kernels = cuda::ConvKernels::Tuned;
  EXPECT_CONTAINS(test::error_of([&] { c.passes(ctx()); }), "does not take that shape (a stale tuning file?)");
}

}  // namespace
}  // namespace cnn
