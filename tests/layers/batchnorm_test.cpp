// Behaviour of eigenet::BatchNorm: shape and value checks, training vs inference mode,
// PyTorch's running-statistics convention on hand-computed cases, numerical robustness
// (zero variance, float inputs with a large common offset), thread-count independence and
// gradient accumulation. Gradients themselves are checked by finite differences in
// gradient_test.cpp; agreement with PyTorch's numbers lives in the golden tests.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"
#include "support/threads.hpp"

namespace {

using eigenet::BatchNorm;
using eigenet::BatchNormOptions;
using eigenet::Index;
using eigenet::Shape;
using eigenet::Tensor;
using eigenet::testing::contains;
using eigenet::testing::message_of;

/// A tensor of the given extents holding `values` in row-major order.
template <typename Scalar, int Rank>
Tensor<Scalar, Rank> make(const std::array<Index, Rank>& dims, const std::vector<double>& values) {
  Tensor<Scalar, Rank> t(dims);
  EXPECT_EQ(static_cast<std::size_t>(t.size()), values.size());
  for (Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<Scalar>(values[static_cast<std::size_t>(i)]);
  return t;
}

std::vector<double> normal_values(std::size_t count, std::uint32_t seed, double mean = 0.0, double stddev = 1.0) {
  std::mt19937 engine(seed);
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<double> values(count);
  for (double& v : values) v = dist(engine);
  return values;
}

template <typename Scalar>
std::vector<Scalar> to_vector(const Scalar* data, Index size) {
  return std::vector<Scalar>(data, data + size);
}

// ---------------------------------------------------------------- construction

TEST(BatchNorm, StartsWithPyTorchDefaultsInTrainingMode) {
  BatchNorm<float> bn(3);
  EXPECT_TRUE(bn.is_training());
  EXPECT_EQ(bn.num_features(), 3);
  EXPECT_DOUBLE_EQ(bn.options().eps, 1e-5);
  EXPECT_DOUBLE_EQ(bn.options().momentum.value(), 0.1);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  for (Index c = 0; c < 3; ++c) {
    EXPECT_EQ(bn.weight()(c), 1.0f);
    EXPECT_EQ(bn.bias()(c), 0.0f);
    EXPECT_EQ(bn.running_mean()(c), 0.0f);
    EXPECT_EQ(bn.running_var()(c), 1.0f);
    EXPECT_EQ(bn.weight_grad()(c), 0.0f);
    EXPECT_EQ(bn.bias_grad()(c), 0.0f);
  }
  const auto parameters = bn.parameters();
  ASSERT_EQ(parameters.size(), 2u);
  EXPECT_EQ(parameters[0].name, "weight");
  EXPECT_EQ(parameters[1].name, "bias");
}

TEST(BatchNorm, RejectsBadConstructorArguments) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_THROW(BatchNorm<float>(0), eigenet::ValueError);
  EXPECT_THROW(BatchNorm<float>(-2), eigenet::ValueError);
  for (double eps : {0.0, -1e-5, nan, inf}) EXPECT_THROW(BatchNorm<float>(3, {eps, 0.1}), eigenet::ValueError) << eps;
  for (double momentum : {-0.1, 1.5, nan}) {
    EXPECT_THROW(BatchNorm<float>(3, {1e-5, momentum}), eigenet::ValueError) << momentum;
  }
  EXPECT_TRUE(contains(message_of<eigenet::ValueError>([] { BatchNorm<float>(3, {1e-5, 2.0}); }), "momentum"));
  // eps so small that 1/sqrt(eps) of a constant channel overflows is refused, naming the bound.
  for (double eps : {1e-31, 1e-300}) EXPECT_THROW(BatchNorm<float>(3, {eps, 0.1}), eigenet::ValueError) << eps;
  EXPECT_TRUE(contains(message_of<eigenet::ValueError>([] { BatchNorm<float>(3, {1e-40, 0.1}); }), "at least 1e-30"));
  EXPECT_NO_THROW(BatchNorm<float>(3, {BatchNorm<float>::kMinEps, 0.1}));
  // The Keras preset names the Keras-side value the user gave, not the converted one.
  const std::string keras = message_of<eigenet::ValueError>([] { BatchNormOptions::keras(1.5); });
  EXPECT_TRUE(contains(keras, "keras"));
  EXPECT_TRUE(contains(keras, "not 1.5"));
}

// A constant channel with the smallest eps accepted: finite outputs and gradients in float.
TEST(BatchNorm, SmallestEpsOnAConstantChannelStaysFinite) {
  BatchNormOptions options;
  options.eps = BatchNorm<float>::kMinEps;
  BatchNorm<float> bn(2, options);
  const auto x = make<float, 2>({3, 2}, {5, 1, 5, 2, 5, 4});
  const auto y = bn.forward(x);
  const auto dx = bn.backward(x, make<float, 2>({3, 2}, {1, -2, 3, 0.5, -1, 2}));
  for (Index i = 0; i < y.size(); ++i) {
    EXPECT_TRUE(std::isfinite(y.data()[i])) << i;
    EXPECT_TRUE(std::isfinite(dx.data()[i])) << i;
  }
  EXPECT_EQ(y(0, 0), 0.0f);  // the constant channel gives β
}

// ---------------------------------------------------------------- shapes

TEST(BatchNorm, RejectsARank1InputNamingLayerAndShape) {
  BatchNorm<double> bn(3);
  const Tensor<double, 1> x(4);
  const std::string message = message_of<eigenet::ShapeError>([&] { bn.forward(x); });
  EXPECT_TRUE(contains(message, "BatchNorm(3)"));
  EXPECT_TRUE(contains(message, "rank >= 2"));
  EXPECT_TRUE(contains(message, "(4,)"));
}

TEST(BatchNorm, RejectsTheWrongChannelCountNamingExpectedAndActual) {
  BatchNorm<double> bn(3);
  for (bool training : {true, false}) {
    bn.set_training(training);
    const std::string message = message_of<eigenet::ShapeError>([&] { bn.forward(Tensor<double, 2>(4, 5)); });
    EXPECT_TRUE(contains(message, "BatchNorm(3)"));
    EXPECT_TRUE(contains(message, "3 channels"));
    EXPECT_TRUE(contains(message, "not 5"));
    EXPECT_TRUE(contains(message, "(4, 5)"));
    EXPECT_THROW(bn.forward(Tensor<double, 4>(2, 4, 3, 3)), eigenet::ShapeError);
  }
  EXPECT_EQ(bn.num_batches_tracked(), 0);
}

TEST(BatchNorm, RejectsEmptyDimensions) {
  BatchNorm<double> bn(3);
  EXPECT_THROW(bn.forward(Tensor<double, 2>(0, 3)), eigenet::ShapeError);
  const std::string message = message_of<eigenet::ShapeError>([&] { bn.forward(Tensor<double, 3>(2, 3, 0)); });
  EXPECT_TRUE(contains(message, "(2, 3, 0)"));
}

TEST(BatchNorm, RejectsAnOutputViewOfTheWrongShape) {
  BatchNorm<double> bn(2);
  std::vector<double> x(8, 1.0), y(8);
  x[0] = 2.0;
  const std::string message = message_of<eigenet::ShapeError>([&] {
    bn.forward_into({x.data(), {4, 2}}, {y.data(), {2, 4}});
  });
  EXPECT_TRUE(contains(message, "BatchNorm(2)"));
  EXPECT_TRUE(contains(message, "(4, 2)"));  // expected
  EXPECT_TRUE(contains(message, "(2, 4)"));  // actual
}

TEST(BatchNorm, BackwardChecksShapesAndOrder) {
  BatchNorm<double> bn(2);
  const auto x = make<double, 2>({3, 2}, {1, 2, 3, 5, 4, 7});
  // Backward before any forward.
  EXPECT_THROW(bn.backward(x, x), eigenet::StateError);
  bn.forward(x);
  // dy of the wrong shape names expected and actual.
  const std::string message = message_of<eigenet::ShapeError>([&] { bn.backward(x, Tensor<double, 2>(2, 2)); });
  EXPECT_TRUE(contains(message, "BatchNorm(2)"));
  EXPECT_TRUE(contains(message, "(3, 2)"));
  EXPECT_TRUE(contains(message, "(2, 2)"));
  // x not the input of the last forward.
  const auto other = make<double, 2>({2, 2}, {1, 2, 3, 4});
  EXPECT_THROW(bn.backward(other, other), eigenet::StateError);
}

// ---------------------------------------------------------------- one value per channel

TEST(BatchNorm, TrainingWithOneValuePerChannelThrowsAndLeavesStateUntouched) {
  BatchNorm<float> bn(3);
  // Some history first, so "untouched" is not just "still at the defaults".
  bn.forward(make<float, 2>({2, 3}, {1, 2, 3, 4, 6, 8}));
  const auto mean_before = to_vector(bn.running_mean().data(), 3);
  const auto var_before = to_vector(bn.running_var().data(), 3);
  ASSERT_EQ(bn.num_batches_tracked(), 1);

  const auto expect_rejected = [&](auto&& x) {
    const std::string message = message_of<eigenet::ValueError>([&] { bn.forward(x); });
    EXPECT_TRUE(contains(message, "BatchNorm(3)"));
    EXPECT_TRUE(contains(message, "more than 1 value per channel"));
    EXPECT_EQ(to_vector(bn.running_mean().data(), 3), mean_before);
    EXPECT_EQ(to_vector(bn.running_var().data(), 3), var_before);
    EXPECT_EQ(bn.num_batches_tracked(), 1);
  };
  expect_rejected(make<float, 2>({1, 3}, {1, 2, 3}));
  expect_rejected(make<float, 4>({1, 3, 1, 1}, {1, 2, 3}));
  expect_rejected(make<float, 3>({1, 3, 1}, {1, 2, 3}));

  // Two values per channel are enough, whether from N or from the spatial extent.
  EXPECT_NO_THROW(bn.forward(make<float, 3>({1, 3, 2}, {1, 2, 3, 4, 5, 7})));
  EXPECT_EQ(bn.num_batches_tracked(), 2);
  // Inference has no such limit.
  bn.eval();
  EXPECT_NO_THROW(bn.forward(make<float, 2>({1, 3}, {1, 2, 3})));
}

// A NaN or inf anywhere in a training batch would make the running statistics NaN for
// good (and, through ReLU in older versions, a silently dead model): it throws instead,
// naming the channel, and nothing changes.
template <typename Scalar>
void check_non_finite_training_input(bool channels_last) {
  BatchNormOptions options;
  if (channels_last) options.channel_axis = eigenet::ChannelAxis::Last;
  BatchNorm<Scalar> bn(3, options);
  Tensor<Scalar, 4> x = channels_last ? Tensor<Scalar, 4>(2, 2, 2, 3) : Tensor<Scalar, 4>(2, 3, 2, 2);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<Scalar>(std::sin(0.7 * static_cast<double>(i)));
  bn.forward(x);
  const auto mean_before = to_vector(bn.running_mean().data(), 3);
  const auto var_before = to_vector(bn.running_var().data(), 3);
  const std::vector<Scalar> bad_values{std::numeric_limits<Scalar>::quiet_NaN(),
                                       std::numeric_limits<Scalar>::infinity(),
                                       -std::numeric_limits<Scalar>::infinity()};
  for (const Scalar bad : bad_values) {
    Tensor<Scalar, 4> poisoned = x;
    poisoned.data()[17] = bad;  // channel 1 (first) or channel 2 (last)
    const std::string message = message_of<eigenet::ValueError>([&] { bn.forward(poisoned); });
    EXPECT_TRUE(contains(message, "BatchNorm(3)"));
    EXPECT_TRUE(contains(message, channels_last ? "channel 2" : "channel 1"));
    EXPECT_TRUE(contains(message, "NaN or infinite"));
    EXPECT_EQ(to_vector(bn.running_mean().data(), 3), mean_before);
    EXPECT_EQ(to_vector(bn.running_var().data(), 3), var_before);
    EXPECT_EQ(bn.num_batches_tracked(), 1);
  }
}

// After a forward that threw, backward has no forward to follow: it refuses instead of
// running on the previous batch's cached statistics.
TEST(BatchNorm, BackwardAfterAForwardThatThrewIsRefused) {
  BatchNorm<float> bn(2);
  const auto x = make<float, 2>({3, 2}, {1, 2, 3, 5, 4, 9});
  bn.forward(x);
  auto poisoned = x;
  poisoned(1, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(bn.forward(poisoned), eigenet::ValueError);
  const std::string message = message_of<eigenet::StateError>([&] { bn.backward(x, x); });
  EXPECT_TRUE(contains(message, "after a forward that threw"));
  bn.forward(x);
  EXPECT_NO_THROW(bn.backward(x, x));
  // A typed forward rejected on shape (before forward_into runs) counts too.
  EXPECT_THROW(bn.forward(make<float, 2>({2, 3}, {1, 2, 3, 4, 5, 6})), eigenet::ShapeError);
  EXPECT_THROW(bn.backward(x, x), eigenet::StateError);
}

TEST(BatchNorm, NonFiniteTrainingInputThrowsAndLeavesStateUntouchedFloat) {
  check_non_finite_training_input<float>(false);
  check_non_finite_training_input<float>(true);
}
TEST(BatchNorm, NonFiniteTrainingInputThrowsAndLeavesStateUntouchedDouble) {
  check_non_finite_training_input<double>(false);
  check_non_finite_training_input<double>(true);
}

// Finite float inputs whose squares overflow float (|x − mean| ~ 1e19: four squares sum
// past float's 3.4e38) still normalise: the statistics fall back to squaring in double.
// A variance beyond float's range cannot be stored in the running variance: that batch is
// refused, with nothing changed; without running statistics it normalises.
std::vector<double> spread_values(double scale) {
  std::vector<double> values;
  for (int n = 0; n < 8; ++n) {
    values.push_back((n % 2 ? 1.0 : -1.0) * scale);           // channel 0: ±scale
    values.push_back(static_cast<double>(n) * scale * 1e-3);  // channel 1: a ramp
  }
  return values;
}

void expect_normalised_like_double(const Tensor<float, 2>& y, const std::vector<double>& values,
                                   BatchNormOptions options) {
  BatchNorm<double> reference(2, options);
  const auto expected = reference.forward(make<double, 2>({8, 2}, values));
  for (Index i = 0; i < y.size(); ++i)
    EXPECT_NEAR(y.data()[i], expected.data()[i], 1e-5 * std::max(1.0, std::abs(expected.data()[i])));
  EXPECT_NEAR(y(1, 0), 1.0f, 1e-5f);
}

TEST(BatchNorm, FloatInputsWhoseSquaresOverflowFloatStillNormalise) {
  for (const double scale : {1e19, 1.5e19}) {
    BatchNorm<float> bn(2);
    BatchNorm<double> reference(2);
    const auto values = spread_values(scale);
    const auto y = bn.forward(make<float, 2>({8, 2}, values));
    expect_normalised_like_double(y, values, {});
    reference.forward(make<double, 2>({8, 2}, values));
    for (Index c = 0; c < 2; ++c) {
      EXPECT_TRUE(std::isfinite(bn.running_var()(c))) << scale;
      EXPECT_NEAR(bn.running_var()(c) / reference.running_var()(c), 1.0, 1e-5) << scale;
    }
  }
}

TEST(BatchNorm, AVarianceBeyondFloatRangeIsRefusedOrNormalisedWithoutRunningStatistics) {
  for (const double scale : {1e20, 1e30}) {
    BatchNorm<float> bn(2);
    const auto x = make<float, 2>({8, 2}, spread_values(scale));
    const std::string message = message_of<eigenet::ValueError>([&] { bn.forward(x); });
    EXPECT_TRUE(contains(message, "channel 0"));
    EXPECT_TRUE(contains(message, "BatchNorm<double>"));
    EXPECT_EQ(bn.num_batches_tracked(), 0);
    EXPECT_EQ(bn.running_var()(0), 1.0f);

    BatchNormOptions no_running;
    no_running.track_running_stats = false;
    BatchNorm<float> stateless(2, no_running);
    expect_normalised_like_double(stateless.forward(x), spread_values(scale), no_running);
  }
}

// Running statistics a user (or a bad checkpoint) set that cannot normalise throw in
// inference instead of giving NaN.
TEST(BatchNorm, RunningStatisticsThatCannotNormaliseThrowInInference) {
  BatchNorm<float> bn(3);
  bn.eval();
  const auto x = make<float, 2>({2, 3}, {1, 2, 3, 4, 5, 6});
  const std::vector<std::pair<int, float>> bad{
      {0, -1.0f}, {1, std::numeric_limits<float>::quiet_NaN()}, {2, std::numeric_limits<float>::infinity()}};
  for (const auto& [channel, value] : bad) {
    bn.running_var().setConstant(1.0f);
    bn.running_var()(channel) = value;
    const std::string message = message_of<eigenet::StateError>([&] { bn.forward(x); });
    EXPECT_TRUE(contains(message, "BatchNorm(3)"));
    EXPECT_TRUE(contains(message, "channel " + std::to_string(channel)));
  }
  bn.running_var().setConstant(1.0f);
  bn.running_mean()(1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(bn.forward(x), eigenet::StateError);
  bn.running_mean()(1) = 0.0f;
  bn.running_var()(2) = 0.0f;  // zero variance is fine: eps keeps it positive
  EXPECT_NO_THROW(bn.forward(x));
}

// The layer's tensors may be written but not resized or given new storage: an optimiser
// holds their addresses. Assigning copies into the existing storage; other extents throw.
TEST(BatchNorm, OwnTensorsKeepTheirStorageAndShape) {
  BatchNorm<float> bn(3);
  const float* weight = bn.weight().data();
  const float* running_var = bn.running_var().data();
  std::string message = message_of<eigenet::ShapeError>([&] { bn.weight() = Tensor<float, 1>(5); });
  EXPECT_TRUE(contains(message, "BatchNorm(3): weight has shape (3,)"));
  EXPECT_TRUE(contains(message, "cannot assign (5,)"));
  message = message_of<eigenet::ShapeError>([&] { bn.running_var() = Tensor<float, 1>(2); });
  EXPECT_TRUE(contains(message, "running_var"));
  EXPECT_EQ(to_vector(bn.weight().data(), 3), std::vector<float>(3, 1.0f)) << "a refused assignment changes nothing";
  // A temporary of the right shape (a loaded checkpoint) is copied in: same storage.
  bn.weight() = make<float, 1>({3}, {2, 3, 4});
  bn.running_var() = make<float, 1>({3}, {0.5, 1, 2});
  EXPECT_EQ(bn.weight().data(), weight);
  EXPECT_EQ(bn.running_var().data(), running_var);
  EXPECT_EQ(to_vector(bn.weight().data(), 3), (std::vector<float>{2, 3, 4}));
  EXPECT_EQ(bn.parameters()[0].value, weight);
  bn.bias().setValues({1, 2, 3});
  EXPECT_EQ(bn.bias()(2), 3.0f);
  const Tensor<float, 1> copy = bn.running_var();
  EXPECT_EQ(copy(0), 0.5f);
}

// With track_running_stats = false a batch of one has no statistics in eval() either; the
// message says why (not "training mode").
TEST(BatchNorm, OneValuePerChannelWithoutRunningStatisticsNamesTheReason) {
  BatchNormOptions options;
  options.track_running_stats = false;
  BatchNorm<float> bn(3, options);
  bn.eval();
  const std::string message = message_of<eigenet::ValueError>([&] { bn.forward(make<float, 2>({1, 3}, {1, 2, 3})); });
  EXPECT_TRUE(contains(message, "track_running_stats = false"));
}

static_assert(!std::is_copy_assignable_v<BatchNorm<float>> && !std::is_move_assignable_v<BatchNorm<float>>,
              "layers are not assignable: an optimiser holds their parameters' addresses");
static_assert(std::is_copy_constructible_v<BatchNorm<float>>, "layers copy-construct (clone)");

// ---------------------------------------------------------------- modes

TEST(BatchNorm, EvalUsesRunningStatisticsAndDoesNotModifyThem) {
  BatchNorm<double> bn(2);
  bn.running_mean().setValues({1.0, -2.0});
  bn.running_var().setValues({4.0, 0.25});
  bn.weight().setValues({2.0, 3.0});
  bn.bias().setValues({0.5, -1.0});
  bn.eval();
  const auto x = make<double, 2>({3, 2}, {1, 0, 3, -2, -1, 5});
  const auto y = bn.forward(x);
  const double eps = 1e-5;
  const double mean[2] = {1.0, -2.0}, var[2] = {4.0, 0.25}, gamma[2] = {2.0, 3.0}, beta[2] = {0.5, -1.0};
  for (Index n = 0; n < 3; ++n)
    for (Index c = 0; c < 2; ++c)
      EXPECT_NEAR(y(n, c), gamma[c] * (x(n, c) - mean[c]) / std::sqrt(var[c] + eps) + beta[c], 1e-12) << n << "," << c;
  EXPECT_EQ(bn.running_mean()(0), 1.0);
  EXPECT_EQ(bn.running_mean()(1), -2.0);
  EXPECT_EQ(bn.running_var()(0), 4.0);
  EXPECT_EQ(bn.running_var()(1), 0.25);
  EXPECT_EQ(bn.num_batches_tracked(), 0);

  // Inference backward treats the statistics as constants: dx = γ dy / sqrt(var + eps).
  const auto dy = make<double, 2>({3, 2}, {1, -1, 0.5, 2, -3, 0.25});
  const auto dx = bn.backward(x, dy);
  for (Index n = 0; n < 3; ++n)
    for (Index c = 0; c < 2; ++c) EXPECT_NEAR(dx(n, c), gamma[c] * dy(n, c) / std::sqrt(var[c] + eps), 1e-12);
}

TEST(BatchNorm, TrainUpdatesRunningStatisticsAgainAfterEval) {
  BatchNorm<double> bn(1);
  const auto x = make<double, 2>({4, 1}, {1, 2, 3, 4});
  bn.eval();
  bn.forward(x);
  EXPECT_EQ(bn.running_mean()(0), 0.0);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  bn.train();
  bn.forward(x);
  EXPECT_NEAR(bn.running_mean()(0), 0.25, 1e-15);
  EXPECT_EQ(bn.num_batches_tracked(), 1);
}

TEST(BatchNorm, BackwardUsesTheModeOfTheForwardItFollows) {
  const auto x = make<double, 2>({4, 2}, {1, 0, 2, 5, 4, -1, 7, 3});
  const auto dy = make<double, 2>({4, 2}, {0.3, -1, 2, 0.5, -0.7, 1, 0.1, 0.2});
  BatchNorm<double> reference(2), switched(2);
  reference.forward(x);
  switched.forward(x);
  switched.eval();  // after forward: backward must still differentiate through batch statistics
  const auto expected = reference.backward(x, dy);
  const auto actual = switched.backward(x, dy);
  for (Index i = 0; i < expected.size(); ++i) EXPECT_EQ(actual.data()[i], expected.data()[i]) << i;
}

// ---------------------------------------------------------------- PyTorch's convention

TEST(BatchNorm, MomentumWeightsTheNewBatch) {
  // x = 1, 2, 3, 4: mean 2.5, Σ(x − mean)² = 5, unbiased variance 5/3.
  const auto x = make<double, 2>({4, 1}, {1, 2, 3, 4});
  BatchNorm<double> bn(1);
  bn.forward(x);
  EXPECT_NEAR(bn.running_mean()(0), 0.9 * 0.0 + 0.1 * 2.5, 1e-15);
  EXPECT_NEAR(bn.running_var()(0), 0.9 * 1.0 + 0.1 * 5.0 / 3.0, 1e-15);
  bn.forward(x);
  EXPECT_NEAR(bn.running_mean()(0), 0.9 * 0.25 + 0.1 * 2.5, 1e-15);
  EXPECT_NEAR(bn.running_var()(0), 0.9 * (0.9 + 0.5 / 3.0) + 0.1 * 5.0 / 3.0, 1e-15);
  EXPECT_EQ(bn.num_batches_tracked(), 2);

  // A custom momentum, and the two ends of its range.
  BatchNorm<double> quarter(1, {1e-5, 0.25});
  quarter.forward(x);
  EXPECT_NEAR(quarter.running_mean()(0), 0.25 * 2.5, 1e-15);
  EXPECT_NEAR(quarter.running_var()(0), 0.75 + 0.25 * 5.0 / 3.0, 1e-15);
  BatchNorm<double> frozen(1, {1e-5, 0.0});
  frozen.forward(x);
  EXPECT_EQ(frozen.running_mean()(0), 0.0);
  EXPECT_EQ(frozen.running_var()(0), 1.0);
  BatchNorm<double> latest(1, {1e-5, 1.0});
  latest.forward(x);
  EXPECT_NEAR(latest.running_mean()(0), 2.5, 1e-15);
  EXPECT_NEAR(latest.running_var()(0), 5.0 / 3.0, 1e-15);
}

TEST(BatchNorm, NormalisesWithBiasedVarianceButStoresUnbiased) {
  // The same four values per channel as (N, C) = (4, 1) and as (N, C, L) = (2, 1, 2).
  const double eps = 1e-5, biased = 1.25, unbiased = 5.0 / 3.0;
  const std::vector<double> values{1, 2, 3, 4};
  BatchNorm<double> flat(1), spatial(1);
  const auto y_flat = flat.forward(make<double, 2>({4, 1}, values));
  const auto y_spatial = spatial.forward(make<double, 3>({2, 1, 2}, values));
  for (Index i = 0; i < 4; ++i) {
    const double expected = (values[static_cast<std::size_t>(i)] - 2.5) / std::sqrt(biased + eps);
    EXPECT_NEAR(y_flat.data()[i], expected, 1e-14) << i;
    EXPECT_NEAR(y_spatial.data()[i], expected, 1e-14) << i;
  }
  EXPECT_NEAR(flat.running_var()(0), 0.9 + 0.1 * unbiased, 1e-15);
  EXPECT_NEAR(spatial.running_var()(0), 0.9 + 0.1 * unbiased, 1e-15);
}

TEST(BatchNorm, AffineAndPerChannelStatisticsOnAHandComputedCase) {
  // (N, C, L) = (2, 2, 2): channel 0 holds 0, 2, 4, 6 (mean 3, biased var 5),
  // channel 1 holds 1, 1, 3, 3 (mean 2, biased var 1).
  BatchNorm<double> bn(2, {0.01, 0.1});
  bn.weight().setValues({2.0, -1.0});
  bn.bias().setValues({1.0, 0.5});
  const auto x = make<double, 3>({2, 2, 2}, {0, 2, 1, 1, 4, 6, 3, 3});
  const auto y = bn.forward(x);
  const double mean[2] = {3, 2}, var[2] = {5, 1}, gamma[2] = {2, -1}, beta[2] = {1, 0.5};
  for (Index n = 0; n < 2; ++n)
    for (Index c = 0; c < 2; ++c)
      for (Index l = 0; l < 2; ++l)
        EXPECT_NEAR(y(n, c, l), gamma[c] * (x(n, c, l) - mean[c]) / std::sqrt(var[c] + 0.01) + beta[c], 1e-14);
  EXPECT_NEAR(bn.running_mean()(0), 0.3, 1e-15);
  EXPECT_NEAR(bn.running_mean()(1), 0.2, 1e-15);
  EXPECT_NEAR(bn.running_var()(0), 0.9 + 0.1 * 20.0 / 3.0, 1e-15);
  EXPECT_NEAR(bn.running_var()(1), 0.9 + 0.1 * 4.0 / 3.0, 1e-15);
}

// ---------------------------------------------------------------- robustness

template <typename Scalar>
void check_zero_variance_channel() {
  // Channel 0 is constant: its variance is 0 and only eps keeps inv_std finite.
  BatchNorm<Scalar> bn(2);
  bn.weight().setValues({Scalar(1.5), Scalar(2)});
  bn.bias().setValues({Scalar(0.7), Scalar(-0.2)});
  const auto x = make<Scalar, 2>({5, 2}, {3, 1, 3, -2, 3, 0.5, 3, 4, 3, 2});
  const auto y = bn.forward(x);
  for (Index n = 0; n < 5; ++n) {
    EXPECT_EQ(y(n, 0), Scalar(0.7)) << n;
    EXPECT_TRUE(std::isfinite(y(n, 1))) << n;
  }
  EXPECT_NEAR(bn.running_var()(0), 0.9, 1e-6);

  const std::vector<double> grad{0.3, -1, 2, 0.5, -0.7, 1, 0.1, 0.2, 0.6, -0.4};
  const auto dy = make<Scalar, 2>({5, 2}, grad);
  const auto dx = bn.backward(x, dy);
  for (Index i = 0; i < dx.size(); ++i) EXPECT_TRUE(std::isfinite(dx.data()[i])) << i;
  for (Index c = 0; c < 2; ++c) {
    EXPECT_TRUE(std::isfinite(bn.weight_grad()(c))) << c;
    EXPECT_TRUE(std::isfinite(bn.bias_grad()(c))) << c;
  }
  // x̂ = 0 on the constant channel, so dγ = 0 and dx = γ/sqrt(eps) · (dy − mean(dy)).
  EXPECT_EQ(bn.weight_grad()(0), Scalar(0));
  double mean_grad = 0;
  for (Index n = 0; n < 5; ++n) mean_grad += grad[static_cast<std::size_t>(2 * n)] / 5;
  EXPECT_NEAR(bn.bias_grad()(0), 5 * mean_grad, 1e-5);
  for (Index n = 0; n < 5; ++n) {
    const double expected = 1.5 / std::sqrt(1e-5) * (grad[static_cast<std::size_t>(2 * n)] - mean_grad);
    EXPECT_NEAR(dx(n, 0), expected, 1e-4 * std::abs(expected) + 1e-6) << n;
  }
}

TEST(BatchNorm, ZeroVarianceChannelGivesBetaAndFiniteGradientsInDouble) { check_zero_variance_channel<double>(); }
TEST(BatchNorm, ZeroVarianceChannelGivesBetaAndFiniteGradientsInFloat) { check_zero_variance_channel<float>(); }

// Float inputs x = offset_c + noise with |offset| = 1e4 and noise ~ N(0, 1): a float sum of
// squares loses everything here, and y = x·scale + (β − mean·scale) loses ~1e-3 per element.
// Computed right (statistics in double, x − mean exact), the float output is within ~1e-6
// of the exact normalisation of the same float inputs; we allow 1e-4.
class BatchNormLargeOffset : public ::testing::TestWithParam<Shape> {};

TEST_P(BatchNormLargeOffset, FloatMatchesDoubleComputation) {
  const Shape shape = GetParam();
  const Index samples = shape[0], channels = shape[1];
  const Index spatial = eigenet::element_count(shape) / (samples * channels);
  const Index count = samples * spatial;  // values per channel
  ASSERT_EQ(count, 4096);
  const std::vector<double> offsets{1e4, -1e4, 1e4 + 37.25, 9999.5, -12345.0};
  ASSERT_EQ(channels, static_cast<Index>(offsets.size()));

  // The inputs, rounded to float once; everything below sees the same values.
  const auto noise = normal_values(static_cast<std::size_t>(eigenet::element_count(shape)), 2024);
  std::vector<float> x_float(noise.size());
  std::vector<double> x_double(noise.size());
  for (Index i = 0; i < static_cast<Index>(noise.size()); ++i) {
    const Index c = (i / spatial) % channels;
    x_float[static_cast<std::size_t>(i)] =
        static_cast<float>(offsets[static_cast<std::size_t>(c)] + noise[static_cast<std::size_t>(i)]);
    x_double[static_cast<std::size_t>(i)] = x_float[static_cast<std::size_t>(i)];
  }
  const auto at = [&](Index n, Index c, Index s) { return static_cast<std::size_t>((n * channels + c) * spatial + s); };

  // Two-pass reference in double.
  std::vector<double> mean(static_cast<std::size_t>(channels)), sq_dev(static_cast<std::size_t>(channels));
  for (Index c = 0; c < channels; ++c) {
    double sum = 0;
    for (Index n = 0; n < samples; ++n)
      for (Index s = 0; s < spatial; ++s) sum += x_double[at(n, c, s)];
    mean[static_cast<std::size_t>(c)] = sum / static_cast<double>(count);
    double sq = 0;
    for (Index n = 0; n < samples; ++n)
      for (Index s = 0; s < spatial; ++s) sq += std::pow(x_double[at(n, c, s)] - mean[static_cast<std::size_t>(c)], 2);
    sq_dev[static_cast<std::size_t>(c)] = sq;
  }

  BatchNorm<float> bn_float(channels);
  BatchNorm<double> bn_double(channels);
  std::vector<float> y_float(x_float.size());
  std::vector<double> y_double(x_double.size());
  bn_float.forward_into({x_float.data(), shape}, {y_float.data(), shape});
  bn_double.forward_into({x_double.data(), shape}, {y_double.data(), shape});

  double worst = 0;
  for (Index n = 0; n < samples; ++n)
    for (Index c = 0; c < channels; ++c)
      for (Index s = 0; s < spatial; ++s) {
        const auto i = at(n, c, s);
        const auto cc = static_cast<std::size_t>(c);
        const double expected = (x_double[i] - mean[cc]) / std::sqrt(sq_dev[cc] / static_cast<double>(count) + 1e-5);
        ASSERT_TRUE(std::isfinite(y_float[i]));
        worst = std::max(worst, std::abs(static_cast<double>(y_float[i]) - expected));
        EXPECT_NEAR(y_double[i], expected, 1e-9);
      }
  EXPECT_LT(worst, 1e-4) << "largest |float output − exact normalisation|";

  for (Index c = 0; c < channels; ++c) {
    const auto cc = static_cast<std::size_t>(c);
    const double running_mean = 0.1 * mean[cc];
    const double running_var = 0.9 + 0.1 * sq_dev[cc] / static_cast<double>(count - 1);
    EXPECT_NEAR(bn_double.running_mean()(c), running_mean, 1e-12 * std::abs(running_mean)) << c;
    EXPECT_NEAR(bn_double.running_var()(c), running_var, 1e-12 * running_var) << c;
    EXPECT_NEAR(bn_float.running_mean()(c), bn_double.running_mean()(c), 1e-6 * std::abs(running_mean)) << c;
    EXPECT_NEAR(bn_float.running_var()(c), bn_double.running_var()(c), 1e-5 * running_var) << c;
  }

  // Inference mode with running statistics equal to this batch's (rounded to float, so both
  // layers hold the same values): the output is again O(1), and the float path must
  // subtract the large running mean before scaling, too.
  bn_float.eval();
  bn_double.eval();
  for (Index c = 0; c < channels; ++c) {
    const auto cc = static_cast<std::size_t>(c);
    bn_float.running_mean()(c) = static_cast<float>(mean[cc]);
    bn_float.running_var()(c) = static_cast<float>(sq_dev[cc] / static_cast<double>(count));
    bn_double.running_mean()(c) = bn_float.running_mean()(c);
    bn_double.running_var()(c) = bn_float.running_var()(c);
  }
  bn_float.forward_into({x_float.data(), shape}, {y_float.data(), shape});
  bn_double.forward_into({x_double.data(), shape}, {y_double.data(), shape});
  worst = 0;
  for (std::size_t i = 0; i < y_float.size(); ++i) {
    ASSERT_LT(std::abs(y_double[i]), 10.0) << "inference output should be O(1)";
    worst = std::max(worst, std::abs(static_cast<double>(y_float[i]) - y_double[i]));
  }
  EXPECT_LT(worst, 1e-4) << "largest |float − double| in inference mode";
}

INSTANTIATE_TEST_SUITE_P(FlatAndSpatial, BatchNormLargeOffset,
                         ::testing::Values(Shape{4096, 5}, Shape{256, 5, 4, 4}, Shape{1024, 5, 4}));

// ---------------------------------------------------------------- threads

template <typename Scalar>
struct BatchNormRun {
  std::vector<Scalar> y_train, dx_train, y_eval, dx_eval, running_mean, running_var, weight_grad, bias_grad;
};

template <typename Scalar>
BatchNormRun<Scalar> run_batchnorm(const Shape& shape, const std::vector<Scalar>& x, const std::vector<Scalar>& dy) {
  BatchNorm<Scalar> bn(shape[1]);
  BatchNormRun<Scalar> run;
  run.y_train.resize(x.size());
  run.dx_train.resize(x.size());
  run.y_eval.resize(x.size());
  run.dx_eval.resize(x.size());
  bn.forward_into({x.data(), shape}, {run.y_train.data(), shape});
  bn.backward_into({x.data(), shape}, {dy.data(), shape}, {run.dx_train.data(), shape});
  bn.eval();
  bn.forward_into({x.data(), shape}, {run.y_eval.data(), shape});
  bn.backward_into({x.data(), shape}, {dy.data(), shape}, {run.dx_eval.data(), shape});
  const Index c = shape[1];
  run.running_mean = to_vector(bn.running_mean().data(), c);
  run.running_var = to_vector(bn.running_var().data(), c);
  run.weight_grad = to_vector(bn.weight_grad().data(), c);
  run.bias_grad = to_vector(bn.bias_grad().data(), c);
  return run;
}

template <typename Scalar>
bool same_bits(const std::vector<Scalar>& a, const std::vector<Scalar>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(Scalar)) == 0;
}

template <typename Scalar>
void check_thread_independence(const Shape& shape) {
  using eigenet::kernels::chunk_count;
  using eigenet::kernels::rows_per_chunk;
  using eigenet::testing::threads_that_ran;
  if (!eigenet::testing::kHaveOpenMP) GTEST_SKIP() << eigenet::testing::kNoOpenMP;
  // The kernels split the samples into chunks of ~2^18 elements for the statistics and
  // gradient sums and ~2^15 for the element-wise passes (kernels/batchnorm.hpp): both must
  // be several chunks, and the two-thread run must really run two threads.
  const Index samples = shape[0], sample_elements = eigenet::element_count(shape) / samples;
  const Index reduce_grain = rows_per_chunk(sample_elements, Index{1} << 18);
  const Index pass_grain = rows_per_chunk(sample_elements);
  ASSERT_GE(chunk_count(samples, reduce_grain), 4) << "the reductions must run in several chunks";
  ASSERT_GE(chunk_count(samples, pass_grain), 4) << "the element-wise passes must run in several chunks";
  ASSERT_EQ(threads_that_ran(2, samples, reduce_grain), 2) << "the two-thread run must really run two threads";
  ASSERT_EQ(threads_that_ran(2, samples, pass_grain), 2) << "the two-thread run must really run two threads";
  const auto count = static_cast<std::size_t>(eigenet::element_count(shape));
  const auto x_values = normal_values(count, 11, 3.0, 2.0), dy_values = normal_values(count, 12);
  const std::vector<Scalar> x(x_values.begin(), x_values.end()), dy(dy_values.begin(), dy_values.end());
  BatchNormRun<Scalar> one, two;
  {
    const eigenet::testing::ThreadCount scope(1);
    one = run_batchnorm(shape, x, dy);
  }
  {
    const eigenet::testing::ThreadCount scope(2);
    two = run_batchnorm(shape, x, dy);
  }
  EXPECT_TRUE(same_bits(one.y_train, two.y_train));
  EXPECT_TRUE(same_bits(one.dx_train, two.dx_train));
  EXPECT_TRUE(same_bits(one.y_eval, two.y_eval));
  EXPECT_TRUE(same_bits(one.dx_eval, two.dx_eval));
  EXPECT_TRUE(same_bits(one.running_mean, two.running_mean));
  EXPECT_TRUE(same_bits(one.running_var, two.running_var));
  EXPECT_TRUE(same_bits(one.weight_grad, two.weight_grad));
  EXPECT_TRUE(same_bits(one.bias_grad, two.bias_grad));
}

// Large enough that every kernel splits the batch into several chunks: 4 for the
// reductions (the old (8192, 32) and (4096, 48) were ONE chunk there, (64, 8, 32, 32) two),
// 25 to 32 for the element-wise passes.
TEST(BatchNorm, BitIdenticalWithOneAndTwoThreadsFlat) { check_thread_independence<float>({32768, 32}); }
TEST(BatchNorm, BitIdenticalWithOneAndTwoThreadsSpatial) { check_thread_independence<float>({128, 8, 32, 32}); }
TEST(BatchNorm, BitIdenticalWithOneAndTwoThreadsDouble) { check_thread_independence<double>({16384, 48}); }

// ---------------------------------------------------------------- gradient accumulation

TEST(BatchNorm, BackwardAccumulatesParameterGradientsAndZeroGradResets) {
  BatchNorm<double> bn(3);
  bn.weight().setValues({1.5, -0.5, 2.0});
  const auto x = make<double, 3>({4, 3, 2}, normal_values(24, 5, 1.0, 2.0));
  const auto dy = make<double, 3>({4, 3, 2}, normal_values(24, 6));
  bn.forward(x);
  const auto dx_first = bn.backward(x, dy);
  const auto weight_once = to_vector(bn.weight_grad().data(), 3);
  const auto bias_once = to_vector(bn.bias_grad().data(), 3);
  for (Index c = 0; c < 3; ++c) {
    EXPECT_NE(weight_once[static_cast<std::size_t>(c)], 0.0);
    EXPECT_NE(bias_once[static_cast<std::size_t>(c)], 0.0);
  }

  // A second micro-batch adds; dx itself is not accumulated.
  const auto dx_second = bn.backward(x, dy);
  for (Index c = 0; c < 3; ++c) {
    EXPECT_NEAR(bn.weight_grad()(c), 2 * weight_once[static_cast<std::size_t>(c)], 1e-12) << c;
    EXPECT_NEAR(bn.bias_grad()(c), 2 * bias_once[static_cast<std::size_t>(c)], 1e-12) << c;
  }
  for (Index i = 0; i < dx_first.size(); ++i) EXPECT_EQ(dx_first.data()[i], dx_second.data()[i]) << i;

  // Parameter-only backward accumulates the same amounts.
  bn.backward_parameters(x, dy);
  for (Index c = 0; c < 3; ++c)
    EXPECT_NEAR(bn.weight_grad()(c), 3 * weight_once[static_cast<std::size_t>(c)], 1e-12) << c;

  bn.zero_grad();
  for (Index c = 0; c < 3; ++c) {
    EXPECT_EQ(bn.weight_grad()(c), 0.0);
    EXPECT_EQ(bn.bias_grad()(c), 0.0);
  }
  bn.backward(x, dy);
  EXPECT_EQ(to_vector(bn.weight_grad().data(), 3), weight_once);
  EXPECT_EQ(to_vector(bn.bias_grad().data(), 3), bias_once);
}

TEST(BatchNorm, ParameterViewsPointAtTheLayersTensors) {
  BatchNorm<float> bn(4);
  auto parameters = bn.parameters();
  ASSERT_EQ(parameters.size(), 2u);
  EXPECT_EQ(parameters[0].value, bn.weight().data());
  EXPECT_EQ(parameters[0].grad, bn.weight_grad().data());
  EXPECT_EQ(parameters[0].size, 4);
  EXPECT_EQ(parameters[1].value, bn.bias().data());
  EXPECT_EQ(parameters[1].grad, bn.bias_grad().data());
  EXPECT_EQ(parameters[1].size, 4);
}

}  // namespace
