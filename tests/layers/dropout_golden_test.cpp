// Dropout against PyTorch (tests/golden/dropout_*.txt, written by tests/golden/generate.py
// from torch.nn.functional.dropout) and against its convention.
//
// PyTorch draws its mask from another generator, so for 0 < p < 1 the outputs cannot match
// element by element. What is convention is checked exactly:
//   p = 0: the identity (output and gradient), in training and inference;
//   p = 1: zeros and zero gradients, never NaN;
//   0 < p < 1: every output is 0 or x · scale with PyTorch's scale 1/(1 − p) as PyTorch
//     rounds it, bit for bit, in double and float; where both masks keep an element, the
//     output equals PyTorch's; backward uses the forward's mask: dx = 0 exactly where y = 0,
//     dx = dy · scale elsewhere; inference is the identity;
//   the drop rate over 2^20 elements is within 4 sigma of p (a plain statistical check).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "eigenet/layers/dropout.hpp"
#include "support/dropout_support.hpp"
#include "support/golden.hpp"

namespace {

using eigenet::Dropout;
using eigenet::Index;
using eigenet::Shape;
using eigenet::testing::expect_close;
using eigenet::testing::GoldenFile;

const eigenet::testing::Tolerance exact{};

template <typename Scalar>
void check_matches_pytorch_in_both_modes(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  Dropout<Scalar> dropout(golden.scalar("p"), 7);
  eigenet::testing::expect_pytorch_outputs_in_both_modes(dropout, golden);
}

TEST(DropoutGolden, ZeroProbabilityIsTheIdentityLikePyTorch) {
  check_matches_pytorch_in_both_modes<double>("dropout_p0");
  check_matches_pytorch_in_both_modes<float>("dropout_p0");
}

TEST(DropoutGolden, ProbabilityOneGivesZerosAndZeroGradientsLikePyTorch) {
  check_matches_pytorch_in_both_modes<double>("dropout_p1");
  check_matches_pytorch_in_both_modes<float>("dropout_p1");
}

/// 0 < p < 1: the convention, bit for bit, in Scalar. `scale_key` names PyTorch's scale in
/// that precision, `torch_y_key` PyTorch's training output in that precision (its own mask).
template <typename Scalar>
void check_convention(const char* scale_key, const char* torch_y_key, const char* torch_dx_key) {
  const GoldenFile golden("dropout_p0_3");
  SCOPED_TRACE(golden.path());
  const double p = golden.scalar("p");
  const auto scale = static_cast<Scalar>(golden.scalar(scale_key));
  // The golden scale is 1/(1 − p) rounded to Scalar, as PyTorch computes it.
  EXPECT_EQ(scale, static_cast<Scalar>(1.0 / (1.0 - p)));

  const auto x = golden["x"].as<Scalar>(), dy = golden["dy"].as<Scalar>();
  const auto torch_y = golden[torch_y_key].as<Scalar>(), torch_dx = golden[torch_dx_key].as<Scalar>();
  Dropout<Scalar> dropout(p, 2024);
  const eigenet::testing::DropoutRun<Scalar> train = eigenet::testing::run_on_golden(dropout, golden);

  std::size_t dropped = 0, both_kept = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_NE(x[i], Scalar(0));  // the generator keeps |x| >= 0.25: y = 0 marks a dropped element
    if (train.y[i] == Scalar(0)) {
      ++dropped;
      EXPECT_EQ(train.dx[i], Scalar(0)) << "element " << i << " was dropped in forward but not in backward";
    } else {
      EXPECT_EQ(train.y[i], x[i] * scale) << "element " << i;
      EXPECT_EQ(train.dx[i], dy[i] * scale) << "element " << i << " was kept in forward; backward must scale dy";
      if (torch_y[i] != Scalar(0)) {
        ++both_kept;
        EXPECT_EQ(train.y[i], torch_y[i]) << "element " << i << " kept by both differs from PyTorch";
        EXPECT_EQ(train.dx[i], torch_dx[i]) << "gradient of element " << i << " kept by both differs from PyTorch";
      }
    }
  }
  // 120 elements, p = 0.3: both outcomes occur (fixed seed, so this is deterministic).
  EXPECT_GT(dropped, 0u);
  EXPECT_LT(dropped, x.size());
  EXPECT_GT(both_kept, 0u);

  dropout.eval();
  const eigenet::testing::DropoutRun<Scalar> eval = eigenet::testing::run_on_golden(dropout, golden);
  expect_close(eval.y, golden["eval_y"], exact, "eval_y");
  expect_close(eval.dx, golden["eval_dx"], exact, "eval_dx");
}

TEST(DropoutGolden, KeptValuesAreScaledExactlyAsPyTorchInDouble) {
  check_convention<double>("scale_float64", "train_y", "train_dx");
}

TEST(DropoutGolden, KeptValuesAreScaledExactlyAsPyTorchInFloat) {
  check_convention<float>("scale_float32", "train_y_float32", "train_dx_float32");
}

class DropoutRate : public ::testing::TestWithParam<double> {};

TEST_P(DropoutRate, IsWithinFourSigmaOfP) {
  const double p = GetParam();
  const Index count = Index{1} << 20;
  Dropout<float> dropout(p, 12345);
  eigenet::Tensor<float, 1> x(count);
  x.setConstant(1.0f);
  const auto y = dropout.forward(x);
  const auto dx = dropout.backward(x, x);
  Index dropped = 0, mask_mismatches = 0;
  for (Index i = 0; i < count; ++i) {
    dropped += y(i) == 0.0f ? 1 : 0;
    mask_mismatches += (y(i) == 0.0f) != (dx(i) == 0.0f) ? 1 : 0;
  }
  const double n = static_cast<double>(count);
  const double rate = static_cast<double>(dropped) / n;
  const double sigma = std::sqrt(p * (1.0 - p) / n);
  EXPECT_LE(std::abs(rate - p), 4 * sigma)
      << "drop rate " << rate << " over " << count << " elements, p = " << p << ", sigma = " << sigma;
  EXPECT_EQ(mask_mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(Probabilities, DropoutRate, ::testing::Values(0.1, 0.5, 0.9));

}  // namespace
