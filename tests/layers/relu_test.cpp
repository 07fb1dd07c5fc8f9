// Behaviour of eigenet::ReLU: y = max(x, 0), dx = dy where x > 0 (0 at the kink, as
// PyTorch), any rank, shape checks, and large inputs split across threads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"

namespace {

using eigenet::Index;
using eigenet::ReLU;
using eigenet::Shape;
using eigenet::Tensor;
using eigenet::testing::contains;
using eigenet::testing::message_of;

TEST(ReLU, ForwardAndBackwardOnAHandComputedCase) {
  ReLU<double> relu;
  EXPECT_EQ(relu.name(), "ReLU");
  EXPECT_TRUE(relu.parameters().empty());
  Tensor<double, 2> x(2, 3);
  x.setValues({{-2, 0, 3}, {1e-300, -1e-300, 7.5}});
  const Tensor<double, 2> y = relu.forward(x);
  const std::vector<double> expected_y{0, 0, 3, 1e-300, 0, 7.5};
  EXPECT_EQ(std::vector<double>(y.data(), y.data() + 6), expected_y);

  Tensor<double, 2> dy(2, 3);
  dy.setValues({{10, 20, 30}, {40, 50, 60}});
  const Tensor<double, 2> dx = relu.backward(x, dy);
  const std::vector<double> expected_dx{0, 0, 30, 40, 0, 60};  // 0 at x = 0
  EXPECT_EQ(std::vector<double>(dx.data(), dx.data() + 6), expected_dx);
  EXPECT_NO_THROW(relu.backward_parameters(x, dy));  // no dx wanted, nothing to add
}

template <int Rank>
void check_rank(const std::array<Index, Rank>& dims) {
  Tensor<float, Rank> x(dims);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 7) - 3.0f;
  ReLU<float> relu;
  const Tensor<float, Rank> y = relu.forward(x);
  for (int d = 0; d < Rank; ++d) ASSERT_EQ(y.dimension(d), x.dimension(d));
  for (Index i = 0; i < x.size(); ++i) ASSERT_EQ(y.data()[i], std::max(x.data()[i], 0.0f)) << "rank " << Rank;
}

TEST(ReLU, WorksForEveryRank) {
  check_rank<1>({10});
  check_rank<2>({3, 4});
  check_rank<3>({2, 3, 4});
  check_rank<4>({2, 3, 4, 5});
  check_rank<5>({2, 1, 3, 2, 2});
}

TEST(ReLU, LargeInputsAreCorrectAcrossParallelChunks) {
  const Index count = (Index{1} << 18) + 3;  // several chunks of 2^16 and a ragged end
  std::vector<float> x(static_cast<std::size_t>(count)), y(x.size()), dx(x.size());
  for (Index i = 0; i < count; ++i) x[static_cast<std::size_t>(i)] = (i % 2 ? 1.0f : -1.0f) * static_cast<float>(i);
  const std::vector<float> dy(x.size(), 2.0f);
  ReLU<float> relu;
  const Shape shape{count};
  relu.forward_into({x.data(), shape}, {y.data(), shape});
  relu.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(y[i], i % 2 ? x[i] : 0.0f) << i;
    ASSERT_EQ(dx[i], i % 2 ? 2.0f : 0.0f) << i;
  }
}

TEST(ReLU, RejectsMismatchedShapesNamingTheLayer) {
  ReLU<float> relu;
  std::vector<float> x(12, 1.0f), y(12);
  std::string message = message_of<eigenet::ShapeError>([&] {
    relu.forward_into({x.data(), {3, 4}}, {y.data(), {4, 3}});
  });
  EXPECT_TRUE(contains(message, "ReLU"));
  EXPECT_TRUE(contains(message, "(3, 4)"));
  EXPECT_TRUE(contains(message, "(4, 3)"));
  const Tensor<float, 2> xt = Tensor<float, 2>(3, 4).setConstant(1.0f);
  message = message_of<eigenet::ShapeError>([&] { relu.backward(xt, Tensor<float, 2>(3, 5)); });
  EXPECT_TRUE(contains(message, "ReLU"));
  EXPECT_TRUE(contains(message, "(3, 5)"));
  EXPECT_THROW(relu.backward_into({x.data(), {3, 4}}, {y.data(), {3, 4}}, {y.data(), {12}}), eigenet::ShapeError);
}

// NaN stays NaN, as in PyTorch: a NaN that reached the activations must not become a
// plausible 0 and hide the breakage upstream (the loss then refuses non-finite logits).
TEST(ReLU, NaNPropagatesAndInfinitiesFollowTheSign) {
  ReLU<float> relu;
  Tensor<float, 2> x(1, 4);
  x.setValues({{std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                -std::numeric_limits<float>::infinity(), -0.0f}});
  const auto y = relu.forward(x);
  EXPECT_TRUE(std::isnan(y(0, 0)));
  EXPECT_EQ(y(0, 1), std::numeric_limits<float>::infinity());
  EXPECT_EQ(y(0, 2), 0.0f);
  EXPECT_EQ(y(0, 3), 0.0f);
}

TEST(ReLU, BackwardFollowsAForwardOfTheSameShape) {
  ReLU<float> relu;
  const Tensor<float, 2> x = Tensor<float, 2>(3, 4).setConstant(1.0f);
  std::string message = message_of<eigenet::StateError>([&] { relu.backward(x, x); });
  EXPECT_TRUE(contains(message, "ReLU: backward called before forward"));
  relu.forward(x);
  const Tensor<float, 2> other = Tensor<float, 2>(2, 4).setConstant(1.0f);
  message = message_of<eigenet::StateError>([&] { relu.backward(other, other); });
  EXPECT_TRUE(contains(message, "(3, 4)"));
  EXPECT_TRUE(contains(message, "(2, 4)"));
  EXPECT_NO_THROW(relu.backward(x, x));
}

TEST(ReLU, ANullInputOrOutputIsNamed) {
  ReLU<float> relu;
  std::vector<float> y(4);
  const std::string message = message_of<eigenet::ValueError>([&] {
    relu.forward_into({nullptr, {2, 2}}, {y.data(), {2, 2}});
  });
  EXPECT_TRUE(contains(message, "ReLU: x of shape (2, 2) has no data"));
  EXPECT_THROW(relu.forward_into({y.data(), {2, 2}}, {nullptr, {2, 2}}), eigenet::ValueError);
}

}  // namespace
