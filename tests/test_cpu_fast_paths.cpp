// The fast float32 CPU kernels (src/kernels/cpu/fast_kernels.inc, one build per instruction
// set) against the double-precision reference code, on random inputs and odd shapes, for
// every SIMD level this processor has.
//
// Tolerance: the inputs are drawn as floats and converted exactly to double for the
// reference, so the only difference is float32 rounding in the sums. For a sum of terms t_i
// that error is bounded by about (number of terms) x 2^-24 x sum |t_i| in the worst case and
// grows like sqrt(terms) in practice; every check allows
//     |fast - reference| <= kRel * sum |t_i| + kAbs,   kRel = 2e-5, kAbs = 1e-6,
// where sum |t_i| is the same op run in double on the absolute values of the inputs. A wrong
// index or a missing term gives errors of the order of the terms themselves, far above it.
// Outputs are filled with NaN before each fast call, so an element the kernel forgot to
// write fails the check.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cnn/rng.hpp"
#include "kernels/cpu/fast.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ops.hpp"

namespace cnn {
namespace {
namespace cpu = ops::cpu;
namespace fast = ops::cpu::fast;
using Isa = fast::Isa;

constexpr double kRel = 2e-5, kAbs = 1e-6;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// "a b c" from any streamable values (ostringstream: GCC 12 warns falsely on long chains of
// std::string + std::string).
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  ((out << args), ...);
  return out.str();
}

std::vector<float> random_floats(size_t n, Rng& rng, double lo = -1, double hi = 1) {
  std::vector<float> v(n);
  for (auto& x : v) x = float(rng.uniform(lo, hi));
  return v;
}
std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }
std::vector<double> abs_of(const std::vector<double>& v) {
  std::vector<double> a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

// Every element finite and within the bound; reports the first few failures.
void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<double>& ref,
                  const std::vector<double>& abs_sum) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - ref[i]);
    const double bound = kRel * abs_sum[i] + kAbs;
    if (!(err <= bound)) {
      if (++bad <= 5)
        ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", reference " << ref[i] << " (bound "
                      << bound << ")";
    }
    if (abs_sum[i] > 0) worst = std::max(worst, err / (abs_sum[i] + kAbs / kRel));
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements out of bounds";
  ::testing::Test::RecordProperty(str(what, " worst relative error"), str(worst));
}

// Runs `body` once per SIMD level available here (and says which), restoring the level after.
template <class Body>
void for_each_isa(Body body) {
  const Isa before = fast::active_isa();
  int ran = 0;
  for (Isa isa : {Isa::Avx512, Isa::Avx2}) {
    if (fast::set_isa(isa) != isa) continue;
    SCOPED_TRACE(str("isa ", fast::isa_name(isa)));
    ASSERT_NE(fast::kernels(), nullptr);
    body();
    ++ran;
  }
  fast::set_isa(before);
  if (ran == 0) GTEST_SKIP() << "this processor has neither AVX2+FMA nor AVX-512: only the reference code runs";
}

// Runs `body` with the given OpenMP thread count, restoring it after.
template <class Body>
void with_threads(int threads, Body body) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  body();
  omp_set_num_threads(before);
}

// ---- Convolution ------------------------------------------------------------------------

struct ConvCase {
  int n, c_in, h, w, c_out, k_h, k_w, stride;
  Padding padding;
  Activation act;
  bool bias;
};

std::string name_of(const ConvCase& c) {
  return str("n", c.n, " c", c.c_in, " ", c.h, "x", c.w, " -> ", c.c_out, " k", c.k_h, "x", c.k_w, " s", c.stride, " ",
             to_string(c.padding), " ", to_string(c.act), c.bias ? " bias" : "");
}

void check_conv(const ConvCase& c, int threads) {
  const auto s = ops::Conv2DShape::make(c.n, c.c_in, c.h, c.w, c.c_out, c.k_h, c.k_w, c.stride, c.stride, c.padding);
  SCOPED_TRACE(str(name_of(c), ", ", threads, " threads"));
  Rng rng(uint64_t(c.n * 131 + c.c_in * 17 + c.h * 7 + c.c_out));
  const auto x = random_floats(size_t(s.x_size()), rng), w = random_floats(size_t(s.w_size()), rng),
             b = random_floats(size_t(s.c_out), rng), dy = random_floats(size_t(s.y_size()), rng);
  const auto xd = to_double(x), wd = to_double(w), bd = to_double(b), dyd = to_double(dy);
  const auto xa = abs_of(xd), wa = abs_of(wd), ba = abs_of(bd), dya = abs_of(dyd);
  const ops::ActivationSpec act{c.act, 0.2f};
  const float* bias = c.bias ? b.data() : nullptr;

  // Forward.
  std::vector<double> y_ref(size_t(s.y_size())), y_abs(y_ref.size());
  cpu::conv2d_forward<double>(s, xd.data(), wd.data(), c.bias ? bd.data() : nullptr, act, y_ref.data());
  cpu::conv2d_forward<double>(s, xa.data(), wa.data(), c.bias ? ba.data() : nullptr, {}, y_abs.data());
  std::vector<float> y(y_ref.size(), kNaN), y2(y_ref.size(), kNaN);
  with_threads(threads, [&] {
    cpu::conv2d_forward<float>(s, x.data(), w.data(), bias, act, y.data());
    cpu::conv2d_forward<float>(s, x.data(), w.data(), bias, act, y2.data());
  });
  expect_close("conv forward", y, y_ref, y_abs);
  EXPECT_EQ(y, y2) << "conv forward: two runs differ";

  // Input gradient.
  std::vector<double> dx_ref(size_t(s.x_size())), dx_abs(dx_ref.size());
  cpu::conv2d_backward_input<double>(s, dyd.data(), wd.data(), dx_ref.data());
  cpu::conv2d_backward_input<double>(s, dya.data(), wa.data(), dx_abs.data());
  std::vector<float> dx(dx_ref.size(), kNaN), dx2(dx_ref.size(), kNaN);
  with_threads(threads, [&] {
    cpu::conv2d_backward_input<float>(s, dy.data(), w.data(), dx.data());
    cpu::conv2d_backward_input<float>(s, dy.data(), w.data(), dx2.data());
  });
  expect_close("conv input gradient", dx, dx_ref, dx_abs);
  EXPECT_EQ(dx, dx2) << "conv input gradient: two runs differ";

  // Weight and bias gradients.
  std::vector<double> dw_ref(size_t(s.w_size())), dw_abs(dw_ref.size()), db_ref(size_t(s.c_out)),
      db_abs(db_ref.size());
  cpu::conv2d_backward_params<double>(s, xd.data(), dyd.data(), dw_ref.data(), db_ref.data());
  cpu::conv2d_backward_params<double>(s, xa.data(), dya.data(), dw_abs.data(), db_abs.data());
  std::vector<float> dw(dw_ref.size(), kNaN), db(db_ref.size(), kNaN), dw2(dw_ref.size(), kNaN),
      db2(db_ref.size(), kNaN);
  with_threads(threads, [&] {
    cpu::conv2d_backward_params<float>(s, x.data(), dy.data(), dw.data(), c.bias ? db.data() : nullptr);
    cpu::conv2d_backward_params<float>(s, x.data(), dy.data(), dw2.data(), c.bias ? db2.data() : nullptr);
  });
  expect_close("conv weight gradient", dw, dw_ref, dw_abs);
  EXPECT_EQ(dw, dw2) << "conv weight gradient: two runs differ";
  if (c.bias) {
    expect_close("conv bias gradient", db, db_ref, db_abs);
    EXPECT_EQ(db, db2) << "conv bias gradient: two runs differ";
  } else {
    for (float v : db) EXPECT_TRUE(std::isnan(v)) << "dbias was written although it is null";
  }
}

const ConvCase kConvCases[] = {
    // LeNet-5's two convolutions, batch 1 and a large batch.
    {1, 3, 32, 32, 6, 5, 5, 1, Padding::Valid, Activation::ReLU, true},
    {1, 1, 32, 32, 6, 5, 5, 1, Padding::Valid, Activation::ReLU, true},
    {1, 6, 14, 14, 16, 5, 5, 1, Padding::Valid, Activation::ReLU, true},
    {64, 3, 32, 32, 6, 5, 5, 1, Padding::Valid, Activation::ReLU, true},
    {37, 6, 14, 14, 16, 5, 5, 1, Padding::Valid, Activation::ReLU, true},
    // cifar_cnn-like 3x3 'same' convolutions.
    {3, 3, 32, 32, 32, 3, 3, 1, Padding::Same, Activation::ReLU, true},
    {2, 32, 16, 16, 64, 3, 3, 1, Padding::Same, Activation::ReLU, true},
    {2, 64, 8, 8, 128, 3, 3, 1, Padding::Same, Activation::ReLU, true},
    // Odd sizes: channel counts that fill no tile, non-square images and kernels, even
    // kernels with asymmetric 'same' padding, 1x1 kernels, a kernel as large as the image.
    {3, 2, 7, 9, 5, 3, 3, 1, Padding::Valid, Activation::Linear, true},
    {5, 3, 11, 6, 7, 2, 3, 1, Padding::Same, Activation::LeakyReLU, false},
    {4, 2, 6, 7, 3, 4, 4, 1, Padding::Same, Activation::Sigmoid, true},
    {2, 5, 9, 9, 13, 1, 1, 1, Padding::Valid, Activation::Tanh, true},
    {3, 1, 5, 5, 1, 5, 5, 1, Padding::Valid, Activation::ReLU, true},
    {2, 4, 1, 40, 9, 1, 3, 1, Padding::Same, Activation::GELU, true},
    {9, 1, 3, 3, 17, 3, 3, 1, Padding::Same, Activation::Linear, false},
    {2, 3, 45, 3, 10, 5, 2, 1, Padding::Same, Activation::ReLU, true},
    // Strides other than 1 take the reference code; still float vs double.
    {3, 3, 8, 6, 2, 3, 3, 2, Padding::Valid, Activation::ReLU, true},
    {3, 1, 9, 9, 2, 5, 5, 2, Padding::Same, Activation::Tanh, true},
};

TEST(CpuFastPaths, ConvolutionMatchesTheDoubleReference) {
  for_each_isa([] {
    for (const auto& c : kConvCases)
      for (int threads : {1, 2}) check_conv(c, threads);
  });
}

TEST(CpuFastPaths, ResultsDoNotDependOnTheThreadCount) {
  // Every output element is computed within one work item in a fixed order, and the weight
  // gradients add per-chunk sums whose chunks depend on the batch size only, so 1, 2 and 3
  // threads give the same bits (tests/test_sequential.cpp checks whole training runs).
  for (const auto& c : {ConvCase{37, 3, 32, 32, 6, 5, 5, 1, Padding::Valid, Activation::ReLU, true},
                        ConvCase{37, 6, 14, 14, 16, 5, 5, 1, Padding::Valid, Activation::ReLU, true},
                        ConvCase{13, 3, 16, 16, 8, 3, 3, 1, Padding::Same, Activation::ReLU, true},
                        ConvCase{13, 1, 32, 32, 6, 5, 5, 1, Padding::Valid, Activation::ReLU, true}}) {
    const auto s = ops::Conv2DShape::make(c.n, c.c_in, c.h, c.w, c.c_out, c.k_h, c.k_w, 1, 1, c.padding);
    SCOPED_TRACE(name_of(c));
    Rng rng(5);
    const auto x = random_floats(size_t(s.x_size()), rng), w = random_floats(size_t(s.w_size()), rng),
               b = random_floats(size_t(s.c_out), rng), dy = random_floats(size_t(s.y_size()), rng);
    for_each_isa([&] {
      std::vector<float> out[3][4];
      for (int t = 0; t < 3; ++t) {
        out[t][0].resize(size_t(s.y_size()));
        out[t][1].resize(size_t(s.x_size()));
        out[t][2].resize(size_t(s.w_size()));
        out[t][3].resize(size_t(s.c_out));
        with_threads(t + 1, [&] {
          cpu::conv2d_forward<float>(s, x.data(), w.data(), b.data(), {Activation::ReLU}, out[t][0].data());
          cpu::conv2d_backward_input<float>(s, dy.data(), w.data(), out[t][1].data());
          cpu::conv2d_backward_params<float>(s, x.data(), dy.data(), out[t][2].data(), out[t][3].data());
        });
      }
      for (int t = 1; t < 3; ++t)
        for (int k = 0; k < 4; ++k) EXPECT_EQ(out[t][k], out[0][k]) << "output " << k << ", " << t + 1 << " threads";
    });
  }
}

// ---- Dense and gemm ----------------------------------------------------------------------

void check_dense(int n, int in, int out, Activation a, bool with_bias, int threads) {
  SCOPED_TRACE(str("dense n", n, " ", in, " -> ", out, " ", to_string(a), ", ", threads, " threads"));
  Rng rng(uint64_t(n * 1000 + in * 10 + out));
  const auto x = random_floats(size_t(n) * in, rng), w = random_floats(size_t(out) * in, rng),
             b = random_floats(size_t(out), rng), dy = random_floats(size_t(n) * out, rng);
  const auto xd = to_double(x), wd = to_double(w), bd = to_double(b), dyd = to_double(dy);
  const auto xa = abs_of(xd), wa = abs_of(wd), ba = abs_of(bd), dya = abs_of(dyd);
  const ops::ActivationSpec act{a, 0.2f};

  std::vector<double> y_ref(size_t(n) * out), y_abs(y_ref.size());
  cpu::dense_forward<double>(n, in, out, xd.data(), wd.data(), with_bias ? bd.data() : nullptr, act, y_ref.data());
  cpu::dense_forward<double>(n, in, out, xa.data(), wa.data(), with_bias ? ba.data() : nullptr, {}, y_abs.data());
  std::vector<float> y(y_ref.size(), kNaN);
  with_threads(threads, [&] {
    cpu::dense_forward<float>(n, in, out, x.data(), w.data(), with_bias ? b.data() : nullptr, act, y.data());
  });
  expect_close("dense forward", y, y_ref, y_abs);

  std::vector<double> dx_ref(size_t(n) * in), dx_abs(dx_ref.size());
  cpu::dense_backward_input<double>(n, in, out, dyd.data(), wd.data(), dx_ref.data());
  cpu::dense_backward_input<double>(n, in, out, dya.data(), wa.data(), dx_abs.data());
  std::vector<float> dx(dx_ref.size(), kNaN);
  with_threads(threads, [&] { cpu::dense_backward_input<float>(n, in, out, dy.data(), w.data(), dx.data()); });
  expect_close("dense input gradient", dx, dx_ref, dx_abs);

  std::vector<double> dw_ref(size_t(out) * in), dw_abs(dw_ref.size());
  std::vector<double> db_ref(static_cast<size_t>(out)), db_abs(db_ref.size());
  cpu::dense_backward_params<double>(n, in, out, xd.data(), dyd.data(), dw_ref.data(), db_ref.data());
  cpu::dense_backward_params<double>(n, in, out, xa.data(), dya.data(), dw_abs.data(), db_abs.data());
  std::vector<float> dw(dw_ref.size(), kNaN), db(db_ref.size(), kNaN);
  with_threads(threads, [&] {
    cpu::dense_backward_params<float>(n, in, out, x.data(), dy.data(), dw.data(), db.data());
  });
  expect_close("dense weight gradient", dw, dw_ref, dw_abs);
  expect_close("dense bias gradient", db, db_ref, db_abs);
}

TEST(CpuFastPaths, DenseMatchesTheDoubleReference) {
  for_each_isa([] {
    for (int threads : {1, 2}) {
      check_dense(1, 400, 120, Activation::ReLU, true, threads);  // LeNet-5, batch 1
      check_dense(128, 400, 120, Activation::ReLU, true, threads);
      check_dense(128, 120, 84, Activation::ReLU, true, threads);
      check_dense(512, 84, 10, Activation::Linear, true, threads);
      check_dense(33, 2048, 128, Activation::ReLU, true, threads);  // cifar_cnn
      check_dense(7, 13, 5, Activation::LeakyReLU, false, threads);
      check_dense(3, 1, 1, Activation::Sigmoid, true, threads);
      check_dense(17, 29, 31, Activation::Tanh, true, threads);
      check_dense(2, 70, 3, Activation::GELU, true, threads);
    }
  });
}

void check_gemm(bool ta, bool tb, int M, int N, int K, float alpha, float beta, int threads) {
  SCOPED_TRACE(str("gemm ", ta ? "T" : "N", tb ? "T" : "N", " ", M, "x", N, "x", K, " alpha ", alpha, " beta ", beta, ", ",
                   threads, " threads"));
  Rng rng(uint64_t(M * 7919 + N * 31 + K));
  const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;  // padded leading dimensions
  const auto a = random_floats(size_t(ta ? K : M) * lda, rng), b = random_floats(size_t(tb ? N : K) * ldb, rng),
             c0 = random_floats(size_t(M) * ldc, rng);
  const auto ad = to_double(a), bd = to_double(b), cd0 = to_double(c0);
  std::vector<double> ref = cd0, abs_sum = abs_of(cd0);
  cpu::gemm<double>(ta, tb, M, N, K, alpha, ad.data(), lda, bd.data(), ldb, beta, ref.data(), ldc);
  const auto aa = abs_of(ad), ba = abs_of(bd);
  cpu::gemm<double>(ta, tb, M, N, K, std::fabs(alpha), aa.data(), lda, ba.data(), ldb, std::fabs(beta), abs_sum.data(),
                    ldc);
  std::vector<float> c = c0;
  if (beta == 0.0f)  // beta 0 must not read C: NaN there must not leak into the result
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) c[size_t(i) * ldc + j] = kNaN;
  with_threads(threads, [&] {
    cpu::gemm<float>(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  });
  // Only the M x N block may change; the padding columns keep their values.
  std::vector<float> block, pad;
  std::vector<double> block_ref, block_abs;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < ldc; ++j) {
      const size_t at = size_t(i) * ldc + j;
      if (j < N) {
        block.push_back(c[at]);
        block_ref.push_back(ref[at]);
        block_abs.push_back(abs_sum[at]);
      } else {
        EXPECT_EQ(c[at], c0[at]) << "gemm wrote outside the M x N block at row " << i << ", column " << j;
      }
    }
  expect_close("gemm", block, block_ref, block_abs);
}

TEST(CpuFastPaths, GemmMatchesTheDoubleReference) {
  for_each_isa([] {
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int threads : {1, 2}) {
          check_gemm(ta, tb, 1, 1, 1, 1.0f, 0.0f, threads);
          check_gemm(ta, tb, 6, 75, 784, 1.0f, 0.0f, threads);
          check_gemm(ta, tb, 37, 53, 29, 0.5f, 1.0f, threads);
          check_gemm(ta, tb, 130, 17, 300, -1.5f, 0.25f, threads);
          check_gemm(ta, tb, 5, 200, 3, 2.0f, 0.0f, threads);
          check_gemm(ta, tb, 9, 9, 0, 1.0f, 0.5f, threads);  // K = 0: C = beta C
        }
  });
}

// ---- Pooling ---------------------------------------------------------------------------
// The fast 2x2/stride-2 paths add and compare in the reference's order, so they must match
// the float reference exactly (forced with CNN's generic level).

void check_pool(int n, int c, int h, int w, Padding padding, bool with_ties) {
  const auto s = ops::Pool2DShape::make(n, c, h, w, 2, 2, 2, 2, padding);
  SCOPED_TRACE(str("pool n", n, " c", c, " ", h, "x", w, " ", to_string(padding), with_ties ? " ties" : ""));
  Rng rng(uint64_t(h * 100 + w));
  auto x = random_floats(size_t(s.x_size()), rng);
  if (with_ties)
    for (auto& v : x) v = std::round(v * 2.0f);  // few distinct values: many tied maxima
  const auto dy = random_floats(size_t(s.y_size()), rng);
  const Isa before = fast::active_isa();
  auto run = [&](Isa isa, std::vector<float>& y_max, std::vector<float>& y_avg, std::vector<float>& dx_max,
                 std::vector<float>& dx_avg) {
    fast::set_isa(isa);
    y_max.assign(size_t(s.y_size()), kNaN);
    y_avg = y_max;
    dx_max.assign(size_t(s.x_size()), kNaN);
    dx_avg = dx_max;
    cpu::maxpool2d_forward<float>(s, x.data(), y_max.data());
    cpu::avgpool2d_forward<float>(s, x.data(), y_avg.data());
    cpu::maxpool2d_backward<float>(s, x.data(), dy.data(), dx_max.data());
    cpu::avgpool2d_backward<float>(s, dy.data(), dx_avg.data());
  };
  std::vector<float> ref[4];
  run(Isa::Generic, ref[0], ref[1], ref[2], ref[3]);
  for_each_isa([&] {
    std::vector<float> got[4];
    run(fast::active_isa(), got[0], got[1], got[2], got[3]);
    EXPECT_EQ(got[0], ref[0]) << "max pool forward";
    EXPECT_EQ(got[1], ref[1]) << "average pool forward";
    EXPECT_EQ(got[2], ref[2]) << "max pool backward";
    EXPECT_EQ(got[3], ref[3]) << "average pool backward";
  });
  fast::set_isa(before);
}

TEST(CpuFastPaths, PoolingMatchesTheReferenceExactly) {
  check_pool(4, 6, 28, 28, Padding::Valid, false);  // LeNet-5
  check_pool(2, 16, 10, 10, Padding::Valid, true);
  check_pool(3, 32, 32, 32, Padding::Same, false);  // cifar_cnn
  check_pool(2, 3, 7, 9, Padding::Valid, true);     // odd: the last row/column is dropped
  check_pool(2, 3, 7, 9, Padding::Same, false);     // odd 'same': clipped windows (reference)
  check_pool(1, 1, 2, 2, Padding::Valid, true);
}

// ---- Thread pool ---------------------------------------------------------------------------

TEST(CpuThreadPool, RunsEveryItemOnceNestsSeriallyAndRethrows) {
  with_threads(2, [] {
    for (int round = 0; round < 50; ++round) {  // many jobs back to back: helpers wake and sleep
      std::vector<int> hits(size_t(997 + round), 0);
      ops::cpu::parallel_for(int64_t(hits.size()), 2, [&](int64_t i) {
        ++hits[size_t(i)];
        if (i % 100 == 0) {  // a nested job runs on the calling thread
          int inner = 0;
          ops::cpu::parallel_for(10, 2, [&](int64_t) { ++inner; });
          EXPECT_EQ(inner, 10);
        }
      });
      for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i], 1) << "item " << i << ", round " << round;
    }
    std::vector<int> ran(64, 0);
    EXPECT_THROW(ops::cpu::parallel_for(64, 2,
                                        [&](int64_t i) {
                                          ran[size_t(i)] = 1;
                                          if (i == 5) throw std::runtime_error("item 5");
                                        }),
                 std::runtime_error);
    for (int v : ran) EXPECT_EQ(v, 1);  // the other items still ran
    int after = 0;
    ops::cpu::parallel_for(8, 2, [&](int64_t) { __atomic_add_fetch(&after, 1, __ATOMIC_RELAXED); });
    EXPECT_EQ(after, 8);  // the pool is usable again
  });
}

TEST(CpuFastPaths, IsaCanBeForcedAndClamped) {
  const Isa before = fast::active_isa();
  EXPECT_EQ(fast::set_isa(Isa::Generic), Isa::Generic);
  EXPECT_EQ(fast::kernels(), nullptr);
  EXPECT_EQ(fast::set_isa(Isa::Avx512), fast::detected_isa());  // never above the processor
  fast::set_isa(before);
}

}  // namespace
}  // namespace cnn
