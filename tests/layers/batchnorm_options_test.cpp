// BatchNorm's options beyond PyTorch's defaults (issue 3): affine off, no running
// statistics, cumulative momentum, channels last, ranks 2 to 5, the Keras preset, frozen
// layers, ghost batches, single-value batches, zero-variance channels and float inputs with
// a large mean. PyTorch's and Keras' numbers for these are in batchnorm_golden_test.cpp;
// this file checks gradients by finite differences (float and double) for every option,
// and the behaviour the golden files cannot show (what throws, what stays unchanged).
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "eigenet/layers/batchnorm.hpp"
#include "eigenet/model/optimizer.hpp"
#include "eigenet/model/sequential.hpp"
#include "support/checks.hpp"
#include "support/gradcheck.hpp"

namespace {

using eigenet::BatchNorm;
using eigenet::BatchNormOptions;
using eigenet::ChannelAxis;
using eigenet::Index;
using eigenet::RunningVariance;
using eigenet::Shape;
using eigenet::SingleValueBatch;
using eigenet::testing::check_layer_gradients;
using eigenet::testing::random_values;

template <typename Scalar>
std::vector<Scalar> values(Index count, std::uint32_t seed, double low = -1.0, double high = 1.0) {
  const auto v = random_values(count, seed, low, high);
  return std::vector<Scalar>(v.begin(), v.end());
}

// Non-trivial γ, β and running statistics, so no gradient term hides behind a 1 or a 0.
template <typename Scalar>
void randomise(BatchNorm<Scalar>& bn) {
  const Index c = bn.num_features();
  const auto gamma = random_values(c, 1, 0.5, 2.0), beta = random_values(c, 2);
  const auto mean = random_values(c, 3), var = random_values(c, 4, 0.5, 3.0);
  for (Index i = 0; i < c; ++i) {
    const auto k = static_cast<std::size_t>(i);
    bn.weight()(i) = static_cast<Scalar>(gamma[k]);
    bn.bias()(i) = static_cast<Scalar>(beta[k]);
    bn.running_mean()(i) = static_cast<Scalar>(mean[k]);
    bn.running_var()(i) = static_cast<Scalar>(var[k]);
  }
}

Index channels_of(const Shape& shape, const BatchNormOptions& options) {
  return options.channel_axis == ChannelAxis::Last ? shape.back() : shape[1];
}

/// The option sets every gradient check runs, by name.
struct Config {
  std::string name;
  BatchNormOptions options;
};

const std::vector<Config>& configs() {
  static std::vector<Config> all;
  if (!all.empty()) return all;
  auto add = [&](std::string name, auto change) {
    BatchNormOptions options;
    change(options);
    all.push_back({std::move(name), options});
  };
  add("pytorch_defaults", [](BatchNormOptions&) {});
  add("no_affine", [](BatchNormOptions& o) { o.affine = false; });
  add("no_running_stats", [](BatchNormOptions& o) { o.track_running_stats = false; });
  add("momentum_none", [](BatchNormOptions& o) { o.momentum = std::nullopt; });
  add("channels_last", [](BatchNormOptions& o) { o.channel_axis = ChannelAxis::Last; });
  add("keras", [](BatchNormOptions& o) { o = BatchNormOptions::keras(); });
  add("ghost_4", [](BatchNormOptions& o) { o.virtual_batch_size = 4; });
  add("ghost_4_channels_last", [](BatchNormOptions& o) {
    o.virtual_batch_size = 4;
    o.channel_axis = ChannelAxis::Last;
  });
  return all;
}

class BatchNormOptionGradient
    : public ::testing::TestWithParam<std::tuple<std::size_t, Shape, bool /*training*/, bool /*float*/>> {};

template <typename Scalar>
int check(const Config& config, const Shape& shape, bool training) {
  BatchNorm<Scalar> bn(channels_of(shape, config.options), config.options);
  randomise(bn);
  bn.set_training(training);
  // Inputs with a mean far from 0 exercise the shifted statistics.
  return check_layer_gradients(bn, shape, values<Scalar>(eigenet::element_count(shape), 7, 2.0, 5.0));
}

TEST_P(BatchNormOptionGradient, MatchesFiniteDifferences) {
  const auto& [index, shape, training, in_float] = GetParam();
  const Config& config = configs()[index];
  SCOPED_TRACE(config.name + (in_float ? " float" : " double") + (training ? " training" : " inference"));
  EXPECT_EQ(in_float ? check<float>(config, shape, training) : check<double>(config, shape, training), 0);
}

INSTANTIATE_TEST_SUITE_P(AllOptionsRanksModesScalars, BatchNormOptionGradient,
                         ::testing::Combine(::testing::Range<std::size_t>(0, configs().size()),
                                            ::testing::Values(Shape{7, 3}, Shape{5, 3, 4}, Shape{5, 2, 2, 3},
                                                              Shape{5, 2, 2, 1, 3}),
                                            ::testing::Bool(), ::testing::Bool()),
                         [](const auto& info) {
                           std::string rank = std::to_string(std::get<1>(info.param).size());
                           return configs()[std::get<0>(info.param)].name + "_rank" + rank +
                                  (std::get<2>(info.param) ? "_train" : "_eval") +
                                  (std::get<3>(info.param) ? "_float" : "_double");
                         });

// --- frozen ----------------------------------------------------------------------------

template <typename Scalar>
void check_frozen_gradients(bool freeze_affine) {
  BatchNorm<Scalar> bn(3);
  randomise(bn);
  bn.freeze(freeze_affine);
  bn.train();
  EXPECT_EQ(check_layer_gradients(bn, {4, 3, 2}, values<Scalar>(24, 9, -2.0, 3.0)), 0);
}

TEST(BatchNormFrozen, GradientsMatchFiniteDifferences) {
  // freeze(false): running statistics fixed, γ and β still trained, so the checker covers
  // input and parameters. With γ and β frozen too (freeze(true)) nothing is added to their
  // gradients by design; the next test checks that and the input gradient.
  check_frozen_gradients<double>(false);
  check_frozen_gradients<float>(false);
}

TEST(BatchNormFrozen, InputGradientEqualsInferenceModeAndParametersGetNothing) {
  BatchNorm<double> frozen(3), reference(3);
  randomise(frozen);
  randomise(reference);
  frozen.freeze();
  frozen.train();
  reference.eval();
  const Shape shape{4, 3};
  const auto x = values<double>(12, 5), dy = values<double>(12, 6);
  std::vector<double> y1(12), y2(12), dx1(12), dx2(12);
  frozen.forward_into({x.data(), shape}, {y1.data(), shape});
  reference.forward_into({x.data(), shape}, {y2.data(), shape});
  frozen.backward_into({x.data(), shape}, {dy.data(), shape}, {dx1.data(), shape});
  reference.backward_into({x.data(), shape}, {dy.data(), shape}, {dx2.data(), shape});
  EXPECT_EQ(y1, y2);
  EXPECT_EQ(dx1, dx2);
  for (Index c = 0; c < 3; ++c) {
    EXPECT_EQ(frozen.weight_grad()(c), 0.0);
    EXPECT_EQ(frozen.bias_grad()(c), 0.0);
    EXPECT_NE(reference.weight_grad()(c), 0.0);
  }
}

TEST(BatchNormFrozen, StaysFrozenThroughNestedSequentialsAndOptimisersSkipIt) {
  eigenet::Sequential<float> outer;
  auto& middle = outer.add<eigenet::Sequential<float>>();
  auto& inner = middle.add<eigenet::Sequential<float>>();
  auto& bn = inner.add<BatchNorm<float>>(2);
  auto& free_bn = outer.add<BatchNorm<float>>(2);
  eigenet::Adam<float> adam(outer.parameters(), {1e-2, 0.9, 0.999, 1e-8, 0.1});  // weight decay too
  bn.freeze();
  const Shape shape{4, 2};
  const std::vector<float> x{1, 2, 3, 5, -1, 0, 2, 2}, dy{1, -1, 0.5f, 2, -2, 1, 0, 1};
  std::vector<float> y(8);
  for (int step = 0; step < 3; ++step) {
    outer.eval();
    outer.train();  // a parent switching modes never unfreezes
    ASSERT_TRUE(bn.is_frozen());
    ASSERT_TRUE(bn.is_training());
    ASSERT_TRUE(free_bn.is_training());
    outer.forward_into({x.data(), shape}, {y.data(), shape});
    adam.zero_grad();
    outer.backward_into({x.data(), shape}, {dy.data(), shape}, {nullptr, shape});
    adam.step();
  }
  for (Index c = 0; c < 2; ++c) {
    EXPECT_EQ(bn.weight()(c), 1.0f);
    EXPECT_EQ(bn.bias()(c), 0.0f);
    EXPECT_EQ(bn.running_mean()(c), 0.0f);
    EXPECT_EQ(bn.running_var()(c), 1.0f);
    EXPECT_NE(free_bn.weight()(c), 1.0f);  // the other BatchNorm trains
  }
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  EXPECT_EQ(free_bn.num_batches_tracked(), 3);
  bn.unfreeze();
  EXPECT_FALSE(bn.is_frozen());
  EXPECT_TRUE(bn.uses_batch_statistics());
  outer.forward_into({x.data(), shape}, {y.data(), shape});
  EXPECT_EQ(bn.num_batches_tracked(), 1);
}

TEST(BatchNormFrozen, WithoutRunningStatisticsCannotBeFrozen) {
  BatchNormOptions options;
  options.track_running_stats = false;
  BatchNorm<float> bn(3, options);
  const std::string message = eigenet::testing::message_of<eigenet::StateError>([&] { bn.freeze(); });
  EXPECT_TRUE(eigenet::testing::contains(message, "track_running_stats")) << message;
  EXPECT_FALSE(bn.is_frozen());
}

TEST(BatchNormFrozen, CloneKeepsFrozenStateAndOwnsItsFlag) {
  BatchNorm<float> bn(2);
  bn.freeze();
  auto copy = bn.clone();
  auto& typed = dynamic_cast<BatchNorm<float>&>(*copy);
  EXPECT_TRUE(typed.is_frozen());
  bn.unfreeze();
  EXPECT_TRUE(typed.is_frozen());
  for (const auto& p : typed.parameters()) EXPECT_TRUE(p.is_frozen()) << p.name;
  for (const auto& p : bn.parameters()) EXPECT_FALSE(p.is_frozen()) << p.name;
}

// --- small and degenerate batches ------------------------------------------------------

TEST(BatchNormSmallBatch, OneValuePerChannelThrowsAndChangesNothing) {
  BatchNorm<float> bn(3);
  const std::vector<float> x{1, 2, 3};
  std::vector<float> y(3);
  const std::string message = eigenet::testing::message_of<eigenet::ValueError>([&] {
    bn.forward_into({x.data(), {1, 3}}, {y.data(), {1, 3}});
  });
  EXPECT_TRUE(eigenet::testing::contains(message, "more than 1 value per channel")) << message;
  EXPECT_TRUE(eigenet::testing::contains(message, "(1, 3)")) << message;
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  EXPECT_EQ(bn.running_mean()(0), 0.0f);
  // (1, C, H, W) has H·W values per channel: fine.
  const std::vector<float> image{1, 2, 3, 4, 5, 6};
  std::vector<float> out(6);
  BatchNorm<float> bn2(3);
  EXPECT_NO_THROW(bn2.forward_into({image.data(), {1, 3, 2}}, {out.data(), {1, 3, 2}}));
  // Inference with one sample uses the running statistics: fine.
  bn.eval();
  EXPECT_NO_THROW(bn.forward_into({x.data(), {1, 3}}, {y.data(), {1, 3}}));
}

TEST(BatchNormSmallBatch, UseRunningStatsNormalisesASingleSampleWithThem) {
  BatchNormOptions options;
  options.single_value_batch = SingleValueBatch::UseRunningStats;
  BatchNorm<double> bn(2, options), reference(2);
  randomise(bn);
  randomise(reference);
  reference.eval();
  const std::vector<double> x{0.5, -1.5}, dy{1.0, 2.0};
  std::vector<double> y(2), expected(2), dx(2), expected_dx(2);
  bn.forward_into({x.data(), {1, 2}}, {y.data(), {1, 2}});
  reference.forward_into({x.data(), {1, 2}}, {expected.data(), {1, 2}});
  EXPECT_EQ(y, expected);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  bn.backward_into({x.data(), {1, 2}}, {dy.data(), {1, 2}}, {dx.data(), {1, 2}});
  reference.backward_into({x.data(), {1, 2}}, {dy.data(), {1, 2}}, {expected_dx.data(), {1, 2}});
  EXPECT_EQ(dx, expected_dx);
}

TEST(BatchNormSmallBatch, TrailingGhostChunkOfOneSampleFollowsTheRule) {
  BatchNormOptions options;
  options.virtual_batch_size = 2;
  BatchNorm<double> bn(2, options);
  const auto x = values<double>(10, 3);  // (5, 2): chunks of 2, 2 and 1 samples
  std::vector<double> y(10);
  const std::string message = eigenet::testing::message_of<eigenet::ValueError>([&] {
    bn.forward_into({x.data(), {5, 2}}, {y.data(), {5, 2}});
  });
  EXPECT_TRUE(eigenet::testing::contains(message, "ghost batch of samples 4..4")) << message;
  EXPECT_EQ(bn.num_batches_tracked(), 0);  // nothing changed, not even by the first chunks

  options.single_value_batch = SingleValueBatch::UseRunningStats;
  options.momentum = 0.0;  // running statistics fixed, so finite differences see one function
  BatchNorm<double> tolerant(2, options);
  randomise(tolerant);
  tolerant.forward_into({x.data(), {5, 2}}, {y.data(), {5, 2}});
  EXPECT_EQ(tolerant.num_batches_tracked(), 2);
  EXPECT_EQ(check_layer_gradients(tolerant, {5, 2}, x), 0);
  BatchNorm<float> tolerant_float(2, options);
  randomise(tolerant_float);
  EXPECT_EQ(check_layer_gradients(tolerant_float, {5, 2}, values<float>(10, 3)), 0);
}

template <typename Scalar>
void check_zero_variance_channel(double eps) {
  // Channel 1 is constant: variance 0, inv_std = 1/sqrt(eps).
  BatchNormOptions options;
  options.eps = eps;
  BatchNorm<Scalar> bn(2, options);
  randomise(bn);
  const Scalar running_var_before = bn.running_var()(1);
  const Shape shape{4, 2};
  const std::vector<Scalar> x{1, 7, 2, 7, 3, 7, 4, 7}, dy{1, 2, -1, 3, 0.5, -4, 2, 1};
  std::vector<Scalar> y(8), dx(8);
  bn.forward_into({x.data(), shape}, {y.data(), shape});
  bn.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(std::isfinite(y[i]) && std::isfinite(dx[i])) << i;
  }
  for (int n = 0; n < 4; ++n) EXPECT_EQ(y[2 * n + 1], bn.bias()(1)) << "a constant channel normalises to β";
  EXPECT_TRUE(std::isfinite(bn.weight_grad()(1)) && std::isfinite(bn.bias_grad()(1)));
  EXPECT_EQ(bn.running_var()(1), static_cast<Scalar>(0.9 * static_cast<double>(running_var_before)));  // + 0.1 · 0
  EXPECT_EQ(check_layer_gradients(bn, shape, x), 0);
}

TEST(BatchNormSmallBatch, ZeroVarianceChannelsGiveFiniteOutputsAndGradients) {
  check_zero_variance_channel<double>(1e-5);
  // In float the finite-difference step (3e-3) gives the constant channel a variance of
  // ~2e-6, not small against eps = 1e-5: the check would measure the curvature, not the
  // gradient. With Keras' eps (1e-3) the perturbation is 0.2% of eps.
  check_zero_variance_channel<float>(1e-3);
}

TEST(BatchNormLargeMean, FloatAgreesWithDoubleForMeanTenThousandAndUnitNoise) {
  // N = 4096, x = 1e4 + N(0, 1)-like noise: float output and running variance within 1e-3
  // relative of the double computation on the same float inputs.
  const Index n = 4096, c = 3;
  const auto noise = random_values(n * c, 21, -1.7, 1.7);  // variance ≈ 1
  std::vector<float> xf(noise.size());
  for (std::size_t i = 0; i < noise.size(); ++i) xf[i] = static_cast<float>(1e4 + noise[i]);
  const std::vector<double> xd(xf.begin(), xf.end());
  BatchNorm<float> bf(c);
  BatchNorm<double> bd(c);
  std::vector<float> yf(xf.size());
  std::vector<double> yd(xd.size());
  for (int step = 0; step < 3; ++step) {
    bf.forward_into({xf.data(), {n, c}}, {yf.data(), {n, c}});
    bd.forward_into({xd.data(), {n, c}}, {yd.data(), {n, c}});
  }
  double worst = 0.0;
  for (std::size_t i = 0; i < yf.size(); ++i)
    worst = std::max(worst, std::abs(yf[i] - yd[i]) / std::max(1.0, std::abs(yd[i])));
  EXPECT_LT(worst, 1e-3);
  for (Index k = 0; k < c; ++k) {
    EXPECT_NEAR(bf.running_var()(k), bd.running_var()(k), 1e-3 * bd.running_var()(k)) << k;
    EXPECT_NEAR(bf.running_mean()(k), bd.running_mean()(k), 1e-3 * std::abs(bd.running_mean()(k))) << k;
  }
  // And in inference with those statistics.
  bf.eval();
  bd.eval();
  bf.forward_into({xf.data(), {n, c}}, {yf.data(), {n, c}});
  bd.forward_into({xd.data(), {n, c}}, {yd.data(), {n, c}});
  worst = 0.0;
  for (std::size_t i = 0; i < yf.size(); ++i)
    worst = std::max(worst, std::abs(yf[i] - yd[i]) / std::max(1.0, std::abs(yd[i])));
  EXPECT_LT(worst, 1e-3);
}

// --- ghost batches -----------------------------------------------------------------------

template <typename Scalar>
void check_ghost_equals_chunk_by_chunk(ChannelAxis axis) {
  // Ghost BN over (7, ...) with V = 3 equals a plain BatchNorm run on samples 0..2, 3..5, 6.
  BatchNormOptions ghost_options;
  ghost_options.virtual_batch_size = 3;
  ghost_options.channel_axis = axis;
  ghost_options.single_value_batch = SingleValueBatch::Throw;
  BatchNormOptions plain_options = ghost_options;
  plain_options.virtual_batch_size = 0;
  const Shape shape = axis == ChannelAxis::Last ? Shape{7, 2, 3} : Shape{7, 3, 2};
  BatchNorm<Scalar> ghost(3, ghost_options), plain(3, plain_options);
  randomise(ghost);
  randomise(plain);
  const Index per_sample = 6;
  const auto x = values<Scalar>(7 * per_sample, 11, 1.0, 4.0), dy = values<Scalar>(7 * per_sample, 12);
  std::vector<Scalar> y(x.size()), dx(x.size()), y_ref(x.size()), dx_ref(x.size());
  ghost.forward_into({x.data(), shape}, {y.data(), shape});
  ghost.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});
  for (Index begin = 0; begin < 7; begin += 3) {
    const Index count = std::min<Index>(3, 7 - begin);
    Shape chunk_shape = shape;
    chunk_shape[0] = count;
    const Index at = begin * per_sample;
    plain.forward_into({x.data() + at, chunk_shape}, {y_ref.data() + at, chunk_shape});
    plain.backward_into({x.data() + at, chunk_shape}, {dy.data() + at, chunk_shape}, {dx_ref.data() + at, chunk_shape});
  }
  EXPECT_EQ(y, y_ref);
  EXPECT_EQ(dx, dx_ref);
  for (Index c = 0; c < 3; ++c) {
    EXPECT_EQ(ghost.running_mean()(c), plain.running_mean()(c));
    EXPECT_EQ(ghost.running_var()(c), plain.running_var()(c));
    EXPECT_NEAR(ghost.weight_grad()(c), plain.weight_grad()(c), 1e-5);
    EXPECT_NEAR(ghost.bias_grad()(c), plain.bias_grad()(c), 1e-5);
  }
  EXPECT_EQ(ghost.num_batches_tracked(), 3);
}

TEST(BatchNormGhost, EqualsPlainBatchNormChunkByChunk) {
  check_ghost_equals_chunk_by_chunk<double>(ChannelAxis::First);
  check_ghost_equals_chunk_by_chunk<double>(ChannelAxis::Last);
  check_ghost_equals_chunk_by_chunk<float>(ChannelAxis::First);
  check_ghost_equals_chunk_by_chunk<float>(ChannelAxis::Last);
}

TEST(BatchNormGhost, InferenceIsIndependentOfTheBatchSize) {
  BatchNormOptions options;
  options.virtual_batch_size = 4;
  BatchNorm<float> bn(3, options);
  const auto train_x = values<float>(16 * 3, 30, 0.0, 3.0);
  std::vector<float> y(train_x.size());
  bn.forward_into({train_x.data(), {16, 3}}, {y.data(), {16, 3}});
  EXPECT_EQ(bn.num_batches_tracked(), 4);
  bn.eval();
  const auto x = values<float>(10 * 3, 31);
  std::vector<float> whole(x.size()), single(3);
  bn.forward_into({x.data(), {10, 3}}, {whole.data(), {10, 3}});
  for (Index n = 0; n < 10; ++n) {
    bn.forward_into({x.data() + 3 * n, {1, 3}}, {single.data(), {1, 3}});
    for (Index c = 0; c < 3; ++c) EXPECT_EQ(single[c], whole[3 * n + c]) << n << "," << c;
  }
}

TEST(BatchNormGhost, ChunkLargerThanTheBatchIsOneChunk) {
  BatchNormOptions options;
  options.virtual_batch_size = 100;
  BatchNorm<double> ghost(2, options), plain(2);
  const auto x = values<double>(8, 40);
  std::vector<double> a(8), b(8);
  ghost.forward_into({x.data(), {4, 2}}, {a.data(), {4, 2}});
  plain.forward_into({x.data(), {4, 2}}, {b.data(), {4, 2}});
  EXPECT_EQ(a, b);
  EXPECT_EQ(ghost.num_batches_tracked(), 1);
}

// --- options: presets, validation, shapes ----------------------------------------------

TEST(BatchNormOptions, KerasPresetMapsTheConventions) {
  const BatchNormOptions keras = BatchNormOptions::keras();
  EXPECT_NEAR(keras.momentum.value(), 0.01, 1e-15);  // Keras 0.99 weights the old value
  EXPECT_EQ(keras.eps, 1e-3);
  EXPECT_EQ(keras.channel_axis, ChannelAxis::Last);
  EXPECT_EQ(keras.running_variance, RunningVariance::Biased);
  const BatchNormOptions torch = BatchNormOptions::pytorch();
  EXPECT_EQ(torch.momentum.value(), 0.1);
  EXPECT_EQ(torch.eps, 1e-5);
  EXPECT_EQ(torch.channel_axis, ChannelAxis::First);
  EXPECT_EQ(torch.running_variance, RunningVariance::Unbiased);
}

TEST(BatchNormOptions, CumulativeMomentumAveragesAllBatchesEqually) {
  BatchNormOptions options;
  options.momentum = std::nullopt;
  BatchNorm<double> bn(1, options);
  const std::vector<std::vector<double>> batches{{1, 3}, {10, 14}, {-5, -1}};
  std::vector<double> y(2);
  for (const auto& b : batches) bn.forward_into({b.data(), {2, 1}}, {y.data(), {2, 1}});
  EXPECT_NEAR(bn.running_mean()(0), (2.0 + 12.0 - 3.0) / 3.0, 1e-12);
  EXPECT_NEAR(bn.running_var()(0), (2.0 + 8.0 + 8.0) / 3.0, 1e-12);  // unbiased variances 2, 8, 8
}

TEST(BatchNormOptions, ChannelsLastChecksTheLastAxis) {
  BatchNormOptions options;
  options.channel_axis = ChannelAxis::Last;
  BatchNorm<float> bn(3, options);
  EXPECT_EQ(bn.output_shape({2, 5, 3}), (Shape{2, 5, 3}));
  const std::string message = eigenet::testing::message_of<eigenet::ShapeError>([&] { bn.output_shape({2, 3, 5}); });
  EXPECT_TRUE(eigenet::testing::contains(message, "channels last")) << message;
  EXPECT_TRUE(eigenet::testing::contains(message, "dim 2")) << message;
  BatchNorm<float> first(3);
  EXPECT_THROW(first.output_shape({2, 5, 3}), eigenet::ShapeError);
}

TEST(BatchNormOptions, ChannelsLastEqualsChannelsFirstOnTransposedInput) {
  // (N, L, C) channels last vs (N, C, L) channels first on the transposed data.
  BatchNormOptions last_options;
  last_options.channel_axis = ChannelAxis::Last;
  BatchNorm<double> last(3, last_options), first(3);
  randomise(last);
  randomise(first);
  const Index n = 4, l = 5, c = 3;
  const auto x_last = values<double>(n * l * c, 50, -2.0, 6.0);
  std::vector<double> x_first(x_last.size()), y_last(x_last.size()), y_first(x_last.size());
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < l; ++j)
      for (Index k = 0; k < c; ++k) x_first[(i * c + k) * l + j] = x_last[(i * l + j) * c + k];
  last.forward_into({x_last.data(), {n, l, c}}, {y_last.data(), {n, l, c}});
  first.forward_into({x_first.data(), {n, c, l}}, {y_first.data(), {n, c, l}});
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < l; ++j)
      for (Index k = 0; k < c; ++k)
        EXPECT_NEAR(y_last[(i * l + j) * c + k], y_first[(i * c + k) * l + j], 1e-12) << i << j << k;
  for (Index k = 0; k < c; ++k) EXPECT_NEAR(last.running_var()(k), first.running_var()(k), 1e-12);
}

TEST(BatchNormOptions, InvalidOptionsThrowNamingTheOption) {
  BatchNormOptions ghost;
  ghost.virtual_batch_size = -1;
  EXPECT_TRUE(eigenet::testing::contains(
      eigenet::testing::message_of<eigenet::ValueError>([&] { BatchNorm<float>(3, ghost); }), "virtual_batch_size"));
  BatchNormOptions momentum;
  momentum.momentum = 1.5;
  EXPECT_TRUE(eigenet::testing::contains(
      eigenet::testing::message_of<eigenet::ValueError>([&] { BatchNorm<float>(3, momentum); }), "momentum"));
  BatchNormOptions no_affine;
  no_affine.affine = false;
  EXPECT_TRUE(BatchNorm<float>(3, no_affine).parameters().empty());
}

}  // namespace
