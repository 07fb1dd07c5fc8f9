// Finite-difference gradient checks, in double (and the loss in float too), for every
// layer, in training and inference mode, on inputs and parameters, and for the loss — all
// through one checker (tests/support/gradcheck.hpp). The options of BatchNorm and Dropout
// have their own checks, in float and double, in batchnorm_options_test.cpp and
// dropout_gradient_test.cpp, through the same checker.
#include <gtest/gtest-spi.h>
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

TEST(ReLUGradient, MatchesFiniteDifferencesAwayFromTheKinkInBothModes) {
  for (bool training : {true, false}) {
    ReLU<double> relu;
    relu.set_training(training);
    auto x = random_values(30, training ? 10 : 13);
    for (double& v : x) v += v >= 0 ? 0.1 : -0.1;  // keep every value a step away from 0
    EXPECT_EQ(check_layer_gradients(relu, {5, 6}, x), 0) << "training=" << training;
    EXPECT_EQ(relu.is_training(), training) << "the checker must not change the mode it checks";
  }
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

// The checker itself can fail: a layer y = x² whose backward is off by 1% is caught, in
// double and in float, and a correct one passes.
template <typename Scalar>
class Square : public eigenet::Layer<Scalar> {
 public:
  explicit Square(double gradient_factor) : factor_(static_cast<Scalar>(gradient_factor)) {}
  std::string name() const override { return "Square"; }
  std::unique_ptr<eigenet::Layer<Scalar>> clone() const override { return std::make_unique<Square>(*this); }
  Shape output_shape(const Shape& input) const override { return input; }
  void forward_into(eigenet::ConstView<Scalar> x, eigenet::View<Scalar> y) override {
    for (eigenet::Index i = 0; i < x.size(); ++i) y.data[i] = x.data[i] * x.data[i];
  }
  void backward_into(eigenet::ConstView<Scalar> x, eigenet::ConstView<Scalar> dy, eigenet::View<Scalar> dx) override {
    for (eigenet::Index i = 0; i < x.size(); ++i) dx.data[i] = factor_ * 2 * x.data[i] * dy.data[i];
  }

 private:
  Scalar factor_;
};

/// The mismatches the checker counts for Square(factor), and the failures it reported
/// (intercepted, so they do not fail this test).
template <typename Scalar>
std::pair<int, int> check_square(double factor) {
  Square<Scalar> layer(factor);
  const auto x = random_values(12, 21, 0.5, 2.0);
  ::testing::TestPartResultArray reported;
  int mismatches = 0;
  {
    ::testing::ScopedFakeTestPartResultReporter intercept(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &reported);
    mismatches = check_layer_gradients(layer, {3, 4}, std::vector<Scalar>(x.begin(), x.end()));
  }
  for (int i = 0; i < reported.size(); ++i)
    EXPECT_NE(std::string(reported.GetTestPartResult(i).message()).find("finite differences give"), std::string::npos);
  return {mismatches, reported.size()};
}

TEST(GradientChecker, CatchesAWrongGradientAndPassesARightOne) {
  EXPECT_EQ(check_square<double>(1.01), std::make_pair(12, 5));  // every element wrong, the first 5 reported
  EXPECT_EQ(check_square<float>(1.03), std::make_pair(12, 5));
  EXPECT_EQ(check_square<double>(1.0), std::make_pair(0, 0));
  EXPECT_EQ(check_square<float>(1.0), std::make_pair(0, 0));
}

TEST(LossGradient, SoftmaxCrossEntropyMatchesFiniteDifferences) {
  const eigenet::Index n = 4, k = 5;
  const std::vector<std::int64_t> labels{0, 4, 2, 2};
  eigenet::SoftmaxCrossEntropy<double> loss;
  EXPECT_EQ(eigenet::testing::check_loss_gradients(loss, {n, k}, random_values(n * k, 13, -3.0, 3.0), labels), 0);
  eigenet::SoftmaxCrossEntropy<float> loss_float;
  const auto logits = random_values(n * k, 14, -3.0, 3.0);
  EXPECT_EQ(eigenet::testing::check_loss_gradients(loss_float, {n, k}, std::vector<float>(logits.begin(), logits.end()),
                                                   labels),
            0);
}

}  // namespace
