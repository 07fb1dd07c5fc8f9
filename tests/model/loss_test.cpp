// Behaviour of eigenet::SoftmaxCrossEntropy: values on a hand-computed case, stability for
// huge logits, and clear errors for bad labels and shapes. The finite-difference check of
// its gradient is in tests/layers/gradient_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"

namespace {

using eigenet::Index;
using eigenet::SoftmaxCrossEntropy;
using eigenet::Tensor;
using eigenet::testing::contains;
using eigenet::testing::message_of;

TEST(SoftmaxCrossEntropy, MatchesAHandComputedCase) {
  SoftmaxCrossEntropy<double> loss;
  Tensor<double, 2> logits(2, 3);
  logits.setValues({{1, 2, 3}, {0, 0, 0}});
  const std::vector<std::int64_t> labels{2, 1};
  const double log_sum = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  const double expected = ((log_sum - 3.0) + std::log(3.0)) / 2.0;
  EXPECT_NEAR(loss.forward(logits, labels), expected, 1e-15);

  const Tensor<double, 2> grad = loss.backward();
  for (Index j = 0; j < 3; ++j) {
    const double p0 = std::exp(static_cast<double>(j + 1) - log_sum);
    EXPECT_NEAR(loss.probabilities()(0, j), p0, 1e-15);
    EXPECT_NEAR(grad(0, j), (p0 - (j == 2 ? 1.0 : 0.0)) / 2.0, 1e-15);  // the batch mean, once
    EXPECT_NEAR(grad(1, j), (1.0 / 3.0 - (j == 1 ? 1.0 : 0.0)) / 2.0, 1e-15);
  }
}

template <typename Scalar>
void check_huge_logits() {
  SoftmaxCrossEntropy<Scalar> loss;
  Tensor<Scalar, 2> logits(4, 3);
  logits.setValues({{Scalar(1e4), Scalar(-1e4), Scalar(0)},
                    {Scalar(-1e4), Scalar(-1e4), Scalar(-1e4)},
                    {Scalar(1e4), Scalar(1e4), Scalar(-1e4)},
                    {Scalar(-1e4), Scalar(1e4), Scalar(1e4)}});
  const std::vector<std::int64_t> labels{1, 0, 0, 2};
  const double value = loss.forward(logits, labels);
  ASSERT_TRUE(std::isfinite(value));
  // Row losses: 2e4 (label at −1e4 vs max 1e4), log 3, log 2, log 2.
  EXPECT_NEAR(value, (2e4 + std::log(3.0) + 2 * std::log(2.0)) / 4.0, 1e-3);
  const Tensor<Scalar, 2> grad = loss.backward();
  for (Index i = 0; i < grad.size(); ++i) ASSERT_TRUE(std::isfinite(grad.data()[i])) << i;
  EXPECT_NEAR(grad(0, 0), 0.25, 1e-6);   // softmax 1 on the wrong class
  EXPECT_NEAR(grad(0, 1), -0.25, 1e-6);  // softmax 0 on the label
  EXPECT_NEAR(grad(2, 0), (0.5 - 1.0) / 4, 1e-6);
}

TEST(SoftmaxCrossEntropy, HugeLogitsGiveFiniteLossAndGradientsInFloat) { check_huge_logits<float>(); }
TEST(SoftmaxCrossEntropy, HugeLogitsGiveFiniteLossAndGradientsInDouble) { check_huge_logits<double>(); }

TEST(SoftmaxCrossEntropy, LabelsOutOfRangeThrowNamingTheLabel) {
  SoftmaxCrossEntropy<float> loss;
  const Tensor<float, 2> logits = Tensor<float, 2>(3, 4).setConstant(0.5f);
  std::string message = message_of<eigenet::ValueError>([&] { loss.forward(logits, {0, -1, 2}); });
  EXPECT_TRUE(contains(message, "label -1"));
  EXPECT_TRUE(contains(message, "position 1"));
  EXPECT_TRUE(contains(message, "[0, 4)"));
  message = message_of<eigenet::ValueError>([&] { loss.forward(logits, {0, 1, 4}); });
  EXPECT_TRUE(contains(message, "label 4"));
  EXPECT_TRUE(contains(message, "position 2"));
  message = message_of<eigenet::ValueError>([&] { loss.forward(logits, {std::int64_t{1} << 40, 1, 1}); });
  EXPECT_TRUE(contains(message, std::to_string(std::int64_t{1} << 40)));
  EXPECT_NO_THROW(loss.forward(logits, {0, 3, 2}));
}

TEST(SoftmaxCrossEntropy, LabelCountMismatchThrowsShapeError) {
  SoftmaxCrossEntropy<float> loss;
  const Tensor<float, 2> logits = Tensor<float, 2>(3, 4).setConstant(0.5f);
  std::string message = message_of<eigenet::ShapeError>([&] { loss.forward(logits, {0, 1}); });
  EXPECT_TRUE(contains(message, "3 labels"));
  EXPECT_TRUE(contains(message, "not 2"));
  EXPECT_THROW(loss.forward(logits, {0, 1, 2, 3}), eigenet::ShapeError);
  EXPECT_THROW(loss.forward(logits, {}), eigenet::ShapeError);
}

TEST(SoftmaxCrossEntropy, RejectsNonFiniteLogitsInAnyColumn) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  SoftmaxCrossEntropy<float> loss;
  for (Index column = 0; column < 3; ++column) {
    for (float bad : {nan, inf}) {
      Tensor<float, 2> logits = Tensor<float, 2>(2, 3).setConstant(0.0f);
      logits(1, column) = bad;
      const std::string message = message_of<eigenet::ValueError>([&] { loss.forward(logits, {0, 1}); });
      EXPECT_TRUE(contains(message, "row 1")) << "column " << column << ", value " << bad;
    }
  }
  Tensor<float, 2> all_masked = Tensor<float, 2>(2, 3).setConstant(0.0f);
  all_masked(0, 0) = all_masked(0, 1) = all_masked(0, 2) = -inf;
  EXPECT_THROW(loss.forward(all_masked, {0, 1}), eigenet::ValueError);
}

TEST(SoftmaxCrossEntropy, AcceptsMinusInfinityAsAMaskedClass) {
  SoftmaxCrossEntropy<float> loss;
  Tensor<float, 2> logits(1, 3);
  logits.setValues({{0.0f, -std::numeric_limits<float>::infinity(), 0.0f}});
  EXPECT_NEAR(loss.forward(logits, {0}), std::log(2.0), 1e-6);
  const Tensor<float, 2> grad = loss.backward();
  EXPECT_EQ(grad(0, 1), 0.0f);
  EXPECT_NEAR(grad(0, 0), -0.5f, 1e-6);
  EXPECT_NEAR(grad(0, 2), 0.5f, 1e-6);
}

TEST(SoftmaxCrossEntropy, AFailedForwardLeavesTheLastGoodOneForBackward) {
  SoftmaxCrossEntropy<float> loss;
  Tensor<float, 2> good(2, 3);
  good.setValues({{1, 2, 3}, {0, 1, 0}});
  loss.forward(good, {2, 1});
  const Tensor<float, 2> expected = loss.backward();
  Tensor<float, 2> bad = Tensor<float, 2>(3, 3).setConstant(0.0f);
  bad(2, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(loss.forward(bad, {0, 1, 2}), eigenet::ValueError);
  EXPECT_THROW(loss.forward(bad, {0, 1, 3}), eigenet::ValueError);
  const Tensor<float, 2> after = loss.backward();
  ASSERT_EQ(after.dimension(0), 2);
  for (Index i = 0; i < after.size(); ++i) EXPECT_EQ(after.data()[i], expected.data()[i]) << i;
}

TEST(SoftmaxCrossEntropy, RejectsMisuse) {
  SoftmaxCrossEntropy<float> loss;
  EXPECT_THROW(loss.backward(), eigenet::StateError);
  const Tensor<float, 1> rank1 = Tensor<float, 1>(3).setConstant(0.0f);
  EXPECT_THROW(loss.forward(rank1, {0, 1, 2}), eigenet::ShapeError);
  const Tensor<float, 2> logits = Tensor<float, 2>(2, 3).setConstant(0.0f);
  loss.forward(logits, {0, 1});
  std::vector<float> wrong(4);
  EXPECT_THROW(loss.backward_into({wrong.data(), {2, 2}}), eigenet::ShapeError);
}

TEST(ArgmaxRows, PicksTheFirstLargest) {
  Tensor<float, 2> logits(3, 4);
  logits.setValues({{0, 3, 1, 3}, {-1, -2, -3, -4}, {0, 0, 0, 5}});
  const auto best = eigenet::argmax_rows<float>({logits.data(), {3, 4}});
  EXPECT_EQ(best, (std::vector<std::int64_t>{1, 0, 3}));
  EXPECT_THROW(eigenet::argmax_rows<float>({logits.data(), {12}}), eigenet::ShapeError);
  // No classes: there is no largest logit (it used to answer class 0).
  EXPECT_THROW(eigenet::argmax_rows<float>({logits.data(), {3, 0}}), eigenet::ShapeError);
}

}  // namespace
