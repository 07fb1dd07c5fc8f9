// Behaviour of eigenet::SGD and eigenet::Adam at their boundary: arguments outside their
// domain and an empty parameter list throw, naming what is wrong. The update rules
// themselves are checked against torch.optim in optimizer_golden_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"

namespace {

using eigenet::Adam;
using eigenet::AdamOptions;
using eigenet::Dense;
using eigenet::SGD;
using eigenet::SGDOptions;
using eigenet::testing::contains;
using eigenet::testing::message_of;

// PyTorch: "optimizer got an empty parameter list". Usually model.parameters() taken before
// the layers were added; training would silently do nothing.
TEST(Optimizer, AnEmptyParameterListThrows) {
  eigenet::Sequential<float> model;
  std::string message = message_of<eigenet::ValueError>([&] { Adam<float> adam(model.parameters()); });
  EXPECT_TRUE(contains(message, "empty parameter list"));
  model.add<eigenet::ReLU<float>>();  // a model with no parameters at all
  message = message_of<eigenet::ValueError>([&] { SGD<float> sgd(model.parameters()); });
  EXPECT_TRUE(contains(message, "empty parameter list"));
}

TEST(Optimizer, AdamRejectsArgumentsOutsideTheirDomain) {
  Dense<float> dense(2, 2);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto rejects = [&](AdamOptions options, const std::string& names) {
    const std::string message = message_of<eigenet::ValueError>([&] { Adam<float> adam(dense.parameters(), options); });
    EXPECT_TRUE(contains(message, names));
  };
  rejects({-1e-3}, "lr");
  rejects({nan}, "lr");
  rejects({1e-3, 1.0}, "betas");
  rejects({1e-3, 0.9, -0.1}, "betas");
  // eps = 0 divides 0 by 0 for a parameter whose gradient is 0: NaN weights after one step.
  rejects({1e-3, 0.9, 0.999, 0.0}, "eps");
  rejects({1e-3, 0.9, 0.999, -1e-8}, "eps");
  rejects({1e-3, 0.9, 0.999, 1e-8, -0.1}, "weight_decay");
}

TEST(Optimizer, SGDRejectsArgumentsOutsideTheirDomain) {
  Dense<float> dense(2, 2);
  const auto rejects = [&](SGDOptions options, const std::string& names) {
    const std::string message = message_of<eigenet::ValueError>([&] { SGD<float> sgd(dense.parameters(), options); });
    EXPECT_TRUE(contains(message, names));
  };
  rejects({-0.1}, "lr");
  rejects({0.1, -0.5}, "momentum");
  rejects({0.1, 0.9, 0.0, -1.0}, "weight_decay");
  rejects({0.1, 0.0, 0.0, 0.0, true}, "nesterov");
}

// A parameter whose gradient is exactly 0 from the first step stays finite and unchanged.
TEST(Optimizer, AdamLeavesAParameterWithZeroGradientFinite) {
  Dense<float> dense(2, 2);
  const auto before = dense.weight();
  Adam<float> adam(dense.parameters());
  for (int step = 0; step < 3; ++step) {
    adam.zero_grad();
    adam.step();
  }
  for (eigenet::Index i = 0; i < before.size(); ++i) EXPECT_EQ(dense.weight().data()[i], before.data()[i]);
}

}  // namespace
