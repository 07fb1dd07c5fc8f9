// AlphaDropout and FeatureAlphaDropout against PyTorch 1.13 (tests/golden/alpha_dropout_*.txt,
// written by tests/golden/generate_dropout.py from torch.nn.functional.alpha_dropout and
// feature_alpha_dropout in float64).
//
// PyTorch's mask comes from its own generator, so the test infers it from PyTorch's output:
// dropped elements are those whose gradient is 0 (the generator keeps |dy| >= 0.25), and
// all of them must hold one value. Then, in double:
//   PyTorch's dropped value equals our a·α' + b, and every kept PyTorch value equals our
//   a·x + b, to rounding (a few ulps): our constants are PyTorch's;
//   PyTorch's kept gradient equals our a·dy;
//   our own outputs take only those two forms, with our mask (the same for y and dx), and
//   where both keep an element the outputs agree to rounding;
//   p = 0 and inference are the identity; p = 1 gives zeros (PyTorch's x·0) and zero
//   gradients.
// float runs the same inputs and is held to float rounding of the same values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "eigenet/layers/alpha_dropout.hpp"
#include "support/golden.hpp"

namespace {

using eigenet::AlphaDropout;
using eigenet::FeatureAlphaDropout;
using eigenet::Shape;
using eigenet::testing::expect_close;
using eigenet::testing::GoldenFile;
using eigenet::testing::Tolerance;

template <typename Scalar>
struct Outputs {
  std::vector<Scalar> y, dx;
};

template <typename Scalar>
Outputs<Scalar> run(AlphaDropout<Scalar>& layer, const GoldenFile& golden) {
  const Shape shape = golden["x"].shape;
  const auto x = golden["x"].as<Scalar>(), dy = golden["dy"].as<Scalar>();
  Outputs<Scalar> out{std::vector<Scalar>(x.size()), std::vector<Scalar>(x.size())};
  layer.forward_into({x.data(), shape}, {out.y.data(), shape});
  layer.backward_into({x.data(), shape}, {dy.data(), shape}, {out.dx.data(), shape});
  return out;
}

/// |got − want| within `ulps` units of rounding of the magnitude of the terms.
template <typename Scalar>
bool close_to_rounding(double got, double want, double magnitude, double ulps = 4) {
  return std::abs(got - want) <= ulps * std::numeric_limits<Scalar>::epsilon() * magnitude;
}

template <typename Scalar>
void check_against_torch(AlphaDropout<Scalar>& layer, const GoldenFile& golden) {
  SCOPED_TRACE(golden.path());
  const auto x = golden["x"].values, dy = golden["dy"].values;
  const auto torch_y = golden["train_y"].values, torch_dx = golden["train_dx"].values;
  const auto c = layer.constants();
  const double a = c.scale, b = c.offset, dropped_value = c.dropped_value;

  // PyTorch's mask, inferred from its gradient; its dropped elements hold one value.
  std::vector<bool> torch_kept(x.size());
  std::size_t torch_dropped = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    torch_kept[i] = torch_dx[i] != 0.0;
    if (torch_kept[i]) {
      EXPECT_TRUE(close_to_rounding<double>(torch_y[i], a * x[i] + b, std::abs(a * x[i]) + std::abs(b)))
          << "PyTorch's kept y[" << i << "] = " << torch_y[i] << ", our a x + b = " << a * x[i] + b;
      EXPECT_TRUE(close_to_rounding<double>(torch_dx[i], a * dy[i], std::abs(a * dy[i])))
          << "PyTorch's kept dx[" << i << "] = " << torch_dx[i] << ", our a dy = " << a * dy[i];
    } else {
      ++torch_dropped;
      EXPECT_TRUE(close_to_rounding<double>(torch_y[i], dropped_value, std::abs(dropped_value)))
          << "PyTorch's dropped y[" << i << "] = " << torch_y[i] << ", our a alpha' + b = " << dropped_value;
    }
  }
  EXPECT_GT(torch_dropped, 0u);
  EXPECT_LT(torch_dropped, x.size());

  // Our outputs: only the two forms, one mask for y and dx.
  const Outputs<Scalar> ours = run(layer, golden);
  const auto sa = static_cast<Scalar>(a), sb = static_cast<Scalar>(b);
  const auto sdropped = static_cast<Scalar>(dropped_value);
  std::size_t dropped = 0, both_kept = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto xi = static_cast<Scalar>(x[i]), dyi = static_cast<Scalar>(dy[i]);
    if (ours.dx[i] == Scalar(0)) {
      ++dropped;
      ASSERT_EQ(ours.y[i], sdropped) << "element " << i;
    } else {
      ASSERT_EQ(ours.dx[i], sa * dyi) << "element " << i;
      ASSERT_TRUE(close_to_rounding<Scalar>(ours.y[i], sa * xi + sb, std::abs(sa * xi) + std::abs(sb), 2))
          << "element " << i << ": " << ours.y[i] << " vs " << sa * xi + sb;
      if (torch_kept[i]) {
        ++both_kept;
        ASSERT_TRUE(close_to_rounding<Scalar>(ours.y[i], torch_y[i], std::abs(a * x[i]) + std::abs(b)))
            << "element " << i << " kept by both: ours " << ours.y[i] << ", PyTorch " << torch_y[i];
        ASSERT_TRUE(close_to_rounding<Scalar>(ours.dx[i], torch_dx[i], std::abs(a * dy[i])));
      }
    }
  }
  EXPECT_GT(dropped, 0u);
  EXPECT_LT(dropped, x.size());
  EXPECT_GT(both_kept, 0u);

  layer.eval();
  const Outputs<Scalar> eval = run(layer, golden);
  expect_close(eval.y, golden["eval_y"], Tolerance{}, "eval_y");
  expect_close(eval.dx, golden["eval_dx"], Tolerance{}, "eval_dx");
}

TEST(AlphaDropoutGolden, ConstantsAndOutputsMatchPyTorch) {
  for (const char* file : {"alpha_dropout_p0_2", "alpha_dropout_p0_5"}) {
    const GoldenFile golden(file);
    AlphaDropout<double> in_double(golden.scalar("p"), 3);
    check_against_torch(in_double, golden);
    AlphaDropout<float> in_float(golden.scalar("p"), 3);
    check_against_torch(in_float, golden);
  }
}

TEST(AlphaDropoutGolden, FeatureAlphaDropoutSharesChannelsLikePyTorch) {
  const GoldenFile golden("alpha_dropout_feature_p0_3");
  const Shape shape = golden["x"].shape;  // (N, C, H, W)
  const auto per_channel = static_cast<std::size_t>(shape[2] * shape[3]);
  for (const auto* values : {&golden["train_dx"].values}) {
    for (std::size_t start = 0; start < values->size(); start += per_channel)
      for (std::size_t j = 1; j < per_channel; ++j)
        ASSERT_EQ((*values)[start + j] == 0.0, (*values)[start] == 0.0) << "PyTorch's channel at " << start;
  }
  FeatureAlphaDropout<double> in_double(golden.scalar("p"), 9);
  check_against_torch(in_double, golden);
  FeatureAlphaDropout<double> again(golden.scalar("p"), 9);
  const auto dx = run(again, golden).dx;
  for (std::size_t start = 0; start < dx.size(); start += per_channel)
    for (std::size_t j = 1; j < per_channel; ++j)
      ASSERT_EQ(dx[start + j] == 0.0, dx[start] == 0.0) << "our channel at " << start;
  FeatureAlphaDropout<float> in_float(golden.scalar("p"), 9);
  check_against_torch(in_float, golden);
}

template <typename Scalar>
void check_exact(const char* file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  AlphaDropout<Scalar> layer(golden.scalar("p"), 1);
  const Outputs<Scalar> train = run(layer, golden);
  // PyTorch's p = 1 output is x · 0 (signed zeros); ours is +0: equal as numbers.
  expect_close(train.y, golden["train_y"], Tolerance{}, "train_y");
  expect_close(train.dx, golden["train_dx"], Tolerance{}, "train_dx");
  layer.eval();
  const Outputs<Scalar> eval = run(layer, golden);
  expect_close(eval.y, golden["eval_y"], Tolerance{}, "eval_y");
  expect_close(eval.dx, golden["eval_dx"], Tolerance{}, "eval_dx");
}

TEST(AlphaDropoutGolden, ZeroProbabilityIsTheIdentityAndOneGivesZerosLikePyTorch) {
  check_exact<double>("alpha_dropout_p0");
  check_exact<float>("alpha_dropout_p0");
  check_exact<double>("alpha_dropout_p1");
  check_exact<float>("alpha_dropout_p1");
}

}  // namespace
