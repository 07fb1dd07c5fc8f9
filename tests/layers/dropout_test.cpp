// Behaviour of eigenet::Dropout: the probability's domain, inverted-dropout scaling, the
// reproducible counter-based mask (seed, step, element index), backward reusing exactly the
// forward mask, thread-count independence (two threads really running), the documented
// mask over several parallel chunks, inference as the identity, p = 1 without NaN,
// and every rank. Gradients are checked by finite differences in gradient_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"
#include "support/dropout_support.hpp"
#include "support/threads.hpp"

namespace {

using eigenet::ConstView;
using eigenet::Dropout;
using eigenet::Index;
using eigenet::Shape;
using eigenet::Tensor;
using eigenet::testing::contains;
using eigenet::testing::documented_keep;
using eigenet::testing::forward;
using eigenet::testing::kHaveOpenMP;
using eigenet::testing::kNoOpenMP;
using eigenet::testing::message_of;
using eigenet::testing::ramp;
using eigenet::testing::ThreadCount;
using eigenet::testing::threads_that_ran;

/// The chunk of the mask kernels' parallel loop, in elements (kernels::apply_masked).
constexpr Index kMaskGrain = Index{1} << 16;

template <typename Scalar>
std::vector<bool> kept(const std::vector<Scalar>& y) {
  std::vector<bool> mask(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) mask[i] = y[i] != Scalar(0);
  return mask;
}

double kept_fraction(const std::vector<bool>& mask) {
  std::size_t count = 0;
  for (bool k : mask) count += k;
  return static_cast<double>(count) / static_cast<double>(mask.size());
}

TEST(Dropout, RejectsProbabilitiesOutsideZeroOne) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double p : {-0.1, -1e-12, 1.0 + 1e-12, 1.5, nan, inf, -inf}) {
    const std::string message = message_of<eigenet::ValueError>([&] { Dropout<float> dropout(p); });
    EXPECT_TRUE(contains(message, "Dropout")) << p;
    EXPECT_TRUE(contains(message, "[0, 1]")) << p;
  }
  EXPECT_NO_THROW(Dropout<float>(0.0));
  EXPECT_NO_THROW(Dropout<float>(1.0));
  EXPECT_TRUE(Dropout<float>().is_training());
  EXPECT_DOUBLE_EQ(Dropout<float>().drop_probability(), 0.5);
  EXPECT_TRUE(Dropout<float>().parameters().empty());
}

TEST(Dropout, DropsWithProbabilityPAndScalesKeptByInverseKeepProbability) {
  // tiny-dnn kept units with probability p and forgot the scale; here p is the DROP rate.
  for (double p : {0.2, 0.5, 0.9}) {
    Dropout<double> dropout(p, 3);
    const auto x = ramp<double>(100000);
    const auto y = forward(dropout, x);
    const auto mask = kept(y);
    // 100000 draws: the standard error of the fraction is below 0.0016; allow 0.01.
    EXPECT_NEAR(kept_fraction(mask), 1.0 - p, 0.01) << "p = " << p;
    const double scale = 1.0 / (1.0 - p);
    for (std::size_t i = 0; i < x.size(); ++i)
      if (mask[i]) {
        ASSERT_EQ(y[i], x[i] * scale) << "element " << i << ", p = " << p;
      }
  }
}

TEST(Dropout, MaskIsTheDocumentedFunctionOfSeedStepAndIndex) {
  const Index count = 5000;
  Dropout<float> dropout(0.3, 42);
  const std::vector<float> x(static_cast<std::size_t>(count), 1.0f);
  for (std::uint64_t step = 0; step < 3; ++step) {
    const auto y = forward(dropout, x);
    std::vector<float> expected(static_cast<std::size_t>(count));
    eigenet::kernels::dropout_keep_mask(expected.data(), count, {0.3, 42, step});
    for (Index i = 0; i < count; ++i)
      ASSERT_EQ(y[static_cast<std::size_t>(i)] != 0.0f, expected[static_cast<std::size_t>(i)] == 1.0f)
          << "step " << step << ", element " << i;
  }
}

TEST(Dropout, SameSeedGivesSameMaskDifferentSeedDifferentMask) {
  const auto x = ramp<float>(4096);
  Dropout<float> a(0.5, 7), b(0.5, 7), c(0.5, 8);
  const auto ya = forward(a, x), yb = forward(b, x), yc = forward(c, x);
  EXPECT_EQ(ya, yb);
  EXPECT_NE(kept(ya), kept(yc));
  // set_seed switches the stream.
  Dropout<float> d(0.5, 8);
  d.set_seed(7);
  EXPECT_EQ(forward(d, x), ya);
}

TEST(Dropout, StepAdvancesPerTrainingForwardOnly) {
  const auto x = ramp<float>(4096);
  Dropout<float> dropout(0.5, 1);
  EXPECT_EQ(dropout.step(), 0u);
  const auto first = forward(dropout, x);
  EXPECT_EQ(dropout.step(), 1u);
  const auto second = forward(dropout, x);
  EXPECT_EQ(dropout.step(), 2u);
  EXPECT_NE(kept(first), kept(second)) << "consecutive training forwards must draw new masks";

  // Inference forwards and backwards do not consume a step.
  dropout.eval();
  forward(dropout, x);
  dropout.train();
  const Shape shape{4096};
  std::vector<float> dx(x.size());
  forward(dropout, x);  // step 2
  dropout.backward_into({x.data(), shape}, {x.data(), shape}, {dx.data(), shape});
  EXPECT_EQ(dropout.step(), 3u);

  // set_step replays a mask.
  dropout.set_step(0);
  EXPECT_EQ(forward(dropout, x), first);
  EXPECT_EQ(forward(dropout, x), second);
}

TEST(Dropout, BackwardReusesExactlyTheForwardMask) {
  for (double p : {0.1, 0.5, 0.75}) {
    Dropout<double> dropout(p, 11);
    forward(dropout, ramp<double>(3000));  // step 0: a mask backward must NOT use
    const auto x = ramp<double>(3000);
    const auto y = forward(dropout, x);  // step 1
    const std::vector<double> dy(x.size(), 2.0);
    std::vector<double> dx(x.size());
    const Shape shape{3000};
    dropout.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});
    const double scale = 1.0 / (1.0 - p);
    for (std::size_t i = 0; i < x.size(); ++i) {
      // ∂y_i/∂x_i = y_i / x_i: either 0 or the scale.
      ASSERT_EQ(dx[i], y[i] != 0.0 ? 2.0 * scale : 0.0) << "element " << i << ", p = " << p;
    }
    // A second backward of the same forward gives the same dx.
    std::vector<double> again(x.size());
    dropout.backward_into({x.data(), shape}, {dy.data(), shape}, {again.data(), shape});
    EXPECT_EQ(again, dx);
  }
}

TEST(Dropout, BackwardUsesTheModeOfItsForward) {
  const auto x = ramp<float>(1000);
  const Shape shape{1000};
  std::vector<float> dx(x.size());
  Dropout<float> dropout(0.5, 2);
  const auto y = forward(dropout, x);
  dropout.eval();  // after the training forward: backward must still apply its mask
  dropout.backward_into({x.data(), shape}, {x.data(), shape}, {dx.data(), shape});
  EXPECT_EQ(dx, y);
}

TEST(Dropout, BackwardChecksShapesAndOrder) {
  Dropout<float> dropout(0.5);
  const Tensor<float, 2> x = Tensor<float, 2>(3, 4).setConstant(1.0f);
  EXPECT_THROW(dropout.backward(x, x), eigenet::StateError);
  dropout.forward(x);
  const std::string message = message_of<eigenet::ShapeError>([&] { dropout.backward(x, Tensor<float, 2>(4, 3)); });
  EXPECT_TRUE(contains(message, "Dropout"));
  EXPECT_TRUE(contains(message, "(3, 4)"));
  EXPECT_TRUE(contains(message, "(4, 3)"));
  const Tensor<float, 2> other = Tensor<float, 2>(2, 6).setConstant(1.0f);
  EXPECT_THROW(dropout.backward(other, other), eigenet::StateError);
  // An output view of the wrong shape.
  std::vector<float> y(12);
  EXPECT_THROW(dropout.forward_into({x.data(), {3, 4}}, {y.data(), {12}}), eigenet::ShapeError);
}

TEST(Dropout, MaskIsIdenticalWithOneAndTwoThreads) {
  if (!kHaveOpenMP) GTEST_SKIP() << kNoOpenMP;
  const Index count = 300001;
  const Shape shape{count};
  ASSERT_EQ(eigenet::kernels::chunk_count(count, kMaskGrain), 5) << "several chunks of the parallel loop";
  ASSERT_EQ(threads_that_ran(1, count, kMaskGrain), 1);
  ASSERT_EQ(threads_that_ran(2, count, kMaskGrain), 2) << "the two-thread run must really run two threads";
  const auto x = ramp<float>(count);
  std::vector<float> y1, y2, dx1(x.size()), dx2(x.size());
  Dropout<float> serial(0.4, 5), parallel(0.4, 5);
  {
    const ThreadCount one(1);
    y1 = forward(serial, x);
    serial.backward_into({x.data(), shape}, {x.data(), shape}, {dx1.data(), shape});
  }
  {
    const ThreadCount two(2);
    y2 = forward(parallel, x);
    parallel.backward_into({x.data(), shape}, {x.data(), shape}, {dx2.data(), shape});
  }
  EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(dx1.data(), dx2.data(), dx1.size() * sizeof(float)), 0);
  EXPECT_EQ(y1, dx1);  // x as dy: dx must equal y bit for bit
}

// The 5,000 elements above are one chunk of the parallel loop. Here 300,001 elements are
// five chunks on two threads, compared element by element with the documented mask, so a
// chunk that drew another chunk's mask (or its own from the wrong index) cannot pass.
TEST(Dropout, MaskIsTheDocumentedFunctionAcrossChunksAndThreads) {
  const Index count = 300001;
  const Shape shape{count};
  const double p = 0.4;
  const std::uint64_t seed = 42, step = 3;
  ASSERT_EQ(eigenet::kernels::chunk_count(count, kMaskGrain), 5);
  if (kHaveOpenMP) {
    ASSERT_EQ(threads_that_ran(2, count, kMaskGrain), 2);
  }
  const ThreadCount two(2);
  Dropout<float> dropout(p, seed);
  dropout.set_step(step);
  const auto x = ramp<float>(count);
  std::vector<float> dy(x.size());
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = -1.0f - static_cast<float>(i % 7);
  const auto y = forward(dropout, x);
  std::vector<float> dx(x.size());
  dropout.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});
  const auto scale = static_cast<float>(1.0 / (1.0 - p));
  Index kept_count = 0;
  for (Index i = 0; i < count; ++i) {
    const bool keep = documented_keep(p, seed, step, static_cast<std::uint64_t>(i));
    const auto u = static_cast<std::size_t>(i);
    ASSERT_EQ(y[u], keep ? x[u] * scale : 0.0f) << "forward, element " << i << " (chunk " << i / kMaskGrain << ")";
    ASSERT_EQ(dx[u], keep ? dy[u] * scale : 0.0f) << "backward, element " << i << " (chunk " << i / kMaskGrain << ")";
    kept_count += keep ? 1 : 0;
  }
  // 300,001 draws: the standard error of the kept fraction is 0.0009; 0.005 is 5.6 of it.
  EXPECT_NEAR(static_cast<double>(kept_count) / static_cast<double>(count), 1.0 - p, 0.005);
}

TEST(Dropout, InferenceIsTheIdentity) {
  for (double p : {0.0, 0.5, 1.0}) {
    Dropout<double> dropout(p, 9);
    dropout.eval();
    auto x = ramp<double>(1000);
    x[3] = -7.5;
    x[4] = std::numeric_limits<double>::infinity();
    EXPECT_EQ(forward(dropout, x), x) << "p = " << p;
    EXPECT_EQ(dropout.step(), 0u);
    const Shape shape{1000};
    std::vector<double> dx(x.size());
    const auto dy = ramp<double>(1000);
    dropout.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});
    EXPECT_EQ(dx, dy) << "p = " << p;
  }
}

TEST(Dropout, ZeroProbabilityIsTheIdentityInTraining) {
  Dropout<float> dropout(0.0, 4);
  const auto x = ramp<float>(777);
  EXPECT_EQ(forward(dropout, x), x);
}

TEST(Dropout, ProbabilityOneGivesZerosAndZeroGradientsNeverNaN) {
  const double inf = std::numeric_limits<double>::infinity();
  Dropout<double> dropout(1.0, 3);
  std::vector<double> x = ramp<double>(100);
  x[0] = inf;
  x[1] = -inf;
  x[2] = 1e308;
  const auto y = forward(dropout, x);
  for (double v : y) ASSERT_EQ(v, 0.0);
  std::vector<double> dy(x.size(), 1.0), dx(x.size(), -1.0);
  dy[5] = inf;
  const Shape shape{100};
  dropout.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});
  for (double v : dx) ASSERT_EQ(v, 0.0);

  Dropout<float> single(1.0);
  const Tensor<float, 2> xf = Tensor<float, 2>(4, 8).setConstant(3.0f);
  const auto yf = single.forward(xf);
  const auto dxf = single.backward(xf, xf);
  for (Index i = 0; i < yf.size(); ++i) {
    ASSERT_FALSE(std::isnan(yf.data()[i]));
    ASSERT_EQ(yf.data()[i], 0.0f);
    ASSERT_EQ(dxf.data()[i], 0.0f);
  }
}

/// The mask depends only on the element's flat index, so every rank of the same 240
/// elements gives the same output, with the input's shape.
template <int Rank>
void check_rank(const std::array<Index, Rank>& dims, const std::vector<float>& expected) {
  Tensor<float, Rank> x(dims);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i + 1);
  Dropout<float> dropout(0.5, 21);
  const Tensor<float, Rank> y = dropout.forward(x);
  for (int d = 0; d < Rank; ++d) EXPECT_EQ(y.dimension(d), x.dimension(d)) << "rank " << Rank;
  EXPECT_EQ(std::vector<float>(y.data(), y.data() + y.size()), expected) << "rank " << Rank;
  const Tensor<float, Rank> dx = dropout.backward(x, x);
  EXPECT_EQ(std::vector<float>(dx.data(), dx.data() + dx.size()), expected) << "rank " << Rank;
}

TEST(Dropout, WorksForEveryRank) {
  std::vector<float> x(240);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i + 1);
  Dropout<float> flat(0.5, 21);
  const auto expected = forward(flat, x);
  check_rank<1>({240}, expected);
  check_rank<2>({12, 20}, expected);
  check_rank<3>({4, 6, 10}, expected);
  check_rank<4>({2, 3, 5, 8}, expected);
  check_rank<5>({2, 3, 2, 5, 4}, expected);
}

}  // namespace
