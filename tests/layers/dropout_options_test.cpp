// Behaviour of Dropout's options: masks shared along chosen axes (Keras noise_shape) and
// channel dropout (Dropout2d) follow the documented noise index bit for bit; bad axes and
// ranks are rejected with clear messages; a batch run in chunks (forward_chunk with sample
// offsets) gets the mask of the whole; 1 thread == 2 threads, and ~300,000 elements (several
// chunks, two threads) follow the documented mask exactly; the Monte-Carlo flag keeps a
// Dropout stochastic in inference and survives a parent's train()/eval(); and the
// statistics for p in {0.1, 0.5, 0.9}: drop rate (per mask element) within 4 sigma of p and
// E[y] = x within 4 sigma, with and without shared axes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"
#include "support/dropout_support.hpp"
#include "support/threads.hpp"

namespace {

using eigenet::Dropout;
using eigenet::Dropout2d;
using eigenet::DropoutOptions;
using eigenet::Index;
using eigenet::Sequential;
using eigenet::Shape;
using eigenet::Tensor;
using eigenet::testing::backward;
using eigenet::testing::contains;
using eigenet::testing::documented_keep;
using eigenet::testing::forward;
using eigenet::testing::kHaveOpenMP;
using eigenet::testing::kNoOpenMP;
using eigenet::testing::message_of;
using eigenet::testing::ramp;
using eigenet::testing::ThreadCount;
using eigenet::testing::threads_that_ran;

/// The reference definition: the row-major index of element `flat` in the noise tensor
/// (extent 1 on the shared axes), computed with a plain multi-index.
Index noise_index(Index flat, const Shape& shape, const std::vector<bool>& shared) {
  std::vector<Index> position(shape.size());
  for (std::size_t k = shape.size(); k-- > 0;) {
    position[k] = flat % shape[k];
    flat /= shape[k];
  }
  Index index = 0;
  for (std::size_t k = 0; k < shape.size(); ++k)
    index = index * (shared[k] ? 1 : shape[k]) + (shared[k] ? 0 : position[k]);
  return index;
}

struct Case {
  Shape shape;
  DropoutOptions options;
  std::vector<bool> shared;  // what the options mean for this shape
};

std::vector<Case> cases() {
  return {
      {{3, 4, 5}, DropoutOptions::shared({1}), {false, true, false}},
      {{3, 4, 5}, DropoutOptions::shared({-1}), {false, false, true}},
      {{3, 4, 5}, DropoutOptions::shared({0, 2}), {true, false, true}},
      {{6, 7}, DropoutOptions::shared({0}), {true, false}},
      {{2, 3, 4, 5}, DropoutOptions::channels(), {false, false, true, true}},
      {{2, 3, 4, 5}, DropoutOptions::shared({2}), {false, false, true, false}},
      {{3, 1, 4, 1, 2}, DropoutOptions::shared({1, 2}), {false, true, true, false, false}},
      {{2, 3, 6}, DropoutOptions::channels(), {false, false, true}},
      {{2, 2, 3, 2, 2}, DropoutOptions::channels(), {false, false, true, true, true}},
      {{4, 5}, DropoutOptions::shared({0, 1}), {true, true}},
  };
}

TEST(DropoutSharedAxes, MaskFollowsTheDocumentedNoiseIndexInForwardAndBackward) {
  const double p = 0.5, scale = 2.0;
  for (const Case& c : cases()) {
    SCOPED_TRACE(eigenet::to_string(c.shape));
    Dropout<double> dropout(p, 17, c.options);
    EXPECT_EQ(dropout.shared_flags(c.shape), c.shared);
    const Index count = eigenet::element_count(c.shape);
    const auto x = ramp<double>(count);
    dropout.forward_into({x.data(), c.shape}, {std::vector<double>(x.size()).data(), c.shape});  // step 0
    const auto y = forward(dropout, x, c.shape);                                                 // step 1
    const auto dy = ramp<double>(count);
    const auto dx = backward(dropout, x, dy, c.shape);
    Index noise_count = 1;
    for (std::size_t k = 0; k < c.shape.size(); ++k) noise_count *= c.shared[k] ? 1 : c.shape[k];
    std::vector<double> keep(static_cast<std::size_t>(noise_count));
    eigenet::kernels::dropout_keep_mask(keep.data(), noise_count, {p, 17, 1});
    Index dropped = 0;
    for (Index i = 0; i < count; ++i) {
      const bool kept = keep[static_cast<std::size_t>(noise_index(i, c.shape, c.shared))] == 1.0;
      const auto u = static_cast<std::size_t>(i);
      ASSERT_EQ(y[u], kept ? x[u] * scale : 0.0) << "element " << i;
      ASSERT_EQ(dx[u], kept ? dy[u] * scale : 0.0) << "element " << i;
      dropped += kept ? 0 : 1;
    }
    if (noise_count > 1) {  // with one mask value, all elements share one fate
      EXPECT_GT(dropped, 0);
      EXPECT_LT(dropped, count);
    }
  }
}

TEST(DropoutSharedAxes, NoiseShapeIsKerasNoiseShape) {
  EXPECT_EQ(Dropout<float>(0.5, 0, DropoutOptions::shared({1})).noise_shape({4, 3, 5}), (Shape{4, 1, 5}));
  EXPECT_EQ(Dropout<float>(0.5, 0, DropoutOptions::shared({-1, 0})).noise_shape({4, 3, 5}), (Shape{1, 3, 1}));
  EXPECT_EQ(Dropout2d<float>(0.5).noise_shape({2, 3, 4, 5}), (Shape{2, 3, 1, 1}));
  EXPECT_EQ(Dropout2d<float>(0.5).noise_shape({2, 3, 4}), (Shape{2, 3, 1}));
  EXPECT_EQ(Dropout<float>(0.5).noise_shape({2, 3}), (Shape{2, 3}));
}

TEST(DropoutSharedAxes, RejectsAxesOutsideTheRankAndRepeatedAxes) {
  const std::vector<float> x(60, 1.0f), y(60);
  Dropout<float> out_of_range(0.5, 0, DropoutOptions::shared({3}));
  std::string message = message_of<eigenet::ShapeError>([&] { out_of_range.output_shape({3, 4, 5}); });
  EXPECT_TRUE(contains(message, "Dropout(p=0.5, shared_axes=[3])"));
  EXPECT_TRUE(contains(message, "shared_axes entry 3"));
  EXPECT_TRUE(contains(message, "[-3, 3)"));
  EXPECT_TRUE(contains(message, "(3, 4, 5)"));
  EXPECT_THROW(out_of_range.forward_into({x.data(), {3, 4, 5}}, {std::vector<float>(60).data(), {3, 4, 5}}),
               eigenet::ShapeError);
  EXPECT_EQ(out_of_range.step(), 0u) << "a rejected forward must not consume a step";
  EXPECT_NO_THROW(out_of_range.output_shape({3, 4, 5, 1}));

  Dropout<float> negative(0.5, 0, DropoutOptions::shared({-4}));
  message = message_of<eigenet::ShapeError>([&] { negative.output_shape({3, 4, 5}); });
  EXPECT_TRUE(contains(message, "shared_axes entry -4"));

  Dropout<float> twice(0.5, 0, DropoutOptions::shared({1, -2}));
  message = message_of<eigenet::ShapeError>([&] { twice.output_shape({3, 4, 5}); });
  EXPECT_TRUE(contains(message, "names axis 1 twice"));
  EXPECT_TRUE(contains(message, "(3, 4, 5)"));
}

TEST(Dropout2d, NeedsRankThreeOrMore) {
  Dropout2d<float> dropout(0.25, 3);
  const std::string message = message_of<eigenet::ShapeError>([&] { dropout.output_shape({4, 3}); });
  EXPECT_TRUE(contains(message, "Dropout2d(p=0.25)"));
  EXPECT_TRUE(contains(message, "rank >= 3"));
  EXPECT_TRUE(contains(message, "(4, 3)"));
  const Tensor<float, 2> x = Tensor<float, 2>(4, 3).setConstant(1.0f);
  EXPECT_THROW(dropout.forward(x), eigenet::ShapeError);
  EXPECT_NO_THROW(dropout.output_shape({4, 3, 1}));
}

TEST(Dropout2d, WholeChannelsDropTogetherAndNameAndCloneKeepTheKind) {
  Dropout2d<float> dropout(0.5, 8);
  EXPECT_EQ(dropout.name(), "Dropout2d(p=0.5)");
  EXPECT_EQ(Dropout<float>(0.5, 0, DropoutOptions::shared({1, -1})).name(), "Dropout(p=0.5, shared_axes=[1, -1])");
  EXPECT_EQ(Dropout<float>(0.3).name(), "Dropout(p=0.3)");
  const Shape shape{8, 16, 3, 3};
  const auto x = ramp<float>(eigenet::element_count(shape));
  const auto y = forward(dropout, x, shape);
  Index dropped_channels = 0;
  for (Index channel = 0; channel < 8 * 16; ++channel) {
    const bool kept = y[static_cast<std::size_t>(channel * 9)] != 0.0f;
    dropped_channels += kept ? 0 : 1;
    for (Index j = 0; j < 9; ++j) {
      const auto u = static_cast<std::size_t>(channel * 9 + j);
      ASSERT_EQ(y[u], kept ? x[u] * 2.0f : 0.0f) << "channel " << channel << ", value " << j;
    }
  }
  EXPECT_GT(dropped_channels, 0);
  EXPECT_LT(dropped_channels, 8 * 16);

  dropout.set_monte_carlo(true);
  const auto copy = dropout.clone();
  auto* typed = dynamic_cast<Dropout2d<float>*>(copy.get());
  ASSERT_NE(typed, nullptr) << "clone() of a Dropout2d must be a Dropout2d";
  EXPECT_TRUE(typed->is_monte_carlo());
  EXPECT_TRUE(typed->options().channelwise);
  EXPECT_EQ(typed->step(), dropout.step());
  EXPECT_EQ(forward(*typed, x, shape), forward(dropout, x, shape));
}

// ---------------------------------------------------------------- chunks and threads

/// Runs samples [0, N) of x as the chunks that `splits` separates, each with its offset.
template <typename Scalar>
void check_chunks_equal_whole(Dropout<Scalar>& dropout, const Shape& shape, const std::vector<Index>& splits) {
  const Index n = shape[0];
  const Index per_sample = eigenet::element_count(shape) / n;
  const auto x = ramp<Scalar>(n * per_sample);
  const auto dy = ramp<Scalar>(n * per_sample);
  dropout.set_step(5);
  const auto whole_y = forward(dropout, x, shape);
  const auto whole_dx = backward(dropout, x, dy, shape);
  EXPECT_EQ(dropout.step(), 6u);
  std::vector<Index> bounds{0};
  bounds.insert(bounds.end(), splits.begin(), splits.end());
  bounds.push_back(n);
  std::vector<Scalar> y, dx;
  for (std::size_t b = 0; b + 1 < bounds.size(); ++b) {
    Shape chunk = shape;
    chunk[0] = bounds[b + 1] - bounds[b];
    const auto begin = static_cast<std::size_t>(bounds[b] * per_sample);
    const auto end = static_cast<std::size_t>(bounds[b + 1] * per_sample);
    const std::vector<Scalar> cx(x.begin() + static_cast<std::ptrdiff_t>(begin),
                                 x.begin() + static_cast<std::ptrdiff_t>(end));
    const std::vector<Scalar> cdy(dy.begin() + static_cast<std::ptrdiff_t>(begin),
                                  dy.begin() + static_cast<std::ptrdiff_t>(end));
    std::vector<Scalar> cy(cx.size());
    dropout.forward_chunk_into({cx.data(), chunk}, {cy.data(), chunk}, 5, bounds[b]);
    const auto cdx = backward(dropout, cx, cdy, chunk);
    y.insert(y.end(), cy.begin(), cy.end());
    dx.insert(dx.end(), cdx.begin(), cdx.end());
  }
  EXPECT_EQ(dropout.step(), 6u) << "forward_chunk must not advance the step";
  EXPECT_EQ(y, whole_y);
  EXPECT_EQ(dx, whole_dx);
}

TEST(DropoutChunks, ConcatenatedChunksEqualTheWholeBatch) {
  const std::vector<std::vector<Index>> splits{{1}, {3}, {1, 2, 6}, {4, 5}, {2, 4, 6}};
  for (const auto& split : splits) {
    Dropout<float> plain(0.5, 31);
    check_chunks_equal_whole(plain, {7, 5, 6}, split);
    Dropout<float> axis1(0.5, 31, DropoutOptions::shared({1}));
    check_chunks_equal_whole(axis1, {7, 5, 6}, split);
    Dropout<float> batch_shared(0.5, 31, DropoutOptions::shared({0}));
    check_chunks_equal_whole(batch_shared, {7, 5, 6}, split);
    Dropout2d<double> channels(0.4, 31);
    check_chunks_equal_whole(channels, {7, 5, 2, 3}, split);
    eigenet::AlphaDropout<double> alpha(0.3, 31);
    check_chunks_equal_whole(alpha, {7, 10}, split);
    eigenet::FeatureAlphaDropout<float> feature_alpha(0.3, 31);
    check_chunks_equal_whole(feature_alpha, {7, 4, 3}, split);
  }
}

TEST(DropoutChunks, TypedChunkForwardAndBadOffsets) {
  Dropout<float> dropout(0.5, 2);
  Tensor<float, 2> whole(6, 50);
  for (Index i = 0; i < whole.size(); ++i) whole.data()[i] = 1.0f + static_cast<float>(i);
  const Tensor<float, 2> y = dropout.forward(whole);  // step 0
  Tensor<float, 2> tail(2, 50);
  std::copy(whole.data() + 4 * 50, whole.data() + 6 * 50, tail.data());
  const Tensor<float, 2> tail_y = dropout.forward_chunk(tail, 0, 4);
  for (Index i = 0; i < tail.size(); ++i) ASSERT_EQ(tail_y.data()[i], y.data()[4 * 50 + i]) << i;
  const std::string message = message_of<eigenet::ValueError>([&] { dropout.forward_chunk(tail, 0, -1); });
  EXPECT_TRUE(contains(message, "Dropout(p=0.5)"));
  EXPECT_TRUE(contains(message, "sample_offset"));
  EXPECT_TRUE(contains(message, "-1"));
}

/// How kernels::apply_masked splits a broadcast mask over `shape`: `rows` rows of the
/// innermost collapsed axis, `grain` rows per chunk of its parallel loop.
struct MaskSplit {
  Index rows = 0, grain = 0;
};

MaskSplit mask_split(const Shape& shape, const std::vector<bool>& shared) {
  const auto layout = eigenet::kernels::noise_layout(shape, shared);
  const Index row_length = layout.extents.back();
  return {layout.count / row_length, eigenet::kernels::rows_per_chunk(row_length, Index{1} << 16)};
}

TEST(DropoutSharedAxes, MaskIsIdenticalWithOneAndTwoThreads) {
  if (!kHaveOpenMP) GTEST_SKIP() << kNoOpenMP;
  struct Config {
    Shape shape;
    DropoutOptions options;
  };
  const std::vector<Config> configs{{{64, 32, 16, 16}, DropoutOptions::channels()},
                                    {{512, 8, 130}, DropoutOptions::shared({1})},
                                    {{300, 1100}, DropoutOptions::shared({0})}};
  for (const Config& config : configs) {
    SCOPED_TRACE(eigenet::to_string(config.shape));
    const auto x = ramp<float>(eigenet::element_count(config.shape));
    const MaskSplit split = mask_split(config.shape, Dropout<float>(0.4, 5, config.options).shared_flags(config.shape));
    ASSERT_GE(eigenet::kernels::chunk_count(split.rows, split.grain), 6) << "several chunks of the parallel loop";
    ASSERT_EQ(threads_that_ran(2, split.rows, split.grain), 2) << "the two-thread run must really run two threads";
    std::vector<std::vector<float>> ys, dxs;
    for (int threads : {1, 2}) {
      const ThreadCount scope(threads);
      Dropout<float> dropout(0.4, 5, config.options);
      ys.push_back(forward(dropout, x, config.shape));
      dxs.push_back(backward(dropout, x, x, config.shape));
    }
    EXPECT_EQ(std::memcmp(ys[0].data(), ys[1].data(), x.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(dxs[0].data(), dxs[1].data(), x.size() * sizeof(float)), 0);
    EXPECT_EQ(ys[0], dxs[0]);  // x as dy: dx equals y bit for bit
  }
}

// The cases above are a few hundred elements, one chunk of the parallel loop. Here about
// 300,000 elements are five chunks on two threads, compared element by element with
// the documented mask at the documented noise index: once along rows that each draw their
// own mask values (shared axis 1), once with one value per row (channels), so a chunk that
// started from another chunk's mask index cannot pass.
TEST(DropoutSharedAxes, MaskIsTheDocumentedFunctionAcrossChunksAndThreads) {
  const double p = 0.4;
  const std::uint64_t seed = 23, step = 2;
  const auto scale = static_cast<float>(1.0 / (1.0 - p));
  const std::vector<Case> large{{{150, 2, 1001}, DropoutOptions::shared({1}), {false, true, false}},
                                {{100, 30, 10, 10}, DropoutOptions::channels(), {false, false, true, true}}};
  for (const Case& c : large) {
    SCOPED_TRACE(eigenet::to_string(c.shape));
    const Index count = eigenet::element_count(c.shape);
    Dropout<float> dropout(p, seed, c.options);
    ASSERT_EQ(dropout.shared_flags(c.shape), c.shared);
    const MaskSplit split = mask_split(c.shape, c.shared);
    ASSERT_GE(eigenet::kernels::chunk_count(split.rows, split.grain), 5) << "several chunks of the parallel loop";
    if (kHaveOpenMP) {
      ASSERT_EQ(threads_that_ran(2, split.rows, split.grain), 2);
    }
    const ThreadCount two(2);
    dropout.set_step(step);
    const auto x = ramp<float>(count);
    std::vector<float> dy(x.size());
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = -1.0f - static_cast<float>(i % 7);
    const auto y = forward(dropout, x, c.shape);
    const auto dx = backward(dropout, x, dy, c.shape);
    const Index row_length = count / split.rows;  // of the innermost collapsed axis
    Index kept_count = 0;
    for (Index i = 0; i < count; ++i) {
      const Index noise = noise_index(i, c.shape, c.shared);
      const bool keep = documented_keep(p, seed, step, static_cast<std::uint64_t>(noise));
      const auto u = static_cast<std::size_t>(i);
      ASSERT_EQ(y[u], keep ? x[u] * scale : 0.0f)
          << "forward, element " << i << ", noise index " << noise << " (chunk " << i / row_length / split.grain << ")";
      ASSERT_EQ(dx[u], keep ? dy[u] * scale : 0.0f) << "backward, element " << i << ", noise index " << noise
                                                    << " (chunk " << i / row_length / split.grain << ")";
      kept_count += keep ? 1 : 0;
    }
    EXPECT_GT(kept_count, 0);
    EXPECT_LT(kept_count, count);
  }
}

// ---------------------------------------------------------------- Monte-Carlo flag

TEST(DropoutMonteCarlo, StaysStochasticInInferenceAndSurvivesParentModes) {
  const Shape shape{20, 30};
  const auto x = ramp<float>(600);
  Dropout<float> reference(0.5, 13);
  const auto training_y = forward(reference, x, shape);  // the mask of step 0

  Sequential<float> outer;
  auto& inner = outer.add<Sequential<float>>();
  auto& dropout = inner.add<Dropout<float>>(0.5, 13);
  EXPECT_FALSE(dropout.is_monte_carlo());
  dropout.set_monte_carlo(true);
  outer.eval();
  EXPECT_FALSE(dropout.is_training()) << "eval() must reach a Dropout inside a nested Sequential";
  EXPECT_TRUE(dropout.is_monte_carlo()) << "a parent's eval() must not undo the Monte-Carlo flag";
  EXPECT_TRUE(dropout.is_stochastic());
  const auto y = forward(dropout, x, shape);
  EXPECT_EQ(y, training_y) << "Monte-Carlo inference draws the mask training would draw at the same step";
  EXPECT_EQ(dropout.step(), 1u);
  const auto dx = backward(dropout, x, x, shape);
  EXPECT_EQ(dx, y) << "backward uses the Monte-Carlo forward's mask";
  EXPECT_NE(forward(dropout, x, shape), y) << "each Monte-Carlo pass draws a new mask";

  outer.train();
  outer.eval();
  EXPECT_TRUE(dropout.is_monte_carlo());
  dropout.set_monte_carlo(false);
  EXPECT_FALSE(dropout.is_stochastic());
  EXPECT_EQ(forward(dropout, x, shape), x) << "without the flag, inference is the identity";
  EXPECT_EQ(dropout.step(), 2u);
  outer.train();
  EXPECT_TRUE(dropout.is_training());
  EXPECT_FALSE(dropout.is_monte_carlo());
}

// ---------------------------------------------------------------- statistics

class DropoutStatistics : public ::testing::TestWithParam<double> {};

TEST_P(DropoutStatistics, ChannelDropRateIsWithinFourSigmaOfP) {
  const double p = GetParam();
  const Shape shape{1024, 256, 2, 2};  // 262144 mask elements (channels)
  const Index channels = 1024 * 256;
  Dropout2d<float> dropout(p, 99);
  const std::vector<float> x(static_cast<std::size_t>(channels * 4), 1.0f);
  const auto y = forward(dropout, x, shape);
  Index dropped = 0;
  for (Index c = 0; c < channels; ++c) {
    const float first = y[static_cast<std::size_t>(4 * c)];
    for (Index j = 1; j < 4; ++j) ASSERT_EQ(y[static_cast<std::size_t>(4 * c + j)], first) << "channel " << c;
    dropped += first == 0.0f ? 1 : 0;
  }
  const double n = static_cast<double>(channels);
  const double rate = static_cast<double>(dropped) / n;
  const double sigma = std::sqrt(p * (1.0 - p) / n);
  EXPECT_LE(std::abs(rate - p), 4 * sigma) << "channel drop rate " << rate << ", p = " << p;
}

/// S = Σ_t Σ_i (y_ti − x_i) over T steps. Mask values are independent Bernoulli(1 − p)
/// across noise elements and steps, and elements sharing one are fully correlated, so
///   Var(S) = T · p/(1 − p) · Σ_g (Σ_{i in g} x_i)²      (g: the groups sharing a value);
/// E[y] = x means |S| <= 4 sqrt(Var(S)) but for a 6e-5 chance.
void check_expectation(double p, const DropoutOptions& options, const Shape& shape) {
  Dropout<double> dropout(p, 7, options);
  const Index count = eigenet::element_count(shape);
  const auto x = ramp<double>(count);
  const std::vector<bool> shared = dropout.shared_flags(shape);
  Index noise_count = 1;
  for (std::size_t k = 0; k < shape.size(); ++k) noise_count *= shared[k] ? 1 : shape[k];
  std::vector<double> group_sum(static_cast<std::size_t>(noise_count), 0.0);
  for (Index i = 0; i < count; ++i)
    group_sum[static_cast<std::size_t>(noise_index(i, shape, shared))] += x[static_cast<std::size_t>(i)];
  double sum_group_squares = 0.0;
  for (double g : group_sum) sum_group_squares += g * g;
  const int steps = 200;
  double total = 0.0;
  std::vector<double> y(x.size());
  for (int t = 0; t < steps; ++t) {
    dropout.forward_into({x.data(), shape}, {y.data(), shape});
    for (std::size_t i = 0; i < x.size(); ++i) total += y[i] - x[i];
  }
  const double sigma = std::sqrt(steps * p / (1.0 - p) * sum_group_squares);
  EXPECT_LE(std::abs(total), 4 * sigma) << "p = " << p << ", shape " << eigenet::to_string(shape) << ": S = " << total
                                        << ", sigma = " << sigma;
  // The statistic can fail: a layer that forgot the 1/(1 − p) scale gives S ≈ −p T Σx.
  EXPECT_GT(std::abs(total + p * steps * std::accumulate(x.begin(), x.end(), 0.0)), 4 * sigma);
}

TEST_P(DropoutStatistics, ExpectedOutputEqualsInput) {
  const double p = GetParam();
  check_expectation(p, {}, {64, 64});
  check_expectation(p, DropoutOptions::shared({1}), {256, 8, 16});
  check_expectation(p, DropoutOptions::channels(), {64, 32, 2, 2});
}

INSTANTIATE_TEST_SUITE_P(Probabilities, DropoutStatistics, ::testing::Values(0.1, 0.5, 0.9));

}  // namespace
