// SGD and Adam against torch.optim (tests/golden/{sgd,adam}_*.txt, written by
// tests/golden/generate.py in float64): five steps on a vector of seven values with a fixed
// sequence of gradients, the values compared after every step, in double and in float.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "eigenet/model/optimizer.hpp"
#include "support/golden.hpp"

namespace {

using eigenet::Index;
using eigenet::Parameter;
using eigenet::testing::expect_close;
using eigenet::testing::GoldenFile;
using eigenet::testing::Tolerance;

// double: the update rules are PyTorch's operation for operation; measured agreement is a
// few 1e-16. float: each step rounds the state to float, so after five steps a few ulps of
// the values accumulate (measured: about one); 16 ulps of the magnitude allows for it.
template <typename Scalar>
Tolerance tolerance();
template <>
Tolerance tolerance<double>() {
  return {0.0, 1e-12, 1e-12};
}
template <>
Tolerance tolerance<float>() {
  const double ulp = 0x1.0p-23;
  return {0.0, 16 * ulp, 16 * ulp};
}

template <typename Scalar>
std::unique_ptr<eigenet::Optimizer<Scalar>> make_sgd(std::vector<Parameter<Scalar>> parameters,
                                                     const GoldenFile& golden) {
  eigenet::SGDOptions options;
  options.lr = golden.scalar("lr");
  options.momentum = golden.scalar("momentum");
  options.dampening = golden.scalar("dampening");
  options.weight_decay = golden.scalar("weight_decay");
  options.nesterov = golden.scalar("nesterov") != 0.0;
  return std::make_unique<eigenet::SGD<Scalar>>(std::move(parameters), options);
}

template <typename Scalar>
std::unique_ptr<eigenet::Optimizer<Scalar>> make_adam(std::vector<Parameter<Scalar>> parameters,
                                                      const GoldenFile& golden) {
  eigenet::AdamOptions options;
  options.lr = golden.scalar("lr");
  options.beta1 = golden.scalar("beta1");
  options.beta2 = golden.scalar("beta2");
  options.eps = golden.scalar("eps");
  options.weight_decay = golden.scalar("weight_decay");
  return std::make_unique<eigenet::Adam<Scalar>>(std::move(parameters), options);
}

template <typename Scalar>
void check_steps(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  std::vector<Scalar> value = golden["param_0"].as<Scalar>();
  std::vector<Scalar> grad(value.size(), Scalar(0));
  std::vector<Parameter<Scalar>> parameters{{"theta", value.data(), grad.data(), static_cast<Index>(value.size())}};
  const bool adam = file.rfind("adam", 0) == 0;
  auto optimizer = adam ? make_adam<Scalar>(parameters, golden) : make_sgd<Scalar>(parameters, golden);
  const int steps = static_cast<int>(golden.scalar("steps"));
  ASSERT_GT(steps, 1);
  for (int k = 1; k <= steps; ++k) {
    const std::string step = std::to_string(k);
    // Copied into the existing storage: the Parameter points at it.
    const auto next_grad = golden["grad_" + step].as<Scalar>();
    ASSERT_EQ(next_grad.size(), grad.size());
    std::copy(next_grad.begin(), next_grad.end(), grad.begin());
    optimizer->step();
    expect_close(value, golden["param_" + step], tolerance<Scalar>(), "param after step " + step);
  }
}

class OptimizerGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(OptimizerGolden, StepsMatchTorchOptimInDouble) { check_steps<double>(GetParam()); }
TEST_P(OptimizerGolden, StepsMatchTorchOptimInFloat) { check_steps<float>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Cases, OptimizerGolden,
                         ::testing::Values("sgd_plain", "sgd_momentum", "sgd_momentum_decay", "sgd_dampening_decay",
                                           "sgd_nesterov", "sgd_nesterov_decay", "adam_default", "adam_decay",
                                           "adam_custom"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
