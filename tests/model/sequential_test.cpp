// Behaviour of eigenet::Sequential: train()/eval() reach every layer (also nested ones and
// layers added later), shape mismatches between layers are reported at forward with the
// layer's position, parameters are named, and ownership follows the rule of zero
// (unique_ptr: movable, not copyable, each layer destroyed exactly once).
#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"

namespace {

using eigenet::BatchNorm;
using eigenet::Dense;
using eigenet::Dropout;
using eigenet::Index;
using eigenet::ReLU;
using eigenet::Sequential;
using eigenet::Shape;
using eigenet::Tensor;
using eigenet::testing::contains;
using eigenet::testing::message_of;

static_assert(!std::is_copy_constructible_v<Sequential<float>>, "Sequential owns its layers: no copies");
static_assert(!std::is_copy_assignable_v<Sequential<float>>, "Sequential owns its layers: no copies");
static_assert(std::is_nothrow_move_constructible_v<Sequential<float>>, "Sequential moves cheaply");
static_assert(std::is_nothrow_move_assignable_v<Sequential<float>>, "Sequential moves cheaply");

Tensor<float, 2> input(Index n, Index features, float phase = 0.0f) {
  Tensor<float, 2> x(n, features);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = std::sin(0.7f * static_cast<float>(i) + phase) * 2.0f + 0.5f;
  return x;
}

template <typename Scalar>
std::vector<Scalar> values_of(const Tensor<Scalar, 2>& t) {
  return std::vector<Scalar>(t.data(), t.data() + t.size());
}

/// Dense, BatchNorm, ReLU, Dropout, a nested Sequential(Dense, BatchNorm, Dropout), Dense.
struct Network {
  Sequential<float> model;
  BatchNorm<float>* bn = nullptr;
  Dropout<float>* dropout = nullptr;
  Sequential<float>* inner = nullptr;
  BatchNorm<float>* inner_bn = nullptr;
  Dropout<float>* inner_dropout = nullptr;

  Network() {
    model.add<Dense<float>>(4, 6, eigenet::Init::HeUniform, 1);
    bn = &model.add<BatchNorm<float>>(6);
    model.add<ReLU<float>>();
    dropout = &model.add<Dropout<float>>(0.5, 3);
    inner = &model.add<Sequential<float>>();
    inner->add<Dense<float>>(6, 5, eigenet::Init::HeUniform, 2);
    inner_bn = &inner->add<BatchNorm<float>>(5);
    inner_dropout = &inner->add<Dropout<float>>(0.3, 4);
    model.add<Dense<float>>(5, 3, eigenet::Init::GlorotUniform, 5);
  }
};

TEST(Sequential, EvalReachesEveryLayerIncludingNestedOnes) {
  Network net;
  net.model.eval();
  for (std::size_t i = 0; i < net.model.size(); ++i) EXPECT_FALSE(net.model[i].is_training()) << "layer " << i;
  for (std::size_t i = 0; i < net.inner->size(); ++i) EXPECT_FALSE((*net.inner)[i].is_training()) << "inner " << i;

  const auto x = input(8, 4);
  const auto y1 = net.model.forward(x);
  const auto y2 = net.model.forward(x);
  EXPECT_EQ(values_of(y1), values_of(y2)) << "inference must be deterministic";
  // BatchNorm used, and kept, its running statistics; Dropout drew no mask.
  EXPECT_EQ(net.bn->num_batches_tracked(), 0);
  EXPECT_EQ(net.inner_bn->num_batches_tracked(), 0);
  EXPECT_EQ(net.bn->running_mean()(0), 0.0f);
  EXPECT_EQ(net.dropout->step(), 0u);
  EXPECT_EQ(net.inner_dropout->step(), 0u);

  // The same chain run layer by layer, each in inference mode, with Dropout as identity.
  auto a = net.model.at<Dense<float>>(0).forward(x);
  a = net.bn->forward(a);
  a = net.model.at<ReLU<float>>(2).forward(a);
  const auto after_dropout = net.dropout->forward(a);
  EXPECT_EQ(values_of(after_dropout), values_of(a)) << "Dropout in eval is the identity";
  a = net.inner->at<Dense<float>>(0).forward(a);
  a = net.inner_bn->forward(a);
  a = net.model.at<Dense<float>>(5).forward(a);
  const auto expected = values_of(a), actual = values_of(y1);
  ASSERT_EQ(expected.size(), actual.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_FLOAT_EQ(actual[i], expected[i]) << i;
}

TEST(Sequential, TrainAfterEvalReachesEveryLayerAgain) {
  Network net;
  net.model.eval();
  net.model.train();  // tiny-dnn's evaluation never switched back: check we do
  for (std::size_t i = 0; i < net.model.size(); ++i) EXPECT_TRUE(net.model[i].is_training()) << "layer " << i;
  for (std::size_t i = 0; i < net.inner->size(); ++i) EXPECT_TRUE((*net.inner)[i].is_training()) << "inner " << i;
  const auto x = input(8, 4);
  const auto y1 = net.model.forward(x);
  const auto y2 = net.model.forward(x);
  EXPECT_EQ(net.bn->num_batches_tracked(), 2);
  EXPECT_EQ(net.inner_bn->num_batches_tracked(), 2);
  EXPECT_NE(net.bn->running_mean()(0), 0.0f);
  EXPECT_EQ(net.dropout->step(), 2u);
  EXPECT_EQ(net.inner_dropout->step(), 2u);
  EXPECT_NE(values_of(y1), values_of(y2)) << "fresh dropout masks each training step";
}

TEST(Sequential, AddedLayersTakeTheModelsMode) {
  Sequential<float> model;
  model.eval();
  auto& late = model.add<BatchNorm<float>>(3);
  EXPECT_FALSE(late.is_training());
  model.train();
  EXPECT_TRUE(late.is_training());
}

TEST(Sequential, ShapeMismatchBetweenLayersThrowsAtForwardNamingTheLayer) {
  Sequential<float> model;
  model.add<Dense<float>>(4, 8);
  model.add<ReLU<float>>();
  model.add<Dense<float>>(6, 2);  // expects 6 features, gets 8
  const auto x = input(3, 4);
  std::string message = message_of<eigenet::ShapeError>([&] { model.forward(x); });
  EXPECT_TRUE(contains(message, "layer 2"));
  EXPECT_TRUE(contains(message, "Dense(6 -> 2)"));
  EXPECT_TRUE(contains(message, "(N, 6)"));
  EXPECT_TRUE(contains(message, "(3, 8)"));
  message = message_of<eigenet::ShapeError>([&] { model.forward_view({x.data(), {3, 4}}); });
  EXPECT_TRUE(contains(message, "layer 2"));
  EXPECT_TRUE(contains(message, "(3, 8)"));
  // A bad input is reported at layer 0.
  message = message_of<eigenet::ShapeError>([&] { model.forward(input(3, 5)); });
  EXPECT_TRUE(contains(message, "layer 0"));
  EXPECT_TRUE(contains(message, "(3, 5)"));
}

TEST(Sequential, ReportsShapesThroughTheChain) {
  Network net;
  EXPECT_EQ(net.model.output_shape({7, 4}), (Shape{7, 3}));
  EXPECT_EQ(net.model.name(),
            "Sequential(Dense(4 -> 6), BatchNorm(6), ReLU, Dropout(p=0.5), Sequential(Dense(6 -> 5), BatchNorm(5), "
            "Dropout(p=0.3)), Dense(5 -> 3))");
}

TEST(Sequential, MisuseThrowsClearErrors) {
  Sequential<float> empty;
  EXPECT_THROW(empty.forward(input(2, 3)), eigenet::StateError);
  EXPECT_THROW(empty.add(std::unique_ptr<eigenet::Layer<float>>()), eigenet::ValueError);

  Network net;
  const auto x = input(4, 4);
  EXPECT_THROW(net.model.backward(x, Tensor<float, 2>(4, 3)), eigenet::StateError) << "backward before forward";
  net.model.forward(x);
  EXPECT_THROW(net.model.backward(input(5, 4), Tensor<float, 2>(5, 3)), eigenet::StateError)
      << "backward with another input";
  EXPECT_THROW(net.model.backward(x, Tensor<float, 2>(4, 2)), eigenet::ShapeError);
  std::string message = message_of<eigenet::ValueError>([&] { net.model.at<Dense<float>>(1); });
  EXPECT_TRUE(contains(message, "BatchNorm(6)"));
  message = message_of<eigenet::ValueError>([&] { net.model.at<Dense<float>>(17); });
  EXPECT_TRUE(contains(message, "17"));
}

TEST(Sequential, ParametersAreNamedByPositionAndPointAtTheLayers) {
  Network net;
  const auto parameters = net.model.parameters();
  std::vector<std::string> names;
  for (const auto& p : parameters) names.push_back(p.name);
  const std::vector<std::string> expected{"0.weight", "0.bias",     "1.weight", "1.bias",   "4.0.weight",
                                          "4.0.bias", "4.1.weight", "4.1.bias", "5.weight", "5.bias"};
  EXPECT_EQ(names, expected);
  auto& first = net.model.at<Dense<float>>(0);
  EXPECT_EQ(parameters[0].value, first.weight().data());
  EXPECT_EQ(parameters[0].grad, first.weight_grad().data());
  EXPECT_EQ(parameters[0].size, 24);
  EXPECT_EQ(parameters[2].value, net.bn->weight().data());
  EXPECT_EQ(parameters[6].value, net.inner_bn->weight().data());
}

TEST(Sequential, BackwardFillsEveryParameterGradientAndZeroGradClearsThem) {
  Network net;
  const auto x = input(8, 4);
  const auto y = net.model.forward(x);
  Tensor<float, 2> dy(y.dimensions());
  for (Index i = 0; i < dy.size(); ++i) dy.data()[i] = std::cos(static_cast<float>(i));
  const auto dx = net.model.backward(x, dy);
  EXPECT_EQ(dx.dimension(0), 8);
  EXPECT_EQ(dx.dimension(1), 4);
  for (const auto& p : net.model.parameters()) {
    bool any = false;
    for (Index i = 0; i < p.size; ++i) any = any || p.grad[i] != 0.0f;
    EXPECT_TRUE(any) << p.name << " got no gradient";
  }
  net.model.zero_grad();
  for (const auto& p : net.model.parameters())
    for (Index i = 0; i < p.size; ++i) ASSERT_EQ(p.grad[i], 0.0f) << p.name;
}

/// A layer that counts its destructions, to see that ownership is exact.
class Counted : public ReLU<float> {
 public:
  explicit Counted(int* destroyed) : destroyed_(destroyed) {}
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;
  ~Counted() override { ++*destroyed_; }

 private:
  int* destroyed_;
};

TEST(Sequential, OwnsItsLayersAndMovesThem) {
  int destroyed = 0;
  {
    Sequential<float> model;
    auto& dense = model.add<Dense<float>>(4, 3, eigenet::Init::HeUniform, 7);
    model.add<Counted>(&destroyed);
    model.add(std::make_unique<Counted>(&destroyed));
    model.add<Counted>(&destroyed);
    const auto x = input(2, 4);
    const auto before = values_of(model.forward(x));

    Sequential<float> moved(std::move(model));
    EXPECT_EQ(destroyed, 0) << "a move transfers ownership, destroys nothing";
    EXPECT_TRUE(model.empty());  // NOLINT(bugprone-use-after-move): a moved-from vector is empty
    EXPECT_EQ(moved.size(), 4u);
    EXPECT_EQ(&moved.at<Dense<float>>(0), &dense) << "layers do not move in memory";
    EXPECT_EQ(values_of(moved.forward(x)), before);

    std::vector<Sequential<float>> models;
    models.push_back(std::move(moved));
    Sequential<float> assigned;
    assigned = std::move(models.back());
    models.clear();
    EXPECT_EQ(destroyed, 0);
    EXPECT_EQ(values_of(assigned.forward(x)), before);
  }
  EXPECT_EQ(destroyed, 3) << "each layer destroyed exactly once";
}

TEST(Sequential, TrainsWithAnOptimiserOverItsParameters) {
  // A linearly separable toy problem: the loss must fall.
  Sequential<float> model;
  model.add<Dense<float>>(4, 8, eigenet::Init::HeUniform, 3);
  model.add<BatchNorm<float>>(8);
  model.add<ReLU<float>>();
  model.add<Dense<float>>(8, 2, eigenet::Init::GlorotUniform, 4);
  eigenet::Adam<float> adam(model.parameters(), {1e-2});
  eigenet::SoftmaxCrossEntropy<float> loss;
  const auto x = input(16, 4);
  std::vector<std::int64_t> labels;
  for (Index n = 0; n < 16; ++n) labels.push_back(x(n, 0) + x(n, 1) > 1.0f ? 1 : 0);
  double first = 0, last = 0;
  for (int step = 0; step < 100; ++step) {
    adam.zero_grad();
    const auto logits = model.forward(x);
    const double value = loss.forward(logits, labels);
    if (step == 0) first = value;
    last = value;
    model.backward_parameters(x, loss.backward());
    adam.step();
  }
  EXPECT_LT(last, 0.2 * first);
}

// A shape error anywhere in the chain is found before any layer runs: no running statistics
// move, no dropout step advances, and backward still follows the last good forward.
TEST(Sequential, AShapeErrorChangesNoLayer) {
  Sequential<float> model;
  model.add<Dense<float>>(4, 6, eigenet::Init::HeUniform, 1);
  auto& bn = model.add<BatchNorm<float>>(6);
  auto& dropout = model.add<Dropout<float>>(0.5, 3);
  model.add<Dense<float>>(5, 3, eigenet::Init::HeUniform, 2);  // 6 -> 5 mismatch
  const std::string message = message_of<eigenet::ShapeError>([&] { model.forward(input(4, 4)); });
  EXPECT_TRUE(contains(message, "Sequential layer 3"));
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  EXPECT_EQ(dropout.step(), 0u);
}

// A layer that throws for a value (a NaN reaching BatchNorm) after earlier layers ran: the
// activations now mix two batches, so backward refuses until a forward succeeds.
TEST(Sequential, BackwardAfterAFailedForwardIsRefused) {
  Network net;
  const auto x = input(4, 4);
  net.model.forward(x);
  auto poisoned = x;
  poisoned(2, 1) = std::numeric_limits<float>::quiet_NaN();
  const std::string message = message_of<eigenet::ValueError>([&] { net.model.forward(poisoned); });
  EXPECT_TRUE(contains(message, "BatchNorm(6)"));
  EXPECT_TRUE(contains(message, "NaN or infinite"));
  EXPECT_EQ(net.bn->num_batches_tracked(), 1) << "the NaN batch did not reach the running statistics";
  const std::string refused =
      message_of<eigenet::StateError>([&] { net.model.backward(x, Tensor<float, 2>(4, 3).setZero()); });
  EXPECT_TRUE(contains(refused, "after a forward that threw"));
  net.model.forward(x);
  EXPECT_NO_THROW(net.model.backward(x, Tensor<float, 2>(4, 3).setZero()));
  // A forward rejected on shape, through the view interface a training loop uses, too.
  const auto wrong = input(4, 5);
  EXPECT_THROW(net.model.forward_view({wrong.data(), {4, 5}}), eigenet::ShapeError);
  EXPECT_THROW(net.model.backward(x, Tensor<float, 2>(4, 3).setZero()), eigenet::StateError);
}

TEST(Sequential, IndexingOutOfRangeThrowsALibraryError) {
  Network net;
  const std::string message = message_of<eigenet::ValueError>([&] { net.model[6]; });
  EXPECT_TRUE(contains(message, "index 6 is out of range for 6 layers"));
  const Sequential<float>& constant = net.model;
  EXPECT_THROW(constant[9], eigenet::ValueError);
  EXPECT_EQ(&net.model[1], net.bn);
}

// Move-assigning a model takes the other's layers (they do not move in memory) and mode.
TEST(Sequential, MoveAssignmentTakesTheLayersAndTheMode) {
  Network source;
  source.model.eval();
  Sequential<float> target;
  target.add<ReLU<float>>();
  target = std::move(source.model);
  EXPECT_EQ(target.size(), 6u);
  EXPECT_FALSE(target.is_training());
  EXPECT_EQ(&target.at<BatchNorm<float>>(1), source.bn);
  EXPECT_TRUE(source.model.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_THROW(source.model.forward(input(2, 4)), eigenet::StateError);
}

}  // namespace
