// Behaviour of eigenet::AlphaDropout and FeatureAlphaDropout: the constants a, b and the
// dropped value from the published formula; every output is a·x + b (kept) or a·α' + b
// (dropped), with Dropout's mask for the same (p, seed, step); backward a·dy or 0 with the
// forward's mask; inference and p = 0 are the identity; p = 1 gives zeros, never NaN;
// standard-normal input keeps mean 0 and variance 1 (tolerances from the sample size);
// 1 thread == 2 threads; channel sharing; bad p rejected.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"
#include "support/dropout_support.hpp"
#include "support/threads.hpp"

namespace {

using eigenet::AlphaDropout;
using eigenet::Dropout;
using eigenet::FeatureAlphaDropout;
using eigenet::Index;
using eigenet::Shape;
using eigenet::testing::backward;
using eigenet::testing::contains;
using eigenet::testing::forward;
using eigenet::testing::kHaveOpenMP;
using eigenet::testing::kNoOpenMP;
using eigenet::testing::message_of;
using eigenet::testing::ThreadCount;
using eigenet::testing::threads_that_ran;

constexpr double kAlphaPrime = -1.7580993408473766;  // SELU's −λα

std::vector<double> standard_normal(std::size_t count, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<double> values(count);
  for (double& v : values) v = dist(engine);
  return values;
}

TEST(AlphaDropout, RejectsBadProbabilitiesAndNamesItself) {
  for (double p : {-0.5, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    const std::string message = message_of<eigenet::ValueError>([&] { AlphaDropout<float> layer(p); });
    EXPECT_TRUE(contains(message, "AlphaDropout")) << p;
    EXPECT_TRUE(contains(message, "[0, 1]")) << p;
  }
  EXPECT_EQ(AlphaDropout<float>(0.2).name(), "AlphaDropout(p=0.2)");
  EXPECT_EQ(FeatureAlphaDropout<float>(0.2).name(), "FeatureAlphaDropout(p=0.2)");
  EXPECT_TRUE(AlphaDropout<float>().parameters().empty());
  const auto copy = FeatureAlphaDropout<double>(0.3, 4).clone();
  EXPECT_NE(dynamic_cast<FeatureAlphaDropout<double>*>(copy.get()), nullptr);
  const std::string message = message_of<eigenet::ShapeError>([] {
    FeatureAlphaDropout<float>(0.3).output_shape({4, 5});
  });
  EXPECT_TRUE(contains(message, "FeatureAlphaDropout(p=0.3)"));
  EXPECT_TRUE(contains(message, "rank >= 3"));
}

TEST(AlphaDropout, ConstantsAreThePublishedFormula) {
  for (double p : {0.05, 0.1, 0.5, 0.9}) {
    const auto c = AlphaDropout<double>(p).constants();
    const double a = 1.0 / std::sqrt((1.0 - p) * (1.0 + p * kAlphaPrime * kAlphaPrime));
    const double b = -a * kAlphaPrime * p;
    EXPECT_NEAR(c.scale, a, 1e-15 * a) << p;
    EXPECT_NEAR(c.offset, b, 1e-15 * std::abs(b)) << p;
    EXPECT_NEAR(c.dropped_value, a * kAlphaPrime + b, 1e-15 * std::abs(a * kAlphaPrime)) << p;
    // The two properties the constants exist for (exact, for mean-0 variance-1 input).
    EXPECT_NEAR(a * p * kAlphaPrime + b, 0.0, 1e-15) << "mean, p = " << p;
    EXPECT_NEAR(a * a * ((1 - p) + p * kAlphaPrime * kAlphaPrime - p * p * kAlphaPrime * kAlphaPrime), 1.0, 1e-14)
        << "variance, p = " << p;
  }
  const auto one = AlphaDropout<double>(1.0).constants();
  EXPECT_EQ(one.scale, 0.0);
  EXPECT_EQ(one.offset, 0.0);
  EXPECT_EQ(one.dropped_value, 0.0);
}

template <typename Scalar>
void check_outputs_take_two_forms(double p) {
  const Shape shape{40, 50};
  const auto normal = standard_normal(2000, 3);
  const std::vector<Scalar> x(normal.begin(), normal.end());
  AlphaDropout<Scalar> alpha(p, 77);
  Dropout<Scalar> plain(p, 77);
  forward(alpha, x, shape);
  forward(plain, x, shape);  // both at step 1 next
  const auto y = forward(alpha, x, shape);
  const auto plain_y = forward(plain, x, shape);
  const auto dy = std::vector<Scalar>(x.size(), Scalar(3));
  const auto dx = backward(alpha, x, dy, shape);
  const auto c = alpha.constants();
  const auto a = static_cast<Scalar>(c.scale), b = static_cast<Scalar>(c.offset);
  const auto dropped_value = static_cast<Scalar>(c.dropped_value);
  Index dropped = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const bool kept = plain_y[i] != Scalar(0);  // x is never 0 here
    if (kept) {
      // a·x + b, to rounding (the compiler may fuse the multiply-add).
      const Scalar expected = a * x[i] + b;
      ASSERT_NEAR(y[i], expected, 2 * std::numeric_limits<Scalar>::epsilon() * (std::abs(a * x[i]) + std::abs(b)))
          << "element " << i;
      ASSERT_EQ(dx[i], a * Scalar(3)) << "element " << i;
    } else {
      ASSERT_EQ(y[i], dropped_value) << "element " << i;
      ASSERT_EQ(dx[i], Scalar(0)) << "element " << i;
      ++dropped;
    }
  }
  EXPECT_GT(dropped, 0);
  EXPECT_LT(dropped, static_cast<Index>(x.size()));
  EXPECT_EQ(backward(alpha, x, dy, shape), dx) << "a second backward of the same forward";
}

TEST(AlphaDropout, OutputsAreAffineOnKeptAndConstantOnDroppedWithDropoutsMask) {
  for (double p : {0.1, 0.5, 0.9}) {
    check_outputs_take_two_forms<double>(p);
    check_outputs_take_two_forms<float>(p);
  }
}

TEST(AlphaDropout, InferenceAndZeroProbabilityAreTheIdentity) {
  const Shape shape{10, 10};
  auto x = standard_normal(100, 5);
  x[7] = std::numeric_limits<double>::infinity();
  for (double p : {0.0, 0.5, 1.0}) {
    AlphaDropout<double> layer(p, 2);
    layer.eval();
    EXPECT_EQ(forward(layer, x, shape), x) << p;
    EXPECT_EQ(backward(layer, x, x, shape), x) << p;
  }
  AlphaDropout<double> zero(0.0, 2);
  EXPECT_EQ(forward(zero, x, shape), x);
  EXPECT_EQ(backward(zero, x, x, shape), x);
}

TEST(AlphaDropout, ProbabilityOneGivesZerosNeverNaN) {
  const double inf = std::numeric_limits<double>::infinity();
  const Shape shape{4, 25};
  auto x = standard_normal(100, 6);
  x[0] = inf;
  x[1] = -inf;
  x[2] = std::numeric_limits<double>::quiet_NaN();
  AlphaDropout<double> layer(1.0, 1);
  for (double v : forward(layer, x, shape)) ASSERT_EQ(v, 0.0);
  std::vector<double> dy(100, 1.0);
  dy[3] = inf;
  for (double v : backward(layer, x, dy, shape)) ASSERT_EQ(v, 0.0);
}

TEST(AlphaDropout, DroppedInfiniteInputsDoNotReachTheOutput) {
  const Shape shape{1000};
  std::vector<double> x(1000, std::numeric_limits<double>::infinity());
  AlphaDropout<double> layer(0.5, 8);
  const auto y = forward(layer, x, shape);
  Index dropped = 0;
  for (double v : y) {
    ASSERT_FALSE(std::isnan(v));
    dropped += std::isfinite(v) ? 1 : 0;
  }
  EXPECT_GT(dropped, 0);
}

class AlphaDropoutStatistics : public ::testing::TestWithParam<double> {};

/// y over n = 2^20 standard-normal inputs: its sample mean has standard error
/// sd(y)/sqrt(n) and its sample variance s² has standard error sqrt((m4 − s⁴)/n), m4 the
/// sample fourth central moment (y is not normal: no 2σ⁴/n shortcut). Both within 4 of
/// their standard errors of 0 and 1.
TEST_P(AlphaDropoutStatistics, KeepsMeanZeroAndVarianceOneOfStandardNormalInput) {
  const double p = GetParam();
  const std::size_t n = std::size_t{1} << 20;
  const auto normal = standard_normal(n, 2024);
  for (bool single : {false, true}) {
    std::vector<double> y;
    if (single) {
      const std::vector<float> x(normal.begin(), normal.end());
      AlphaDropout<float> layer(p, 31);
      const auto yf = forward(layer, x, {static_cast<Index>(n)});
      y.assign(yf.begin(), yf.end());
    } else {
      AlphaDropout<double> layer(p, 31);
      y = forward(layer, normal, {static_cast<Index>(n)});
    }
    double mean = 0.0;
    for (double v : y) mean += v;
    mean /= static_cast<double>(n);
    double m2 = 0.0, m4 = 0.0;
    for (double v : y) {
      const double d2 = (v - mean) * (v - mean);
      m2 += d2;
      m4 += d2 * d2;
    }
    m2 /= static_cast<double>(n);
    m4 /= static_cast<double>(n);
    const double se_mean = std::sqrt(m2 / static_cast<double>(n));
    const double se_var = std::sqrt((m4 - m2 * m2) / static_cast<double>(n));
    EXPECT_LE(std::abs(mean), 4 * se_mean) << "p = " << p << (single ? " float" : " double");
    EXPECT_LE(std::abs(m2 - 1.0), 4 * se_var) << "p = " << p << (single ? " float" : " double");
    // The test has the power to see a wrong constant: plain inverted dropout's variance.
    EXPECT_GT(std::abs(1.0 / (1.0 - p) - 1.0), 4 * se_var) << p;
  }
}

TEST_P(AlphaDropoutStatistics, DropRateIsWithinFourSigmaOfP) {
  const double p = GetParam();
  const Index n = Index{1} << 20;
  AlphaDropout<float> layer(p, 5);
  const std::vector<float> x(static_cast<std::size_t>(n), 0.5f);
  const auto y = forward(layer, x, {n});
  const auto dropped_value = static_cast<float>(layer.constants().dropped_value);
  Index dropped = 0;
  for (float v : y) dropped += v == dropped_value ? 1 : 0;
  const double rate = static_cast<double>(dropped) / static_cast<double>(n);
  EXPECT_LE(std::abs(rate - p), 4 * std::sqrt(p * (1 - p) / static_cast<double>(n))) << rate;
}

INSTANTIATE_TEST_SUITE_P(Probabilities, AlphaDropoutStatistics, ::testing::Values(0.1, 0.5, 0.9));

TEST(FeatureAlphaDropout, WholeChannelsTakeTheDroppedValueTogether) {
  const Shape shape{6, 10, 3, 4};
  const auto normal = standard_normal(720, 9);
  FeatureAlphaDropout<double> layer(0.5, 4);
  const auto y = forward(layer, normal, shape);
  const auto dx = backward(layer, normal, std::vector<double>(720, 1.0), shape);
  const auto c = layer.constants();
  Index dropped = 0;
  for (Index channel = 0; channel < 60; ++channel) {
    const bool kept = dx[static_cast<std::size_t>(channel * 12)] != 0.0;
    dropped += kept ? 0 : 1;
    for (Index j = 0; j < 12; ++j) {
      const auto u = static_cast<std::size_t>(channel * 12 + j);
      if (kept) {
        ASSERT_NEAR(y[u], c.scale * normal[u] + c.offset, 1e-15 * 4) << u;
        ASSERT_EQ(dx[u], c.scale) << u;
      } else {
        ASSERT_EQ(y[u], c.dropped_value) << u;
        ASSERT_EQ(dx[u], 0.0) << u;
      }
    }
  }
  EXPECT_GT(dropped, 0);
  EXPECT_LT(dropped, 60);
}

TEST(AlphaDropout, IdenticalWithOneAndTwoThreads) {
  if (!kHaveOpenMP) GTEST_SKIP() << kNoOpenMP;
  const Index count = 300001;
  const Index grain = Index{1} << 16;  // kernels::apply_masked's chunk, in elements
  const Shape shape{count};
  ASSERT_EQ(eigenet::kernels::chunk_count(count, grain), 5) << "several chunks of the parallel loop";
  ASSERT_EQ(threads_that_ran(2, count, grain), 2) << "the two-thread run must really run two threads";
  const auto normal = standard_normal(static_cast<std::size_t>(count), 10);
  const std::vector<float> x(normal.begin(), normal.end());
  std::vector<std::vector<float>> ys, dxs;
  for (int threads : {1, 2}) {
    const ThreadCount scope(threads);
    AlphaDropout<float> layer(0.3, 6);
    ys.push_back(forward(layer, x, shape));
    dxs.push_back(backward(layer, x, x, shape));
  }
  EXPECT_EQ(std::memcmp(ys[0].data(), ys[1].data(), x.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(dxs[0].data(), dxs[1].data(), x.size() * sizeof(float)), 0);
}

TEST(AlphaDropout, MonteCarloModeStaysStochasticInInference) {
  const Shape shape{8, 8};
  const auto x = standard_normal(64, 11);
  AlphaDropout<double> training(0.4, 3), monte_carlo(0.4, 3);
  const auto expected = forward(training, x, shape);
  monte_carlo.eval();
  monte_carlo.set_monte_carlo(true);
  EXPECT_EQ(forward(monte_carlo, x, shape), expected);
  EXPECT_EQ(monte_carlo.step(), 1u);
}

}  // namespace
