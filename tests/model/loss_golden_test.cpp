// Softmax cross-entropy against torch.nn.functional.cross_entropy (reduction "mean";
// tests/golden/cross_entropy*.txt, written by tests/golden/generate.py in float64): the
// loss and ∂loss/∂logits, on ordinary logits and on logits of ±1e4 (dominant, vanishing,
// large common offset, all very negative, exact ties), in double and in float.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "eigenet/model/loss.hpp"
#include "support/golden.hpp"

namespace {

using eigenet::Index;
using eigenet::testing::expect_close;
using eigenet::testing::GoldenFile;
using eigenet::testing::Tolerance;

// The loss accumulates in double whatever Scalar is, and the golden logits are float
// values, so the loss agrees to double rounding in both precisions (relative to the loss:
// the large cases' loss is ~3e3 and carries ~1e4 · 2^-52 of rounding). The gradient is a
// probability rounded to Scalar, minus the one-hot label, over N: a few Scalar ulps of 1/N.
template <typename Scalar>
Tolerance gradient_tolerance();
template <>
Tolerance gradient_tolerance<double>() {
  return {0.0, 1e-12, 1e-12};
}
template <>
Tolerance gradient_tolerance<float>() {
  const double ulp = 0x1.0p-23;
  return {0.0, 8 * ulp, 8 * ulp};
}

template <typename Scalar>
void check_loss(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  const auto logits = golden["logits"].tensor<Scalar, 2>("logits");
  std::vector<std::int64_t> labels;
  for (double label : golden["labels"].values) labels.push_back(static_cast<std::int64_t>(label));
  eigenet::SoftmaxCrossEntropy<Scalar> loss;
  const double value = loss.forward(logits, labels);
  const Tolerance loss_tolerance{0.0, 1e-12, 0.0};
  expect_close(std::vector<double>{value}, golden["loss"], loss_tolerance, "loss");
  const auto grad = loss.backward();
  expect_close(grad.data(), grad.size(), golden["dlogits"], gradient_tolerance<Scalar>(), "dlogits");
}

class LossGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(LossGolden, SoftmaxCrossEntropyMatchesPyTorchInDouble) { check_loss<double>(GetParam()); }
TEST_P(LossGolden, SoftmaxCrossEntropyMatchesPyTorchInFloat) { check_loss<float>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Cases, LossGolden, ::testing::Values("cross_entropy", "cross_entropy_large"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
