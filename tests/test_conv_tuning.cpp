// The convolution tuning table's file format and lookups (kernels/conv_tuning.hpp); the timing
// itself needs a GPU (tests/gpu/test_gpu_conv_tuning.cpp).
#include <gtest/gtest.h>

#include <string>

#include "kernels/conv_tuning.hpp"
#include "test_util.hpp"

namespace cnn {
namespace {

using ops::ConvKernel;
using ops::ConvPass;
using ops::ConvTuningEntry;
using ops::ConvTuningTable;

ops::Conv2DShape lenet_conv1(int batch) {
  return ops::Conv2DShape::make(batch, 3, 32, 32, 6, 5, 5, 1, 1, Padding::Valid);
}

ConvTuningEntry entry(const std::string& gpu, ConvPass pass, const ops::Conv2DShape& s, ConvKernel kept) {
  ConvTuningEntry e{gpu, pass, s, kept, {}};
  e.candidates.push_back({ConvKernel::Gemm, 0.0213, true});
  if (kept != ConvKernel::Gemm) e.candidates.push_back({kept, 0.0112, true});
  return e;
}

TEST(ConvTuning, TableRoundTripsThroughItsTextExactly) {
  ConvTuningTable table;
  table.record(entry("NVIDIA H200", ConvPass::Forward, lenet_conv1(128), ConvKernel::Direct));
  ConvTuningEntry wgrad = entry("NVIDIA H200", ConvPass::BackwardParams, lenet_conv1(128), ConvKernel::SplitK);
  wgrad.candidates.push_back({ConvKernel::Gemm, 0, false});  // a wrong one is kept as such
  wgrad.candidates.erase(wgrad.candidates.begin());
  wgrad.candidates.insert(wgrad.candidates.begin(), {ConvKernel::Gemm, 0.5, true});
  table.record(wgrad);
  table.record(entry("NVIDIA H100 80GB HBM3", ConvPass::BackwardInput,
                     ops::Conv2DShape::make(7, 6, 14, 14, 16, 5, 5, 2, 2, Padding::Same), ConvKernel::Gemm));
  const std::string text = table.to_text();
  const ConvTuningTable back = ConvTuningTable::parse(text, "t.txt");
  EXPECT_EQ(back.to_text(), text);
  ASSERT_EQ(back.entries().size(), 3u);
  const ConvTuningEntry* f = back.find("NVIDIA H200", ConvPass::Forward, lenet_conv1(128));
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->kept, ConvKernel::Direct);
  EXPECT_DOUBLE_EQ(f->candidates[1].ms, 0.0112);
  const ConvTuningEntry* w = back.find("NVIDIA H200", ConvPass::BackwardParams, lenet_conv1(128));
  ASSERT_NE(w, nullptr);
  EXPECT_FALSE(w->candidates.back().correct);
  // Another GPU model, pass or batch size is another entry.
  EXPECT_EQ(back.find("NVIDIA H100 80GB HBM3", ConvPass::Forward, lenet_conv1(128)), nullptr);
  EXPECT_EQ(back.find("NVIDIA H200", ConvPass::BackwardInput, lenet_conv1(128)), nullptr);
  EXPECT_EQ(back.find("NVIDIA H200", ConvPass::Forward, lenet_conv1(127)), nullptr);
  EXPECT_NE(text.find("NVIDIA H200 | forward | n128 c3 32x32 k6 5x5 s1x1 p0x0 o28x28 | direct | gemm=0.0213 direct=0.0112"),
            std::string::npos)
      << text;
}

TEST(ConvTuning, RecordReplacesTheEntryForTheSameKey) {
  ConvTuningTable table;
  table.record(entry("G", ConvPass::Forward, lenet_conv1(32), ConvKernel::Gemm));
  table.record(entry("G", ConvPass::Forward, lenet_conv1(32), ConvKernel::Direct));
  ASSERT_EQ(table.entries().size(), 1u);
  EXPECT_EQ(table.entries()[0].kept, ConvKernel::Direct);
}

TEST(ConvTuning, ParseNamesTheFileLineAndProblem) {
  const std::string good_shape = "n8 c3 32x32 k6 5x5 s1x1 p0x0 o28x28";
  auto error = [](const std::string& text) {
    return test::error_of([&] { ConvTuningTable::parse(text, "tune.txt"); });
  };
  EXPECT_CONTAINS(error("# comment\n\nG | forward | " + good_shape + " | gemm"), "tune.txt, line 3");
  EXPECT_CONTAINS(error("G | forward | " + good_shape + " | gemm"), "expected 5 fields");
  EXPECT_CONTAINS(error("G | sideways | " + good_shape + " | gemm | gemm=1"), "unknown pass 'sideways'");
  EXPECT_CONTAINS(error("G | forward | n8 c3 32x32 | gemm | gemm=1"), "unreadable shape");
  EXPECT_CONTAINS(error("G | forward | " + good_shape + " junk | gemm | gemm=1"), "unreadable shape");
  EXPECT_CONTAINS(error("G | forward | " + good_shape + " | fft | gemm=1"), "unknown kernel 'fft'");
  EXPECT_CONTAINS(error("G | forward | " + good_shape + " | split_k | gemm=1 split_k=0.5"),
                  "'split_k' cannot run the forward pass");
  EXPECT_CONTAINS(error("G | forward | " + good_shape + " | gemm | gemm=fast"), "is not a number");
  EXPECT_CONTAINS(error("G | forward | " + good_shape + " | gemm | gemm=-1"), "is not a number");
  EXPECT_CONTAINS(error("G | forward | " + good_shape + " | gemm | gemm"), "is not kernel=ms");
  EXPECT_CONTAINS(error("G | forward | " + good_shape + " | direct | gemm=1 direct=wrong"),
                  "not among the correct candidates");
  EXPECT_CONTAINS(error("G | forward | " + good_shape + " | gemm | gemm=1\nG | forward | " + good_shape +
                        " | gemm | gemm=2"),
                  "a second entry");
  EXPECT_CONTAINS(error(" | forward | " + good_shape + " | gemm | gemm=1"), "empty GPU name");
  EXPECT_EQ(ConvTuningTable::parse("# only a comment\n", "t").entries().size(), 0u);
}

TEST(ConvTuning, ReportListsEveryCandidateAndTheKeptKernel) {
  ConvTuningTable table;
  EXPECT_CONTAINS(ops::conv_tuning_report(table), "no convolution was tuned");
  ConvTuningEntry e = entry("NVIDIA H200", ConvPass::Forward, lenet_conv1(128), ConvKernel::Direct);
  e.candidates.push_back({ConvKernel::Direct, 0, false});
  table.record(e);
  const std::string report = ops::conv_tuning_report(table);
  EXPECT_CONTAINS(report, "GPU: NVIDIA H200");
  EXPECT_CONTAINS(report, "n128 c3 32x32 k6 5x5 s1x1 p0x0 o28x28");
  EXPECT_CONTAINS(report, "gemm 0.0213, direct 0.0112, direct WRONG");
}

TEST(ConvTuning, KernelsBelongToTheirPasses) {
  EXPECT_TRUE(ops::pass_has_kernel(ConvPass::Forward, ConvKernel::Direct));
  EXPECT_TRUE(ops::pass_has_kernel(ConvPass::BackwardInput, ConvKernel::Direct));
  EXPECT_FALSE(ops::pass_has_kernel(ConvPass::BackwardParams, ConvKernel::Direct));
  EXPECT_TRUE(ops::pass_has_kernel(ConvPass::BackwardParams, ConvKernel::SplitK));
  EXPECT_FALSE(ops::pass_has_kernel(ConvPass::Forward, ConvKernel::SplitK));
  for (ConvPass p : {ConvPass::Forward, ConvPass::BackwardInput, ConvPass::BackwardParams})
    EXPECT_TRUE(ops::pass_has_kernel(p, ConvKernel::Gemm));
}

}  // namespace
}  // namespace cnn
