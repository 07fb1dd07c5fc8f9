// Behaviour of eigenet::Dense: shape checks with clear messages, forward and backward on
// a hand-computed case, gradient accumulation, and He/Glorot initialisation (bounds,
// spread, seed reproducibility). Finite-difference checks live in gradient_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"

namespace {

using eigenet::Dense;
using eigenet::Index;
using eigenet::Init;
using eigenet::Tensor;
using eigenet::testing::contains;
using eigenet::testing::message_of;

template <typename Scalar>
std::vector<Scalar> values_of(const Scalar* data, Index size) {
  return std::vector<Scalar>(data, data + size);
}

TEST(Dense, RejectsEmptyFeatureCounts) {
  EXPECT_THROW(Dense<float>(0, 3), eigenet::ValueError);
  EXPECT_THROW(Dense<float>(3, 0), eigenet::ValueError);
  const std::string message = message_of<eigenet::ValueError>([] { Dense<float>(-1, 4); });
  EXPECT_TRUE(contains(message, "Dense"));
  EXPECT_TRUE(contains(message, "-1"));
}

TEST(Dense, HasPyTorchShapesAndNamedParameters) {
  Dense<float> dense(3, 2);
  EXPECT_EQ(dense.name(), "Dense(3 -> 2)");
  EXPECT_EQ(dense.in_features(), 3);
  EXPECT_EQ(dense.out_features(), 2);
  EXPECT_EQ(dense.weight().dimension(0), 2);  // (out, in), as nn.Linear
  EXPECT_EQ(dense.weight().dimension(1), 3);
  EXPECT_EQ(dense.bias().dimension(0), 2);
  EXPECT_EQ(dense.output_shape({5, 3}), (eigenet::Shape{5, 2}));
  auto parameters = dense.parameters();
  ASSERT_EQ(parameters.size(), 2u);
  EXPECT_EQ(parameters[0].name, "weight");
  EXPECT_EQ(parameters[0].size, 6);
  EXPECT_EQ(parameters[0].value, dense.weight().data());
  EXPECT_EQ(parameters[0].grad, dense.weight_grad().data());
  EXPECT_EQ(parameters[1].name, "bias");
  EXPECT_EQ(parameters[1].size, 2);
  EXPECT_EQ(parameters[1].value, dense.bias().data());
  EXPECT_EQ(parameters[1].grad, dense.bias_grad().data());
}

TEST(Dense, RejectsInputsOfTheWrongShapeNamingLayerExpectedAndActual) {
  Dense<double> dense(3, 2);
  std::string message = message_of<eigenet::ShapeError>([&] { dense.forward(Tensor<double, 2>(4, 5)); });
  EXPECT_TRUE(contains(message, "Dense(3 -> 2)"));
  EXPECT_TRUE(contains(message, "(N, 3)"));
  EXPECT_TRUE(contains(message, "(4, 5)"));
  message = message_of<eigenet::ShapeError>([&] { dense.forward(Tensor<double, 1>(3)); });
  EXPECT_TRUE(contains(message, "(3,)"));
  message = message_of<eigenet::ShapeError>([&] { dense.forward(Tensor<double, 3>(2, 3, 1)); });
  EXPECT_TRUE(contains(message, "(2, 3, 1)"));
  EXPECT_THROW(dense.forward(Tensor<double, 2>(0, 3)), eigenet::ShapeError);

  // An output view or a dy of the wrong shape.
  std::vector<double> x(12, 1.0), y(12);
  EXPECT_THROW(dense.forward_into({x.data(), {4, 3}}, {y.data(), {4, 3}}), eigenet::ShapeError);
  const Tensor<double, 2> x_ok = Tensor<double, 2>(4, 3).setConstant(1.0);
  dense.forward(x_ok);
  message = message_of<eigenet::ShapeError>([&] { dense.backward(x_ok, Tensor<double, 2>(4, 3)); });
  EXPECT_TRUE(contains(message, "Dense(3 -> 2)"));
  EXPECT_TRUE(contains(message, "(4, 2)"));
  EXPECT_TRUE(contains(message, "(4, 3)"));
}

template <typename Scalar>
void check_hand_computed() {
  Dense<Scalar> dense(3, 2);
  dense.weight().setValues({{1, 2, 3}, {4, 5, 6}});
  dense.bias().setValues({Scalar(0.5), Scalar(-1)});
  Tensor<Scalar, 2> x(2, 3);
  x.setValues({{1, 0, -1}, {2, 1, 0}});
  // y = x · Wᵀ + b
  const Tensor<Scalar, 2> y = dense.forward(x);
  ASSERT_EQ(y.dimension(0), 2);
  ASSERT_EQ(y.dimension(1), 2);
  EXPECT_EQ(y(0, 0), Scalar(1 - 3 + 0.5));
  EXPECT_EQ(y(0, 1), Scalar(4 - 6 - 1));
  EXPECT_EQ(y(1, 0), Scalar(2 + 2 + 0.5));
  EXPECT_EQ(y(1, 1), Scalar(8 + 5 - 1));

  Tensor<Scalar, 2> dy(2, 2);
  dy.setValues({{1, 0}, {0, 2}});
  // dW = dyᵀ · x,  db = Σ_n dy,  dx = dy · W
  const Tensor<Scalar, 2> dx = dense.backward(x, dy);
  const std::vector<Scalar> expected_dw{1, 0, -1, 4, 2, 0}, expected_db{1, 2}, expected_dx{1, 2, 3, 8, 10, 12};
  EXPECT_EQ(values_of(dense.weight_grad().data(), 6), expected_dw);
  EXPECT_EQ(values_of(dense.bias_grad().data(), 2), expected_db);
  EXPECT_EQ(values_of(dx.data(), 6), expected_dx);

  // Backward adds into the gradients (micro-batch accumulation); dx is not accumulated.
  const Tensor<Scalar, 2> dx_again = dense.backward(x, dy);
  EXPECT_EQ(values_of(dx_again.data(), 6), expected_dx);
  for (Index i = 0; i < 6; ++i) EXPECT_EQ(dense.weight_grad().data()[i], 2 * expected_dw[static_cast<std::size_t>(i)]);
  for (Index i = 0; i < 2; ++i) EXPECT_EQ(dense.bias_grad()(i), 2 * expected_db[static_cast<std::size_t>(i)]);
  dense.backward_parameters(x, dy);  // without dx
  for (Index i = 0; i < 2; ++i) EXPECT_EQ(dense.bias_grad()(i), 3 * expected_db[static_cast<std::size_t>(i)]);

  dense.zero_grad();
  for (Index i = 0; i < 6; ++i) EXPECT_EQ(dense.weight_grad().data()[i], Scalar(0));
  for (Index i = 0; i < 2; ++i) EXPECT_EQ(dense.bias_grad()(i), Scalar(0));

  // No mode dependence.
  dense.eval();
  const Tensor<Scalar, 2> y_eval = dense.forward(x);
  EXPECT_EQ(values_of(y_eval.data(), 4), values_of(y.data(), 4));
}

TEST(Dense, ForwardAndBackwardMatchAHandComputedCaseInFloat) { check_hand_computed<float>(); }
TEST(Dense, ForwardAndBackwardMatchAHandComputedCaseInDouble) { check_hand_computed<double>(); }

TEST(Dense, ForwardMatchesAPlainLoopOnALargerBatch) {
  const Index n = 37, in = 53, out = 29;
  Dense<double> dense(in, out, Init::GlorotUniform, 5);
  for (Index o = 0; o < out; ++o) dense.bias()(o) = 0.01 * static_cast<double>(o);
  Tensor<double, 2> x(n, in);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = std::sin(0.37 * static_cast<double>(i));
  const Tensor<double, 2> y = dense.forward(x);
  for (Index r = 0; r < n; ++r)
    for (Index o = 0; o < out; ++o) {
      double expected = dense.bias()(o);
      for (Index k = 0; k < in; ++k) expected += x(r, k) * dense.weight()(o, k);
      ASSERT_NEAR(y(r, o), expected, 1e-12) << r << "," << o;
    }
}

struct InitCase {
  Init init;
  Index in, out;
  double bound;
};

TEST(Dense, InitialisationStaysWithinAndFillsItsBound) {
  for (const InitCase& c : {InitCase{Init::HeUniform, 200, 300, std::sqrt(6.0 / 200)},
                            InitCase{Init::GlorotUniform, 200, 300, std::sqrt(6.0 / 500)},
                            InitCase{Init::HeUniform, 784, 64, std::sqrt(6.0 / 784)},
                            InitCase{Init::GlorotUniform, 64, 10, std::sqrt(6.0 / 74)}}) {
    const Dense<double> dense(c.in, c.out, c.init, 17);
    const Index count = c.in * c.out;
    double max_abs = 0, sum = 0, sum_sq = 0;
    for (Index i = 0; i < count; ++i) {
      const double w = dense.weight().data()[i];
      ASSERT_LE(std::abs(w), c.bound) << "weight " << i;
      max_abs = std::max(max_abs, std::abs(w));
      sum += w;
      sum_sq += w * w;
    }
    const double mean = sum / static_cast<double>(count), var = sum_sq / static_cast<double>(count) - mean * mean;
    // U(−b, b): mean 0, variance b²/3. With ≥ 640 draws these hold by many standard errors.
    EXPECT_GT(max_abs, 0.95 * c.bound);
    EXPECT_LT(std::abs(mean), 0.1 * c.bound);
    EXPECT_NEAR(var, c.bound * c.bound / 3.0, 0.15 * c.bound * c.bound / 3.0);
    for (Index o = 0; o < c.out; ++o) ASSERT_EQ(dense.bias()(o), 0.0);
  }
}

TEST(Dense, InitialisationIsReproducibleFromItsSeed) {
  const Dense<float> a(30, 20, Init::HeUniform, 123), b(30, 20, Init::HeUniform, 123);
  const Dense<float> other_seed(30, 20, Init::HeUniform, 124);
  const auto wa = values_of(a.weight().data(), 600);
  EXPECT_EQ(wa, values_of(b.weight().data(), 600));
  const auto wo = values_of(other_seed.weight().data(), 600);
  int equal = 0;
  for (std::size_t i = 0; i < wa.size(); ++i) equal += wa[i] == wo[i];
  EXPECT_LT(equal, 5) << "different seeds should give unrelated weights";

  // reset_parameters redraws the constructor's weights and clears the bias.
  Dense<float> c(30, 20, Init::GlorotUniform, 9);
  c.bias().setConstant(1.0f);
  c.reset_parameters(Init::HeUniform, 123);
  EXPECT_EQ(values_of(c.weight().data(), 600), wa);
  for (Index o = 0; o < 20; ++o) EXPECT_EQ(c.bias()(o), 0.0f);

  // Float weights are the double weights rounded: the same numbers on every platform.
  const Dense<double> d(30, 20, Init::HeUniform, 123);
  for (Index i = 0; i < 600; ++i) ASSERT_EQ(wa[static_cast<std::size_t>(i)], static_cast<float>(d.weight().data()[i]));

  // The default is He-uniform with seed 0.
  const Dense<float> defaults(30, 20), explicit_defaults(30, 20, Init::HeUniform, 0);
  EXPECT_EQ(values_of(defaults.weight().data(), 600), values_of(explicit_defaults.weight().data(), 600));
}

TEST(Dense, CopiesAreIndependent) {
  Dense<float> original(4, 3, Init::HeUniform, 1);
  Dense<float> copy = original;
  copy.weight()(0, 0) = 100.0f;
  EXPECT_NE(original.weight()(0, 0), 100.0f);
  EXPECT_NE(copy.parameters()[0].value, original.parameters()[0].value);
}

// Backward needs the input of the last forward (layer.hpp's contract), as every layer.
TEST(Dense, BackwardFollowsAForwardOfTheSameShape) {
  Dense<float> dense(3, 2, Init::HeUniform, 1);
  const Tensor<float, 2> x = Tensor<float, 2>(4, 3).setConstant(0.5f);
  const Tensor<float, 2> dy = Tensor<float, 2>(4, 2).setConstant(1.0f);
  std::string message = message_of<eigenet::StateError>([&] { dense.backward(x, dy); });
  EXPECT_TRUE(contains(message, "Dense(3 -> 2): backward called before forward"));
  EXPECT_EQ(dense.weight_grad()(0, 0), 0.0f) << "nothing accumulated by the refused call";
  dense.forward(x);
  const Tensor<float, 2> other = Tensor<float, 2>(5, 3).setConstant(0.5f);
  message = message_of<eigenet::StateError>([&] { dense.backward(other, Tensor<float, 2>(5, 2).setZero()); });
  EXPECT_TRUE(contains(message, "(4, 3)"));
  EXPECT_NO_THROW(dense.backward(x, dy));
}

// Parameter tensors may be written, not resized or given new storage: an optimiser holds
// their addresses (a moved-in temporary used to free them under it), and a smaller tensor
// would be read past its end.
TEST(Dense, ParameterTensorsKeepTheirStorageAndShape) {
  Dense<float> dense(3, 2, Init::HeUniform, 1);
  eigenet::Adam<float> adam(dense.parameters());
  const float* weight = dense.weight().data();
  std::string message = message_of<eigenet::ShapeError>([&] { dense.weight() = Tensor<float, 2>(1, 1).setZero(); });
  EXPECT_TRUE(contains(message, "Dense(3 -> 2): weight has shape (2, 3)"));
  EXPECT_TRUE(contains(message, "cannot assign (1, 1)"));
  EXPECT_THROW((dense.bias() = Tensor<float, 1>(7).setZero()), eigenet::ShapeError);
  Tensor<float, 2> loaded(2, 3);
  loaded.setConstant(0.25f);
  dense.weight() = std::move(loaded);  // copied in, not swapped
  EXPECT_EQ(dense.weight().data(), weight);
  EXPECT_EQ(adam.parameters()[0].value, weight);
  EXPECT_EQ(dense.weight()(1, 2), 0.25f);
  // An expression of the right extents works too.
  dense.bias() = Tensor<float, 1>(2).setConstant(1.0f) * 3.0f;
  EXPECT_EQ(dense.bias()(1), 3.0f);
  adam.zero_grad();
  EXPECT_NO_THROW(adam.step());
}

// A number (Eigen would read it as a size and leave the values uninitialised) or a tensor
// of another rank, scalar type or layout cannot be assigned to a layer's tensor at all.
using WeightRef = eigenet::FixedShapeRef<float, 2>;
static_assert(std::is_assignable_v<WeightRef, const Tensor<float, 2>&>);
static_assert(std::is_assignable_v<WeightRef, eigenet::TensorMap<float, 2>>);
static_assert(!std::is_assignable_v<WeightRef, float>, "a number is not a tensor (use setConstant)");
static_assert(!std::is_assignable_v<WeightRef, int>);
static_assert(!std::is_assignable_v<WeightRef, const Tensor<float, 1>&>, "rank must match");
static_assert(!std::is_assignable_v<WeightRef, const Tensor<double, 2>&>, "scalar type must match");
static_assert(!std::is_assignable_v<WeightRef, const Eigen::Tensor<float, 2>&>, "row-major only");

// A typed forward rejected on shape is a forward that threw: backward refuses.
TEST(Dense, BackwardAfterAForwardRejectedOnShapeIsRefused) {
  Dense<float> dense(3, 2, Init::HeUniform, 1);
  const Tensor<float, 2> x = Tensor<float, 2>(4, 3).setConstant(0.5f);
  const Tensor<float, 2> dy = Tensor<float, 2>(4, 2).setConstant(1.0f);
  dense.forward(x);
  EXPECT_THROW(dense.forward(Tensor<float, 2>(4, 5).setZero()), eigenet::ShapeError);
  const std::string message = message_of<eigenet::StateError>([&] { dense.backward(x, dy); });
  EXPECT_TRUE(contains(message, "after a forward that threw"));
  dense.forward(x);
  EXPECT_NO_THROW(dense.backward(x, dy));
}

// Assigning one layer over another would free the parameters an optimiser points at
// (heap use after free in a user's "re-initialise by assignment"): it does not compile.
static_assert(!std::is_copy_assignable_v<Dense<float>> && !std::is_move_assignable_v<Dense<float>>,
              "layers are not assignable: an optimiser holds their parameters' addresses");
static_assert(std::is_copy_constructible_v<Dense<float>>, "layers copy-construct (clone)");

}  // namespace
