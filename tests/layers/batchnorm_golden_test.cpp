// BatchNorm against PyTorch (tests/golden/batchnorm*.txt, written by tests/golden/generate.py
// from torch.nn.BatchNorm1d/2d/3d in float64) and against Keras' formulas.
//
// Each case: γ, β set; three training steps (forward, backward, running statistics after
// each step), then an inference step with the running statistics of step 3 (forward and
// backward). The options of a case (eps, momentum or none, affine, track_running_stats,
// channels last) are read from its file. The large-mean cases feed x = 10000 + randn; the
// constant-channel cases hold some channels constant (variance 0), compared channel by channel.
// Keras cases come from Keras' published formulas (run with PyTorch autograd; Keras is not
// installable here); ghost cases from PyTorch's BatchNorm applied chunk by chunk. A frozen
// BatchNorm in a training parent must give PyTorch's eval-mode step. Every case runs in
// double and in float on the same inputs (the generator rounds them to float32) and is
// compared with the float64 golden values.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "eigenet/layers/batchnorm.hpp"
#include "eigenet/model/sequential.hpp"
#include "support/golden.hpp"

namespace {

using eigenet::BatchNorm;
using eigenet::BatchNormOptions;
using eigenet::ChannelAxis;
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
  if (bn.options().affine && !bn.is_affine_frozen()) {
    expect_close(bn.weight_grad(), golden["dgamma" + suffix], tol, "dgamma" + suffix);
    expect_close(bn.bias_grad(), golden["dbeta" + suffix], tol, "dbeta" + suffix);
  } else {
    // Nothing is added to gradients of parameters that do not exist or are held fixed.
    for (Index c = 0; c < bn.num_features(); ++c) {
      EXPECT_EQ(bn.weight_grad()(c), Scalar(0)) << "dgamma" << suffix << "[" << c << "]";
      EXPECT_EQ(bn.bias_grad()(c), Scalar(0)) << "dbeta" << suffix << "[" << c << "]";
    }
  }
  if (bn.is_training() && !bn.is_frozen() && bn.options().track_running_stats) {
    expect_close(bn.running_mean(), golden["running_mean" + suffix], tol, "running_mean" + suffix);
    expect_close(bn.running_var(), golden["running_var" + suffix], tol, "running_var" + suffix);
  }
}

/// The options a case file states (files made before an option existed omit its flag).
BatchNormOptions options_of(const GoldenFile& golden) {
  auto flag = [&](const char* name, bool fallback) { return golden.has(name) ? golden.scalar(name) != 0.0 : fallback; };
  BatchNormOptions options;
  options.eps = golden.scalar("eps");
  options.momentum = flag("momentum_none", false) ? std::nullopt : std::optional<double>(golden.scalar("momentum"));
  options.affine = flag("affine", true);
  options.track_running_stats = flag("track_running_stats", true);
  options.channel_axis = flag("channels_last", false) ? ChannelAxis::Last : ChannelAxis::First;
  return options;
}

Index channels_of(const GoldenFile& golden, const BatchNormOptions& options) {
  const Shape& shape = golden["x_1"].shape;
  return options.channel_axis == ChannelAxis::Last ? shape.back() : shape.at(1);
}

template <typename Scalar>
void check_training_and_eval(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  const BatchNormOptions options = options_of(golden);
  BatchNorm<Scalar> bn(channels_of(golden, options), options);
  set_affine(bn, golden);
  EXPECT_EQ(bn.parameters().size(), options.affine ? 2u : 0u);
  for (const char* step : {"_1", "_2", "_3"}) check_step(bn, golden, step);
  EXPECT_EQ(bn.num_batches_tracked(), options.track_running_stats ? 3 : 0);
  bn.eval();
  EXPECT_EQ(bn.uses_batch_statistics(), !options.track_running_stats);
  check_step(bn, golden, "_eval");
}

/// A frozen BatchNorm whose Sequential is in training mode gives PyTorch's eval-mode step
/// (running statistics, unchanged), with or without γ and β held fixed.
template <typename Scalar>
void check_frozen_in_training_parent(const std::string& file, bool freeze_affine) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  const BatchNormOptions options = options_of(golden);
  ASSERT_TRUE(options.track_running_stats);
  eigenet::Sequential<Scalar> outer;
  auto& inner = outer.template add<eigenet::Sequential<Scalar>>();
  auto& bn = inner.template add<BatchNorm<Scalar>>(channels_of(golden, options), options);
  set_affine(bn, golden);
  for (const char* step : {"_1", "_2", "_3"}) check_step(bn, golden, step);
  bn.freeze(freeze_affine);
  outer.train();  // reaches bn through the nested Sequential, and does not unfreeze it
  ASSERT_TRUE(bn.is_training());
  ASSERT_TRUE(bn.is_frozen());
  EXPECT_FALSE(bn.uses_batch_statistics());
  check_step(bn, golden, "_eval");
  expect_close(bn.running_mean(), golden["running_mean_3"], tolerance<Scalar>(), "running_mean after frozen step");
  expect_close(bn.running_var(), golden["running_var_3"], tolerance<Scalar>(), "running_var after frozen step");
  EXPECT_EQ(bn.num_batches_tracked(), 3);
  for (const auto& parameter : outer.parameters()) EXPECT_EQ(parameter.is_frozen(), freeze_affine) << parameter.name;
}

/// Keras' formulas through BatchNormOptions::keras(momentum, epsilon).
template <typename Scalar>
void check_keras(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  const BatchNormOptions options = BatchNormOptions::keras(golden.scalar("keras_momentum"), golden.scalar("epsilon"));
  BatchNorm<Scalar> bn(golden["x_1"].shape.back(), options);
  set_affine(bn, golden);
  for (const char* step : {"_1", "_2", "_3"}) check_step(bn, golden, step);
  bn.eval();
  check_step(bn, golden, "_eval");
}

/// Ghost batch normalisation against PyTorch's BatchNorm run on each chunk in turn.
template <typename Scalar>
void check_ghost(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  BatchNormOptions options;
  options.virtual_batch_size = static_cast<Index>(golden.scalar("virtual_batch_size"));
  BatchNorm<Scalar> bn(golden["x"].shape.at(1), options);
  set_affine(bn, golden);
  check_step(bn, golden, "");
  EXPECT_EQ(bn.num_batches_tracked(), static_cast<long long>(golden.scalar("chunks")));
}

template <typename Scalar>
void check_large_mean(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  BatchNorm<Scalar> bn(golden["x"].shape.at(1), BatchNormOptions{golden.scalar("eps"), golden.scalar("momentum")});
  set_affine(bn, golden);
  check_step(bn, golden, "");
}

// Constant channels (batchnorm1d_constant_channels: channels 1 and 3 hold 3.0 and 1e4 in
// every step; batchnorm2d_constant_channel: channel 2 holds 0.1 rounded to float). Their
// batch variance is 0, so only eps keeps 1/sqrt(var + eps) finite. Values of very different
// size then sit side by side — dx of a constant channel is γ/√eps · (dy − mean dy), ~300
// times the others, and at 1e4 its running mean and inference output reach 1e3..1e4 — so y,
// dx and the running statistics are compared channel by channel, each to its own magnitude
// (compared as one array, the large channels would hide an error in the others).
// Exact: in training a constant channel's output is β and its dγ is 0 (x − mean = 0), in
// float and double. PyTorch's float64 output there is β only to its own rounding: it computes
// x·α + (β − mean·α), α = γ/√(var + eps), which rounds at the ulp of |x·α| (measured: 1.2e-10
// off β at x = 1e4, where |x·α| = 3.5e6). So the comparison with PyTorch allows
// 2·2^-52·|x·α| more on those values (1.5e-9 at 1e4), and the exact check holds eigenet to β.

/// The values of channel c of a channels-first (N, C, ...) array, in order.
template <typename T>
std::vector<T> channel_values(const std::vector<T>& values, const Shape& shape, Index c) {
  const Index samples = shape.at(0), channels = shape.at(1);
  const Index spatial = eigenet::element_count(shape) / (samples * channels);
  std::vector<T> out;
  for (Index n = 0; n < samples; ++n)
    for (Index s = 0; s < spatial; ++s)
      out.push_back(values[static_cast<std::size_t>((n * channels + c) * spatial + s)]);
  return out;
}

/// expect_close for each channel of an (N, C, ...) array on its own, with `extra_abs[c]`
/// added to the absolute tolerance of channel c (none when empty).
template <typename Scalar>
void expect_close_by_channel(const std::vector<Scalar>& actual, const eigenet::testing::GoldenArray& expected,
                             Tolerance tolerance, const std::vector<double>& extra_abs, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.values.size()) << what;
  for (Index c = 0; c < expected.shape.at(1); ++c) {
    const auto values = channel_values(expected.values, expected.shape, c);
    const eigenet::testing::GoldenArray channel{{static_cast<Index>(values.size())}, values};
    Tolerance channel_tolerance = tolerance;
    if (!extra_abs.empty()) channel_tolerance.abs += extra_abs[static_cast<std::size_t>(c)];
    expect_close(channel_values(actual, expected.shape, c), channel, channel_tolerance,
                 what + " channel " + std::to_string(c));
  }
}

/// expect_close for each element of a (C) array on its own.
template <typename Scalar>
void expect_close_by_element(const Scalar* actual, const eigenet::testing::GoldenArray& expected, Tolerance tolerance,
                             const std::string& what) {
  for (Index c = 0; c < expected.size(); ++c) {
    const eigenet::testing::GoldenArray element{{1}, {expected.values[static_cast<std::size_t>(c)]}};
    expect_close(actual + c, 1, element, tolerance, what + "[" + std::to_string(c) + "]");
  }
}

template <typename Scalar>
void check_constant_channel_step(BatchNorm<Scalar>& bn, const GoldenFile& golden, const std::string& suffix) {
  const Tolerance tol = tolerance<Scalar>();
  const Shape shape = golden["x" + suffix].shape;
  const auto x = golden["x" + suffix].as<Scalar>(), dy = golden["dy" + suffix].as<Scalar>();
  const auto constant = golden["constant_channels"].values, value = golden["constant_values"].values;
  ASSERT_EQ(constant.size(), value.size());
  const double eps = golden.scalar("eps");
  const bool training = bn.is_training();
  std::vector<Scalar> y(x.size()), dx(x.size());
  bn.forward_into({x.data(), shape}, {y.data(), shape});
  bn.zero_grad();
  bn.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});

  std::vector<double> pytorch_rounding(static_cast<std::size_t>(bn.num_features()), 0.0);
  for (std::size_t k = 0; k < constant.size(); ++k) {
    const auto c = static_cast<Index>(constant[k]);
    for (Scalar v : channel_values(x, shape, c))
      ASSERT_EQ(static_cast<double>(v), value[k]) << "x" << suffix << " channel " << c << " is not constant";
    const double gamma = golden["gamma"].values[static_cast<std::size_t>(c)];
    if (training)
      pytorch_rounding[static_cast<std::size_t>(c)] = 0x1.0p-51 * std::abs(value[k] * gamma) / std::sqrt(eps);
  }
  expect_close_by_channel(y, golden["y" + suffix], tol, pytorch_rounding, "y" + suffix);
  expect_close_by_channel(dx, golden["dx" + suffix], tol, {}, "dx" + suffix);
  expect_close(bn.weight_grad(), golden["dgamma" + suffix], tol, "dgamma" + suffix);
  expect_close(bn.bias_grad(), golden["dbeta" + suffix], tol, "dbeta" + suffix);
  if (training) {
    expect_close_by_element(bn.running_mean().data(), golden["running_mean" + suffix], tol, "running_mean" + suffix);
    expect_close_by_element(bn.running_var().data(), golden["running_var" + suffix], tol, "running_var" + suffix);
    for (double channel : constant) {
      const auto c = static_cast<Index>(channel);
      for (Scalar v : channel_values(y, shape, c)) ASSERT_EQ(v, bn.bias()(c)) << "y" << suffix << " channel " << c;
      EXPECT_EQ(bn.weight_grad()(c), Scalar(0)) << "dgamma" << suffix << " channel " << c;
    }
  }
}

template <typename Scalar>
void check_constant_channels(const std::string& file) {
  const GoldenFile golden(file);
  SCOPED_TRACE(golden.path());
  const BatchNormOptions options = options_of(golden);
  ASSERT_EQ(options.channel_axis, ChannelAxis::First);
  ASSERT_TRUE(options.affine && options.track_running_stats);
  BatchNorm<Scalar> bn(channels_of(golden, options), options);
  set_affine(bn, golden);
  for (const char* step : {"_1", "_2", "_3"}) check_constant_channel_step(bn, golden, step);
  EXPECT_EQ(bn.num_batches_tracked(), 3);
  bn.eval();
  check_constant_channel_step(bn, golden, "_eval");
}

class BatchNormGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchNormGolden, TrainingStepsThenEvalMatchPyTorchInDouble) { check_training_and_eval<double>(GetParam()); }
TEST_P(BatchNormGolden, TrainingStepsThenEvalMatchPyTorchInFloat) { check_training_and_eval<float>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Cases, BatchNormGolden,
                         ::testing::Values("batchnorm1d_default", "batchnorm1d_eps1e-3_momentum0.3",
                                           "batchnorm1d_ncl_default", "batchnorm2d_default",
                                           "batchnorm2d_eps1e-3_momentum0.3", "batchnorm3d_default",
                                           "batchnorm2d_no_affine", "batchnorm1d_no_running_stats",
                                           "batchnorm2d_no_running_stats_no_affine", "batchnorm1d_momentum_none",
                                           "batchnorm2d_channels_last", "batchnorm1d_nlc_channels_last",
                                           "batchnorm3d_channels_last_momentum_none"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-' || c == '.') c = '_';
                           return name;
                         });

class BatchNormConstantChannelGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchNormConstantChannelGolden, TrainingStepsThenEvalMatchPyTorchChannelByChannelInDouble) {
  check_constant_channels<double>(GetParam());
}
TEST_P(BatchNormConstantChannelGolden, TrainingStepsThenEvalMatchPyTorchChannelByChannelInFloat) {
  check_constant_channels<float>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Cases, BatchNormConstantChannelGolden,
                         ::testing::Values("batchnorm1d_constant_channels", "batchnorm2d_constant_channel"),
                         [](const auto& info) { return std::string(info.param); });

class BatchNormLargeMeanGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchNormLargeMeanGolden, TrainingStepMatchesPyTorchInDouble) { check_large_mean<double>(GetParam()); }
TEST_P(BatchNormLargeMeanGolden, TrainingStepMatchesPyTorchInFloat) { check_large_mean<float>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Cases, BatchNormLargeMeanGolden,
                         ::testing::Values("batchnorm1d_large_mean", "batchnorm2d_large_mean"),
                         [](const auto& info) { return std::string(info.param); });

// Every case with running statistics (a BatchNorm without them cannot be frozen: tested in
// batchnorm_options_test.cpp).
class BatchNormFrozenGolden : public ::testing::TestWithParam<std::string> {};
TEST_P(BatchNormFrozenGolden, FrozenInTrainingParentGivesEvalStepInDouble) {
  check_frozen_in_training_parent<double>(GetParam(), true);
  check_frozen_in_training_parent<double>(GetParam(), false);
}
TEST_P(BatchNormFrozenGolden, FrozenInTrainingParentGivesEvalStepInFloat) {
  check_frozen_in_training_parent<float>(GetParam(), true);
  check_frozen_in_training_parent<float>(GetParam(), false);
}
INSTANTIATE_TEST_SUITE_P(Cases, BatchNormFrozenGolden,
                         ::testing::Values("batchnorm1d_default", "batchnorm2d_eps1e-3_momentum0.3",
                                           "batchnorm3d_default", "batchnorm2d_no_affine", "batchnorm1d_momentum_none",
                                           "batchnorm2d_channels_last", "batchnorm3d_channels_last_momentum_none"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-' || c == '.') c = '_';
                           return name;
                         });

class BatchNormKerasGolden : public ::testing::TestWithParam<std::string> {};
TEST_P(BatchNormKerasGolden, MatchesKerasFormulasInDouble) { check_keras<double>(GetParam()); }
TEST_P(BatchNormKerasGolden, MatchesKerasFormulasInFloat) { check_keras<float>(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Cases, BatchNormKerasGolden, ::testing::Values("batchnorm_keras_nhwc", "batchnorm_keras_nc"),
                         [](const auto& info) { return std::string(info.param); });

class BatchNormGhostGolden : public ::testing::TestWithParam<std::string> {};
TEST_P(BatchNormGhostGolden, MatchesPyTorchChunkByChunkInDouble) { check_ghost<double>(GetParam()); }
TEST_P(BatchNormGhostGolden, MatchesPyTorchChunkByChunkInFloat) { check_ghost<float>(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Cases, BatchNormGhostGolden, ::testing::Values("batchnorm1d_ghost", "batchnorm2d_ghost"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
