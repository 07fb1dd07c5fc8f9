// Channel dropout (Dropout2d) and shared axes (Keras noise_shape) against PyTorch 1.13
// (tests/golden/dropout2d_*.txt from torch.nn.functional.dropout1d/2d/3d) and against
// Keras' published formula evaluated with PyTorch (tests/golden/dropout_noise_shape_*.txt),
// all written by tests/golden/generate_dropout.py in float64.
//
// PyTorch draws its mask from another generator, so for 0 < p < 1 the outputs cannot match
// element by element. What is convention is checked exactly, in double and float:
//   p = 0: the identity (output and gradient), in training and inference;
//   p = 1: zeros and zero gradients, never NaN;
//   0 < p < 1: PyTorch's scale 1/(1 − p) as PyTorch rounds it; every element 0 or x·scale;
//     all elements that share a mask value (a channel; a noise element) share one fate, in
//     PyTorch's output and in ours; where both keep a channel the outputs are equal; the
//     gradient is 0 exactly where the output is, dy·scale elsewhere; inference is the
//     identity.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "eigenet/layers/dropout.hpp"
#include "support/dropout_support.hpp"
#include "support/golden.hpp"

namespace {

using eigenet::Dropout;
using eigenet::Dropout2d;
using eigenet::DropoutOptions;
using eigenet::Index;
using eigenet::Shape;
using eigenet::testing::expect_close;
using eigenet::testing::GoldenFile;

const eigenet::testing::Tolerance exact{};

template <typename Scalar>
void check_identity_and_zeros(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  Dropout2d<Scalar> dropout(golden.scalar("p"), 7);
  eigenet::testing::expect_pytorch_outputs_in_both_modes(dropout, golden);
}

TEST(Dropout2dGolden, ZeroProbabilityIsTheIdentityLikePyTorch) {
  check_identity_and_zeros<double>("dropout2d_p0");
  check_identity_and_zeros<float>("dropout2d_p0");
}

TEST(Dropout2dGolden, ProbabilityOneGivesZerosLikePyTorch) {
  check_identity_and_zeros<double>("dropout2d_p1");
  check_identity_and_zeros<float>("dropout2d_p1");
}

/// Elements grouped by the mask value they share: group_of[i] for element i.
std::vector<Index> groups(const Shape& shape, const std::vector<bool>& shared) {
  const Index count = eigenet::element_count(shape);
  std::vector<Index> group(static_cast<std::size_t>(count));
  for (Index i = 0; i < count; ++i) {
    Index flat = i, index = 0, stride = 1;
    for (std::size_t k = shape.size(); k-- > 0;) {
      const Index position = flat % shape[k];
      flat /= shape[k];
      if (!shared[k]) {
        index += position * stride;
        stride *= shape[k];
      }
    }
    group[static_cast<std::size_t>(i)] = index;
  }
  return group;
}

/// The key of the golden training output in Scalar's precision: train_y (float64) or
/// train_y_float32 (PyTorch's float32 run, whose rounding ours must match bit for bit).
template <typename Scalar>
std::string in_precision(const std::string& key) {
  return std::is_same_v<Scalar, float> ? key + "_float32" : key;
}

/// Checks the convention for a layer against a golden file with x, dy, train_y, train_dx
/// (PyTorch's or the formula's; with _float32 for float) and, when present, eval_y / eval_dx.
template <typename Scalar>
void check_convention(Dropout<Scalar>& dropout, const GoldenFile& golden, Scalar scale) {
  const double p = golden.scalar("p");
  EXPECT_EQ(scale, static_cast<Scalar>(1.0 / (1.0 - p)));
  const Shape shape = golden["x"].shape;
  const auto x = golden["x"].as<Scalar>(), dy = golden["dy"].as<Scalar>();
  const auto torch_y = golden[in_precision<Scalar>("train_y")].template as<Scalar>();
  const auto torch_dx = golden[in_precision<Scalar>("train_dx")].template as<Scalar>();
  const std::vector<Index> group = groups(shape, dropout.shared_flags(shape));
  const eigenet::testing::DropoutRun<Scalar> train = eigenet::testing::run_on_golden(dropout, golden);

  std::vector<int> ours(x.size(), -1), theirs(x.size(), -1);  // per group: 1 kept, 0 dropped
  std::size_t dropped = 0, both_kept = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_NE(x[i], Scalar(0));  // the generator keeps |x| >= 0.25: y = 0 marks a dropped element
    const auto g = static_cast<std::size_t>(group[i]);
    const int kept = train.y[i] != Scalar(0) ? 1 : 0;
    const int torch_kept = torch_y[i] != Scalar(0) ? 1 : 0;
    if (ours[g] == -1) ours[g] = kept;
    if (theirs[g] == -1) theirs[g] = torch_kept;
    ASSERT_EQ(ours[g], kept) << "element " << i << " does not share the fate of its mask group";
    ASSERT_EQ(theirs[g], torch_kept) << "PyTorch's element " << i << " does not share its group's fate";
    if (kept) {
      ASSERT_EQ(train.y[i], x[i] * scale) << "element " << i;
      ASSERT_EQ(train.dx[i], dy[i] * scale) << "element " << i;
      if (torch_kept) {
        ++both_kept;
        ASSERT_EQ(train.y[i], torch_y[i]) << "element " << i << " kept by both differs from the golden value";
        ASSERT_EQ(train.dx[i], torch_dx[i]) << "gradient of element " << i << " kept by both differs";
      }
    } else {
      ++dropped;
      ASSERT_EQ(train.y[i], Scalar(0));
      ASSERT_EQ(train.dx[i], Scalar(0)) << "element " << i << " was dropped in forward but not in backward";
    }
    if (!torch_kept) {
      ASSERT_EQ(torch_dx[i], Scalar(0));
    }
  }
  EXPECT_GT(dropped, 0u);
  EXPECT_LT(dropped, x.size());
  EXPECT_GT(both_kept, 0u);

  if (golden.has("eval_y")) {
    dropout.eval();
    const eigenet::testing::DropoutRun<Scalar> eval = eigenet::testing::run_on_golden(dropout, golden);
    expect_close(eval.y, golden["eval_y"], exact, "eval_y");
    expect_close(eval.dx, golden["eval_dx"], exact, "eval_dx");
  }
}

template <typename Scalar>
void check_channel_file(const std::string& file, const char* scale_key, std::uint64_t seed) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  Dropout2d<Scalar> dropout(golden.scalar("p"), seed);
  check_convention(dropout, golden, static_cast<Scalar>(golden.scalar(scale_key)));
}

TEST(Dropout2dGolden, WholeChannelsDropTogetherScaledExactlyAsPyTorch) {
  // (N, C, H, W) from dropout2d; (N, C, L) from dropout1d; (N, C, D, H, W) from dropout3d.
  for (const char* file : {"dropout2d_p0_4", "dropout2d_rank3_p0_4", "dropout2d_rank5_p0_4"}) {
    check_channel_file<double>(file, "scale_float64", 5);
    check_channel_file<float>(file, "scale_float32", 5);
  }
}

/// Shared axes from Keras' noise_shape: the axes where it is 1 (and the input is not).
std::vector<int> shared_axes_of(const GoldenFile& golden) {
  const auto noise = golden["noise_shape"].values;
  const Shape shape = golden["x"].shape;
  std::vector<int> axes;
  for (std::size_t k = 0; k < noise.size(); ++k)
    if (noise[k] == 1.0 && shape[k] != 1) axes.push_back(static_cast<int>(k));
  return axes;
}

template <typename Scalar>
void check_noise_shape_file(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  Dropout<Scalar> dropout(golden.scalar("p"), 21, DropoutOptions::shared(shared_axes_of(golden)));
  const Shape noise = dropout.noise_shape(golden["x"].shape);
  ASSERT_EQ(noise.size(), golden["noise_shape"].values.size());
  for (std::size_t k = 0; k < noise.size(); ++k)
    EXPECT_EQ(static_cast<double>(noise[k]), golden["noise_shape"].values[k]) << "axis " << k;
  EXPECT_EQ(golden["keep"].shape, noise);
  check_convention(dropout, golden, static_cast<Scalar>(1.0 / (1.0 - golden.scalar("p"))));
}

TEST(DropoutNoiseShapeGolden, SharedAxesFollowKerasNoiseShape) {
  for (const char* file : {"dropout_noise_shape_axis1", "dropout_noise_shape_axis0", "dropout_noise_shape_axes23"}) {
    check_noise_shape_file<double>(file);
    check_noise_shape_file<float>(file);
  }
}

}  // namespace
