// Behaviour of eigenet::SGD and eigenet::Adam at their boundary: arguments outside their
// domain and an empty parameter list throw, naming what is wrong. The update rules
// themselves are checked against torch.optim in optimizer_golden_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
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
  rejects({1e-3, 0.9, 0.999, 1e-50}, "eps");  // positive in double, 0 once rounded to float
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

// A gradient seen once and then 0 for thousands of steps (MNIST's border pixels) decays the
// optimiser state geometrically; state that would go subnormal (100x slower arithmetic on
// x86) is 0 instead, and the parameters follow the unflushed update, computed here in
// double, to float rounding. Element 0 sees a gradient of 1e-3 (m goes subnormal after
// ~750 steps), element 1 one of 1e-16 (v after ~7000).
template <typename Optimizer>
void check_state_never_subnormal(Optimizer& optimizer, Dense<float>& dense,
                                 const std::vector<const std::vector<float>*>& states) {
  const eigenet::Parameter<float> weight = dense.parameters()[0];
  const std::vector<float> first_gradient{1e-3f, 1e-16f};
  std::vector<double> reference(weight.value, weight.value + 2), m(2, 0.0), v(2, 0.0);
  std::vector<bool> reached_zero(states.size() * 2, false);
  for (int step = 1; step <= 9000; ++step) {
    optimizer.zero_grad();
    for (std::size_t i = 0; i < 2; ++i) {
      const double grad = step == 1 ? first_gradient[i] : 0.0;
      weight.grad[i] = static_cast<float>(grad);
      if constexpr (std::is_same_v<Optimizer, Adam<float>>) {
        m[i] = 0.9 * m[i] + 0.1 * grad;
        v[i] = 0.999 * v[i] + 0.001 * grad * grad;
        reference[i] -=
            (1e-3 / (1 - std::pow(0.9, step))) * m[i] / (std::sqrt(v[i]) / std::sqrt(1 - std::pow(0.999, step)) + 1e-8);
      } else {
        m[i] = step == 1 ? grad : 0.9 * m[i] + grad;
        reference[i] -= 0.01 * m[i];
      }
    }
    optimizer.step();
    for (std::size_t s = 0; s < states.size(); ++s)
      for (std::size_t i = 0; i < 2; ++i) {
        const float value = (*states[s])[i];
        ASSERT_TRUE(value == 0.0f || std::abs(value) >= std::numeric_limits<float>::min())
            << "subnormal state " << value << " (state " << s << ", element " << i << ") at step " << step;
        reached_zero[s * 2 + i] = reached_zero[s * 2 + i] || (step > 1 && value == 0.0f);
      }
  }
  // Every state of element 1 decays through the subnormal range, and so does the first
  // state (m, or the momentum buffer) of element 0.
  for (std::size_t s = 0; s < states.size(); ++s) EXPECT_TRUE(reached_zero[s * 2 + 1]) << "state " << s << "[1]";
  EXPECT_TRUE(reached_zero[0]) << "state 0[0]";
  // ~100 steps move element 0 by more than half an ulp, each rounding once in float.
  for (std::size_t i = 0; i < 2; ++i)
    EXPECT_NEAR(weight.value[i], reference[i], 64 * std::abs(reference[i]) * std::numeric_limits<float>::epsilon())
        << "element " << i;
}

TEST(Optimizer, AdamStateNeverGoesSubnormal) {
  Dense<float> dense(2, 2, eigenet::Init::HeUniform, 3);
  Adam<float> adam(dense.parameters());
  check_state_never_subnormal(adam, dense, {&adam.exp_avg(0), &adam.exp_avg_sq(0)});
}

TEST(Optimizer, SGDMomentumBufferNeverGoesSubnormal) {
  Dense<float> dense(2, 2, eigenet::Init::HeUniform, 3);
  SGD<float> sgd(dense.parameters(), {0.01, 0.9});
  check_state_never_subnormal(sgd, dense, {&sgd.momentum_buffer(0)});
}

}  // namespace
