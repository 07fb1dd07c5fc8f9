// BatchNorm against PyTorch (tests/golden/batchnorm*.txt, written by tests/golden/generate.py
// from torch.nn.BatchNorm1d/2d in float64).
//
// Each case: γ, β set; three training steps (forward, backward, running statistics after
// each step), then an inference step with the running statistics of step 3 (forward and
// backward). The large-mean cases feed x = 10000 + randn. Every case runs in double and in
// float on the same inputs (the generator rounds them to float32) and is compared with the
// float64 golden values.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "eigenet/layers/batchnorm.hpp"
#include "support/golden.hpp"

namespace {

using eigenet::BatchNorm;
using eigenet::BatchNormOptions;
using eigenet::Index;
using eigenet::Shape;
using eigenet::testing::expect_close;
using eigenet::testing::GoldenFile;
using eigenet::testing::Tolerance;

// double: the golden values are themselves float64 results; eigenet agrees to a few 1e-16
// of each array's magnitude (measured), so 1e-12 leaves room for other compilers only.
// float: 8 float ulps (2^-23) of the array's magnitude and of each value; measured errors
// stay below one such ulp. A sum that cancels (dx, dgamma) is held to the ulps of its
// terms' scale, not of its own small value.
template <typename Scalar>
Tolerance tolerance();
template <>
Tolerance tolerance<double>() {
  return {0.0, 1e-12, 1e-12};
}
template <>
Tolerance tolerance<float>() {
  const double ulp = 0x1.0p-23;
  return {0.0, 8 * ulp, 8 * ulp};
}

template <typename Scalar>
void set_affine(BatchNorm<Scalar>& bn, const GoldenFile& golden) {
  const auto gamma = golden["gamma"].as<Scalar>(), beta = golden["beta"].as<Scalar>();
  ASSERT_EQ(static_cast<Index>(gamma.size()), bn.num_features());
  for (Index c = 0; c < bn.num_features(); ++c) {
    bn.weight()(c) = gamma[static_cast<std::size_t>(c)];
    bn.bias()(c) = beta[static_cast<std::size_t>(c)];
  }
}

/// One forward and backward on x_<tag>, dy_<tag>, compared with y, dx, dgamma, dbeta (and
/// the running statistics in training mode) of that step.
template <typename Scalar>
void check_step(BatchNorm<Scalar>& bn, const GoldenFile& golden, const std::string& suffix) {
  const Tolerance tol = tolerance<Scalar>();
  const Shape shape = golden["x" + suffix].shape;
  const auto x = golden["x" + suffix].as<Scalar>(), dy = golden["dy" + suffix].as<Scalar>();
  std::vector<Scalar> y(x.size()), dx(x.size());
  bn.forward_into({x.data(), shape}, {y.data(), shape});
  bn.zero_grad();
  bn.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});
  expect_close(y, golden["y" + suffix], tol, "y" + suffix);
  expect_close(dx, golden["dx" + suffix], tol, "dx" + suffix);
  expect_close(bn.weight_grad(), golden["dgamma" + suffix], tol, "dgamma" + suffix);
  expect_close(bn.bias_grad(), golden["dbeta" + suffix], tol, "dbeta" + suffix);
  if (bn.is_training()) {
    expect_close(bn.running_mean(), golden["running_mean" + suffix], tol, "running_mean" + suffix);
    expect_close(bn.running_var(), golden["running_var" + suffix], tol, "running_var" + suffix);
  }
}

template <typename Scalar>
void check_training_and_eval(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  BatchNorm<Scalar> bn(golden["x_1"].shape.at(1), BatchNormOptions{golden.scalar("eps"), golden.scalar("momentum")});
  set_affine(bn, golden);
  for (const char* step : {"_1", "_2", "_3"}) check_step(bn, golden, step);
  EXPECT_EQ(bn.num_batches_tracked(), 3);
  bn.eval();
  check_step(bn, golden, "_eval");
}

template <typename Scalar>
void check_large_mean(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  BatchNorm<Scalar> bn(golden["x"].shape.at(1), BatchNormOptions{golden.scalar("eps"), golden.scalar("momentum")});
  set_affine(bn, golden);
  check_step(bn, golden, "");
}

class BatchNormGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchNormGolden, TrainingStepsThenEvalMatchPyTorchInDouble) { check_training_and_eval<double>(GetParam()); }
TEST_P(BatchNormGolden, TrainingStepsThenEvalMatchPyTorchInFloat) { check_training_and_eval<float>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Cases, BatchNormGolden,
                         ::testing::Values("batchnorm1d_default", "batchnorm1d_eps1e-3_momentum0.3",
                                           "batchnorm1d_ncl_default", "batchnorm2d_default",
                                           "batchnorm2d_eps1e-3_momentum0.3"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-' || c == '.') c = '_';
                           return name;
                         });

class BatchNormLargeMeanGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchNormLargeMeanGolden, TrainingStepMatchesPyTorchInDouble) { check_large_mean<double>(GetParam()); }
TEST_P(BatchNormLargeMeanGolden, TrainingStepMatchesPyTorchInFloat) { check_large_mean<float>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Cases, BatchNormLargeMeanGolden,
                         ::testing::Values("batchnorm1d_large_mean", "batchnorm2d_large_mean"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
