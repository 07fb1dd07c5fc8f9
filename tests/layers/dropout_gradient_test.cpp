// Finite-difference gradient checks (tests/support/gradcheck.hpp), in float and double, for
// every Dropout variant: shared axes, Dropout2d, AlphaDropout, FeatureAlphaDropout, and
// Monte-Carlo mode in inference. The mask is replayed before every forward (set_step), so
// the layer is a fixed piecewise-linear function whose derivative backward must give.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/gradcheck.hpp"

namespace {

using eigenet::AlphaDropout;
using eigenet::Dropout;
using eigenet::Dropout2d;
using eigenet::DropoutOptions;
using eigenet::FeatureAlphaDropout;
using eigenet::Shape;
using eigenet::testing::check_layer_gradients;
using eigenet::testing::options_for;
using eigenet::testing::random_values;

template <typename Scalar>
class DropoutVariantGradient : public ::testing::Test {};

using Scalars = ::testing::Types<float, double>;
struct ScalarName {
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, float> ? "float" : "double";
  }
};
TYPED_TEST_SUITE(DropoutVariantGradient, Scalars, ScalarName);

/// Checks `layer` on `shape` in training mode, in inference mode, and in inference mode
/// with the Monte-Carlo flag; each replaying the mask of step 3.
template <typename Scalar>
void check_all_modes(Dropout<Scalar>& layer, const Shape& shape) {
  const auto values = random_values(eigenet::element_count(shape), 21, -2.0, 2.0);
  const std::vector<Scalar> x(values.begin(), values.end());
  auto options = options_for<Scalar>();
  options.before_forward = [&] { layer.set_step(3); };
  for (const auto& [training, monte_carlo] : {std::pair{true, false}, {false, false}, {false, true}}) {
    layer.set_training(training);
    layer.set_monte_carlo(monte_carlo);
    EXPECT_EQ(check_layer_gradients(layer, shape, x, options), 0)
        << layer.name() << " training=" << training << " monte_carlo=" << monte_carlo;
  }
}

TYPED_TEST(DropoutVariantGradient, SharedAxes) {
  using Scalar = TypeParam;
  for (double p : {0.0, 0.3, 0.6, 1.0}) {
    Dropout<Scalar> axis1(p, 4, DropoutOptions::shared({1}));
    check_all_modes(axis1, {4, 3, 5});
    Dropout<Scalar> batch_and_last(p, 4, DropoutOptions::shared({0, -1}));
    check_all_modes(batch_and_last, {4, 3, 5});
  }
}

TYPED_TEST(DropoutVariantGradient, Dropout2d) {
  using Scalar = TypeParam;
  for (double p : {0.0, 0.4, 1.0}) {
    Dropout2d<Scalar> dropout(p, 6);
    check_all_modes(dropout, {3, 4, 2, 3});
    check_all_modes(dropout, {2, 5, 6});
  }
}

TYPED_TEST(DropoutVariantGradient, MonteCarloDropout) {
  using Scalar = TypeParam;
  Dropout<Scalar> dropout(0.5, 8);
  check_all_modes(dropout, {6, 7});
}

TYPED_TEST(DropoutVariantGradient, AlphaDropout) {
  using Scalar = TypeParam;
  for (double p : {0.0, 0.2, 0.5, 1.0}) {
    AlphaDropout<Scalar> dropout(p, 10);
    check_all_modes(dropout, {5, 8});
    AlphaDropout<Scalar> shared(p, 10, DropoutOptions::shared({0}));
    check_all_modes(shared, {5, 8});
  }
}

TYPED_TEST(DropoutVariantGradient, FeatureAlphaDropout) {
  using Scalar = TypeParam;
  for (double p : {0.3, 0.7}) {
    FeatureAlphaDropout<Scalar> dropout(p, 12);
    check_all_modes(dropout, {3, 4, 2, 2});
  }
}

TYPED_TEST(DropoutVariantGradient, MonteCarloDropoutInsideASequential) {
  using Scalar = TypeParam;
  eigenet::Sequential<Scalar> model;
  model.template add<eigenet::Dense<Scalar>>(6, 5, eigenet::Init::HeUniform, 1);
  auto& dropout = model.template add<AlphaDropout<Scalar>>(0.3, 5);
  model.template add<eigenet::Dense<Scalar>>(5, 3, eigenet::Init::GlorotUniform, 2);
  model.eval();
  dropout.set_monte_carlo(true);
  auto options = options_for<Scalar>();
  options.before_forward = [&] { dropout.set_step(0); };
  const auto values = random_values(48, 12);
  EXPECT_EQ(check_layer_gradients(model, {8, 6}, std::vector<Scalar>(values.begin(), values.end()), options), 0);
}

}  // namespace
