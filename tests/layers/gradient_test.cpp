// Finite-difference gradient checks, in double, for every layer, in training and
// inference mode, on inputs and parameters — all through one checker
// (tests/support/gradcheck.hpp).
#include <gtest/gtest.h>

#include "eigenet/eigenet.hpp"
#include "support/gradcheck.hpp"

namespace {

using eigenet::BatchNorm;
using eigenet::Dense;
using eigenet::Dropout;
using eigenet::ReLU;
using eigenet::Sequential;
using eigenet::Shape;
using eigenet::testing::check_layer_gradients;
using eigenet::testing::random_values;

// Gives a BatchNorm non-trivial γ, β and running statistics, so no term of its gradient
// can hide behind a 1 or a 0.
void randomise(BatchNorm<double>& bn) {
  const auto c = bn.num_features();
  const auto gamma = random_values(c, 1, 0.5, 2.0), beta = random_values(c, 2);
  const auto mean = random_values(c, 3), var = random_values(c, 4, 0.5, 3.0);
  for (eigenet::Index i = 0; i < c; ++i) {
    bn.weight()(i) = gamma[static_cast<std::size_t>(i)];
    bn.bias()(i) = beta[static_cast<std::size_t>(i)];
    bn.running_mean()(i) = mean[static_cast<std::size_t>(i)];
    bn.running_var()(i) = var[static_cast<std::size_t>(i)];
  }
}

class BatchNormGradient : public ::testing::TestWithParam<std::tuple<Shape, bool>> {};

TEST_P(BatchNormGradient, MatchesFiniteDifferences) {
  const auto& [shape, training] = GetParam();
  BatchNorm<double> bn(shape[1]);
  randomise(bn);
  bn.set_training(training);
  // Inputs with a mean far from 0 exercise the shifted statistics.
  const auto x = random_values(eigenet::element_count(shape), 7, 2.0, 5.0);
  EXPECT_EQ(check_layer_gradients(bn, shape, x), 0);
}

INSTANTIATE_TEST_SUITE_P(AllRanksBothModes, BatchNormGradient,
                         ::testing::Combine(::testing::Values(Shape{6, 4}, Shape{3, 2, 5}, Shape{2, 3, 3, 4},
                                                              Shape{2, 2, 2, 3, 2}),
                                            ::testing::Bool()));

TEST(DenseGradient, MatchesFiniteDifferencesForBothInits) {
  for (auto init : {eigenet::Init::HeUniform, eigenet::Init::GlorotUniform}) {
    Dense<double> dense(5, 3, init, 42);
    const auto bias = random_values(3, 9);
    for (int i = 0; i < 3; ++i) dense.bias()(i) = bias[static_cast<std::size_t>(i)];
    EXPECT_EQ(check_layer_gradients(dense, {4, 5}, random_values(20, 8)), 0);
    dense.eval();
    EXPECT_EQ(check_layer_gradients(dense, {4, 5}, random_values(20, 9)), 0);
  }
}

TEST(ReLUGradient, MatchesFiniteDifferencesAwayFromTheKink) {
  ReLU<double> relu;
  auto x = random_values(30, 10);
  for (double& v : x) v += v >= 0 ? 0.1 : -0.1;  // keep every value a step away from 0
  EXPECT_EQ(check_layer_gradients(relu, {5, 6}, x), 0);
}

class DropoutGradient : public ::testing::TestWithParam<std::tuple<double, bool>> {};

TEST_P(DropoutGradient, MatchesFiniteDifferencesWithTheSameMask) {
  const auto& [p, training] = GetParam();
  Dropout<double> dropout(p, 99);
  dropout.set_training(training);
  eigenet::testing::GradCheckOptions options;
  options.before_forward = [&] { dropout.set_step(3); };  // replay the same mask
  EXPECT_EQ(check_layer_gradients(dropout, {4, 3, 5}, random_values(60, 11), options), 0);
}

INSTANTIATE_TEST_SUITE_P(Probabilities, DropoutGradient,
                         ::testing::Combine(::testing::Values(0.0, 0.3, 0.5, 1.0), ::testing::Bool()));

TEST(SequentialGradient, MatchesFiniteDifferencesThroughAWholeNetwork) {
  for (bool training : {true, false}) {
    Sequential<double> model;
    model.add<Dense<double>>(6, 5, eigenet::Init::HeUniform, 1);
    randomise(model.add<BatchNorm<double>>(5));
    model.add<ReLU<double>>();
    auto& dropout = model.add<Dropout<double>>(0.4, 5);
    model.add<Dense<double>>(5, 3, eigenet::Init::GlorotUniform, 2);
    model.set_training(training);
    eigenet::testing::GradCheckOptions options;
    options.before_forward = [&] { dropout.set_step(0); };
    EXPECT_EQ(check_layer_gradients(model, {8, 6}, random_values(48, 12), options), 0) << "training=" << training;
  }
}

TEST(LossGradient, SoftmaxCrossEntropyMatchesFiniteDifferences) {
  eigenet::SoftmaxCrossEntropy<double> loss;
  const eigenet::Index n = 4, k = 5;
  auto logits = random_values(n * k, 13, -3.0, 3.0);
  const std::vector<std::int64_t> labels{0, 4, 2, 2};
  loss.forward({logits.data(), {n, k}}, labels.data(), n);
  const auto grad = loss.backward();
  const double h = 1e-6;
  for (eigenet::Index i = 0; i < n * k; ++i) {
    const double saved = logits[static_cast<std::size_t>(i)];
    logits[static_cast<std::size_t>(i)] = saved + h;
    const double plus = loss.forward({logits.data(), {n, k}}, labels.data(), n);
    logits[static_cast<std::size_t>(i)] = saved - h;
    const double minus = loss.forward({logits.data(), {n, k}}, labels.data(), n);
    logits[static_cast<std::size_t>(i)] = saved;
    EXPECT_NEAR(grad.data()[i], (plus - minus) / (2 * h), 1e-8) << "logit " << i;
  }
}

}  // namespace
