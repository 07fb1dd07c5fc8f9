// eigenet::monte_carlo_predict: the mean and the UNBIASED (T − 1) variance of T stochastic
// passes, equal to a hand-run of the same passes; every Dropout stochastic — also inside
// nested Sequentials — while every BatchNorm stays in inference (running statistics used,
// unchanged); every layer's mode and Monte-Carlo flag restored afterwards, also when a pass
// throws; passes < 2 rejected.
#include "eigenet/model/monte_carlo.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"

namespace {

using eigenet::AlphaDropout;
using eigenet::BatchNorm;
using eigenet::Dense;
using eigenet::Dropout;
using eigenet::Index;
using eigenet::ReLU;
using eigenet::Sequential;
using eigenet::Tensor;
using eigenet::testing::contains;
using eigenet::testing::message_of;

template <typename Scalar>
Tensor<Scalar, 2> input(Index n, Index features) {
  Tensor<Scalar, 2> x(n, features);
  for (Index i = 0; i < x.size(); ++i)
    x.data()[i] = static_cast<Scalar>(std::sin(0.37 * static_cast<double>(i)) * 1.5 + 0.2);
  return x;
}

/// Dense, BatchNorm, ReLU, Dropout, Sequential(Dense, BatchNorm, Sequential(AlphaDropout),
/// Dropout), Dense: Dropouts at three depths, BatchNorms at two.
template <typename Scalar>
struct Network {
  Sequential<Scalar> model;
  BatchNorm<Scalar>* bn = nullptr;
  Dropout<Scalar>* dropout = nullptr;
  Sequential<Scalar>* inner = nullptr;
  BatchNorm<Scalar>* inner_bn = nullptr;
  Sequential<Scalar>* innermost = nullptr;
  AlphaDropout<Scalar>* deep_dropout = nullptr;
  Dropout<Scalar>* inner_dropout = nullptr;

  explicit Network(double p = 0.3) {
    model.template add<Dense<Scalar>>(4, 6, eigenet::Init::HeUniform, 1);
    bn = &model.template add<BatchNorm<Scalar>>(6);
    model.template add<ReLU<Scalar>>();
    dropout = &model.template add<Dropout<Scalar>>(p, 3);
    inner = &model.template add<Sequential<Scalar>>();
    inner->template add<Dense<Scalar>>(6, 5, eigenet::Init::HeUniform, 2);
    inner_bn = &inner->template add<BatchNorm<Scalar>>(5);
    innermost = &inner->template add<Sequential<Scalar>>();
    deep_dropout = &innermost->template add<AlphaDropout<Scalar>>(p, 4);
    inner_dropout = &inner->template add<Dropout<Scalar>>(p, 5);
    model.template add<Dense<Scalar>>(5, 3, eigenet::Init::GlorotUniform, 5);
    // Non-trivial running statistics, so "used the running statistics" is visible.
    for (Index c = 0; c < 6; ++c) {
      bn->running_mean()(c) = static_cast<Scalar>(0.1 * static_cast<double>(c));
      bn->running_var()(c) = static_cast<Scalar>(1.0 + 0.2 * static_cast<double>(c));
    }
    for (Index c = 0; c < 5; ++c) inner_bn->running_var()(c) = static_cast<Scalar>(0.5 + 0.1 * static_cast<double>(c));
  }
};

template <typename Scalar>
std::vector<Scalar> values_of(const Tensor<Scalar, 1>& t) {
  return std::vector<Scalar>(t.data(), t.data() + t.size());
}

TEST(MonteCarloPredict, RejectsFewerThanTwoPasses) {
  Network<float> net;
  const auto x = input<float>(8, 4);
  for (int passes : {1, 0, -3}) {
    const std::string message =
        message_of<eigenet::ValueError>([&] { eigenet::monte_carlo_predict(net.model, x, passes); });
    EXPECT_TRUE(contains(message, "monte_carlo_predict"));
    EXPECT_TRUE(contains(message, "passes should be at least 2"));
    EXPECT_TRUE(contains(message, "not " + std::to_string(passes)));
  }
  EXPECT_TRUE(net.model.is_training());
  EXPECT_EQ(net.dropout->step(), 0u);
}

TEST(MonteCarloPredict, MeanAndUnbiasedVarianceOfTheSamePassesRunByHand) {
  Network<double> net;
  const auto x = input<double>(8, 4);
  const int passes = 7;
  // By hand: a deep copy in inference with every Dropout in Monte-Carlo mode.
  Sequential<double> copy = net.model.deep_copy();
  copy.eval();
  copy.at<Dropout<double>>(3).set_monte_carlo(true);
  auto& copy_inner = copy.at<Sequential<double>>(4);
  copy_inner.at<Sequential<double>>(2).at<AlphaDropout<double>>(0).set_monte_carlo(true);
  copy_inner.at<Dropout<double>>(3).set_monte_carlo(true);
  std::vector<Tensor<double, 2>> ys;
  for (int t = 0; t < passes; ++t) ys.push_back(copy.forward(x));

  const auto result = eigenet::monte_carlo_predict(net.model, x, passes);
  EXPECT_EQ(result.passes, passes);
  ASSERT_EQ(result.mean.dimension(0), 8);
  ASSERT_EQ(result.mean.dimension(1), 3);
  ASSERT_EQ(result.variance.dimension(1), 3);
  Index positive = 0;
  for (Index i = 0; i < result.mean.size(); ++i) {
    double mean = 0.0;
    for (const auto& y : ys) mean += y.data()[i];
    mean /= passes;
    double squares = 0.0;
    for (const auto& y : ys) squares += (y.data()[i] - mean) * (y.data()[i] - mean);
    const double unbiased = squares / (passes - 1);
    EXPECT_NEAR(result.mean.data()[i], mean, 1e-12 * (1 + std::abs(mean))) << i;
    EXPECT_NEAR(result.variance.data()[i], unbiased, 1e-12 * (1 + unbiased)) << i;
    positive += unbiased > 0 ? 1 : 0;
  }
  EXPECT_GT(positive, result.mean.size() / 2) << "the passes must differ";
  EXPECT_EQ(net.dropout->step(), static_cast<std::uint64_t>(passes)) << "each pass draws one mask per Dropout";
  EXPECT_EQ(net.deep_dropout->step(), static_cast<std::uint64_t>(passes));
}

TEST(MonteCarloPredict, BatchNormsUseAndKeepTheirRunningStatistics) {
  // With p = 0 every pass is the inference forward: mean = eval output, variance = 0, and
  // BatchNorm in training mode would give another output (batch statistics).
  Network<double> net(0.0);
  const auto x = input<double>(8, 4);
  const auto running_mean = values_of(net.bn->running_mean().tensor());
  const auto running_var = values_of(net.inner_bn->running_var().tensor());
  net.model.train();
  const auto result = eigenet::monte_carlo_predict(net.model, x, 3);
  EXPECT_EQ(net.bn->num_batches_tracked(), 0);
  EXPECT_EQ(net.inner_bn->num_batches_tracked(), 0);
  EXPECT_EQ(values_of(net.bn->running_mean().tensor()), running_mean);
  EXPECT_EQ(values_of(net.inner_bn->running_var().tensor()), running_var);
  EXPECT_TRUE(net.model.is_training());
  net.model.eval();
  const auto expected = net.model.forward(x);
  net.model.train();
  const auto training = net.model.forward(x);
  double training_difference = 0.0;
  for (Index i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(result.mean.data()[i], expected.data()[i], 1e-12) << i;
    EXPECT_EQ(result.variance.data()[i], 0.0) << i;
    training_difference += std::abs(training.data()[i] - expected.data()[i]);
  }
  EXPECT_GT(training_difference, 1e-3) << "the check must tell batch from running statistics";
}

TEST(MonteCarloPredict, RestoresEveryModeAndFlagIncludingNestedLayers) {
  Network<float> net;
  net.model.train();
  net.inner->eval();       // a nested Sequential in another mode than its parent
  net.innermost->train();  // and a layer inside it in yet another
  net.inner_dropout->set_monte_carlo(true);
  auto collect = [](Sequential<float>& root) {
    std::vector<bool> modes{root.is_training()};
    std::vector<Sequential<float>*> stack{&root};
    for (std::size_t s = 0; s < stack.size(); ++s)
      for (std::size_t i = 0; i < stack[s]->size(); ++i) {
        auto& layer = (*stack[s])[i];
        modes.push_back(layer.is_training());
        if (auto* dropout = dynamic_cast<Dropout<float>*>(&layer)) modes.push_back(dropout->is_monte_carlo());
        if (auto* nested = dynamic_cast<Sequential<float>*>(&layer)) stack.push_back(nested);
      }
    return modes;
  };
  const std::vector<bool> before = collect(net.model);
  const auto x = input<float>(8, 4);
  eigenet::monte_carlo_predict(net.model, x, 4);
  EXPECT_EQ(collect(net.model), before);
  EXPECT_TRUE(net.deep_dropout->is_training());
  EXPECT_FALSE(net.inner_bn->is_training());
  EXPECT_FALSE(net.dropout->is_monte_carlo());
  EXPECT_TRUE(net.inner_dropout->is_monte_carlo());
}

/// A layer whose forward throws from its `fail_at`-th call on.
class Failing : public eigenet::Layer<float> {
 public:
  explicit Failing(int fail_at) : fail_at_(fail_at) {}
  std::string name() const override { return "Failing"; }
  std::unique_ptr<eigenet::Layer<float>> clone() const override { return std::make_unique<Failing>(*this); }
  eigenet::Shape output_shape(const eigenet::Shape& input) const override { return input; }
  void forward_into(eigenet::ConstView<float> x, eigenet::View<float> y) override {
    if (++calls_ >= fail_at_) throw std::runtime_error("pass failed");
    std::copy(x.data, x.data + x.size(), y.data);
  }
  void backward_into(eigenet::ConstView<float>, eigenet::ConstView<float> dy, eigenet::View<float> dx) override {
    if (dx.data) std::copy(dy.data, dy.data + dy.size(), dx.data);
  }

 private:
  int fail_at_;
  int calls_ = 0;
};

TEST(MonteCarloPredict, RestoresModesWhenAPassThrows) {
  Network<float> net;
  net.inner->add<Failing>(3);
  net.model.train();
  net.inner_dropout->set_monte_carlo(false);
  EXPECT_THROW(eigenet::monte_carlo_predict(*net.inner, input<float>(8, 6), 5), std::runtime_error);
  EXPECT_TRUE(net.inner->is_training());
  EXPECT_TRUE(net.inner_bn->is_training());
  EXPECT_TRUE(net.deep_dropout->is_training());
  EXPECT_FALSE(net.deep_dropout->is_monte_carlo());
  EXPECT_FALSE(net.inner_dropout->is_monte_carlo());
  EXPECT_EQ(net.inner_bn->num_batches_tracked(), 0);
}

TEST(MonteCarloPredict, EstimatesDropoutsMeanAndVarianceWithinTheirSamplingError) {
  // x = 1 through a Dropout(0.5) nested two levels deep: each pass gives y in {0, 2}, so
  // E[y] = 1 and Var[y] = p/(1 − p) = 1. Over n elements and T passes the grand mean has
  // standard error sqrt(1/(nT)); for y in {0, 2}, s² = T/(T − 1)(1 − d²) with d the
  // deviation of the pass mean, so the average of s² has standard error ≈ sqrt(2/n)/(T − 1)
  // — small enough that the biased variance (÷T, off by 1/T) fails.
  Sequential<double> model;
  auto& inner = model.add<Sequential<double>>();
  auto& innermost = inner.add<Sequential<double>>();
  innermost.add<Dropout<double>>(0.5, 42);
  model.eval();
  const Index n = 4096;
  const int passes = 100;
  Tensor<double, 2> x(64, 64);
  x.setConstant(1.0);
  const auto result = eigenet::monte_carlo_predict(model, x, passes);
  double mean = 0.0, variance = 0.0;
  for (Index i = 0; i < n; ++i) {
    mean += result.mean.data()[i];
    variance += result.variance.data()[i];
  }
  mean /= static_cast<double>(n);
  variance /= static_cast<double>(n);
  EXPECT_LE(std::abs(mean - 1.0), 4 * std::sqrt(1.0 / (static_cast<double>(n) * passes))) << mean;
  EXPECT_LE(std::abs(variance - 1.0), 4 * std::sqrt(2.0 / static_cast<double>(n)) / (passes - 1)) << variance;
  EXPECT_FALSE(model.is_training());
  EXPECT_FALSE(innermost.at<Dropout<double>>(0).is_monte_carlo());
}

}  // namespace
