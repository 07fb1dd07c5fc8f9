// Folding a Dense followed by an inference-mode BatchNorm into one Dense
// (eigenet/model/fold.hpp): the formula on a hand-computed case; the folded output against
// the pair's inference output after real training steps, for every BatchNorm option that
// bears on inference; PyTorch's fuse_linear_bn_eval (tests/golden/fold_*.txt, written by
// tests/golden/generate_fold.py in float64); a whole model with nested Sequentials and an
// unfoldable pair; the original model untouched bitwise and still training; finite-
// difference gradients of the folded layers in float and double; and the error cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"
#include "support/golden.hpp"
#include "support/gradcheck.hpp"

namespace {

using eigenet::BatchNorm;
using eigenet::BatchNormOptions;
using eigenet::Dense;
using eigenet::Dropout;
using eigenet::FoldOptions;
using eigenet::Index;
using eigenet::ReLU;
using eigenet::Sequential;
using eigenet::Shape;
using eigenet::Tensor;
using eigenet::UnfoldablePair;
using eigenet::testing::check_layer_gradients;
using eigenet::testing::contains;
using eigenet::testing::expect_close;
using eigenet::testing::GoldenFile;
using eigenet::testing::message_of;
using eigenet::testing::random_values;
using eigenet::testing::Tolerance;

template <typename Scalar>
Tensor<Scalar, 2> random_tensor(Index rows, Index cols, std::uint32_t seed, double low = -1.0, double high = 1.0) {
  const auto values = random_values(rows * cols, seed, low, high);
  Tensor<Scalar, 2> t(rows, cols);
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

template <typename Scalar>
std::vector<Scalar> values_of(const Tensor<Scalar, 2>& t) {
  return std::vector<Scalar>(t.data(), t.data() + t.size());
}

/// Non-trivial γ and β, so no term of the fold hides behind a 1 or a 0.
template <typename Scalar>
void randomise_affine(BatchNorm<Scalar>& bn, std::uint32_t seed) {
  const Index c = bn.num_features();
  const auto gamma = random_values(c, seed, 0.5, 2.0), beta = random_values(c, seed + 1, -1.0, 1.0);
  for (Index i = 0; i < c; ++i) {
    bn.weight()(i) = static_cast<Scalar>(gamma[static_cast<std::size_t>(i)] * (i % 2 == 0 ? 1.0 : -1.0));
    bn.bias()(i) = static_cast<Scalar>(beta[static_cast<std::size_t>(i)]);
  }
}

/// `steps` SGD steps on L = Σ w ⊙ model(x), x with a mean far from 0 (so the running
/// mean is far from 0 too), a fresh batch and upstream gradient each step.
template <typename Scalar>
void train(Sequential<Scalar>& model, Index in_features, int steps, std::uint32_t seed) {
  model.train();
  eigenet::SGD<Scalar> sgd(model.parameters(), {0.05, 0.0, 0.0, 0.0, false});
  for (int k = 0; k < steps; ++k) {
    const auto x = random_tensor<Scalar>(32, in_features, seed + 10 * static_cast<std::uint32_t>(k), 1.0, 4.0);
    const auto y = model.forward(x);
    const auto dy =
        random_tensor<Scalar>(y.dimension(0), y.dimension(1), seed + 10 * static_cast<std::uint32_t>(k) + 1);
    sgd.zero_grad();
    model.backward_parameters(x, dy);
    sgd.step();
  }
}

/// Everything a layer holds that folding could touch, as bytes: parameter values and
/// gradients, running statistics, batch counts and modes, layer by layer (nested too).
template <typename Scalar>
std::vector<unsigned char> state_of(Sequential<Scalar>& model) {
  std::vector<unsigned char> bytes;
  auto append = [&](const void* data, std::size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    bytes.insert(bytes.end(), p, p + size);
  };
  for (const auto& p : model.parameters()) {
    append(p.value, sizeof(Scalar) * static_cast<std::size_t>(p.size));
    append(p.grad, sizeof(Scalar) * static_cast<std::size_t>(p.size));
  }
  for (std::size_t i = 0; i < model.size(); ++i) {
    const bool training = model[i].is_training();
    append(&training, sizeof training);
    if (auto* bn = dynamic_cast<BatchNorm<Scalar>*>(&model[i])) {
      append(bn->running_mean().data(), sizeof(Scalar) * static_cast<std::size_t>(bn->num_features()));
      append(bn->running_var().data(), sizeof(Scalar) * static_cast<std::size_t>(bn->num_features()));
      const long long tracked = bn->num_batches_tracked();
      append(&tracked, sizeof tracked);
    }
    if (auto* inner = dynamic_cast<Sequential<Scalar>*>(&model[i])) {
      const auto nested = state_of(*inner);
      bytes.insert(bytes.end(), nested.begin(), nested.end());
    }
  }
  return bytes;
}

/// max |folded − pair| / |pair| over the elements, and the largest error relative to the
/// output's magnitude (max |pair|).
struct Errors {
  double elementwise = 0.0;
  double of_scale = 0.0;
};

template <typename Scalar>
Errors errors_of(const Tensor<Scalar, 2>& folded, const Tensor<Scalar, 2>& pair) {
  double scale = 0.0;
  for (Index i = 0; i < pair.size(); ++i) scale = std::max(scale, std::abs(static_cast<double>(pair.data()[i])));
  Errors errors;
  for (Index i = 0; i < pair.size(); ++i) {
    const double want = static_cast<double>(pair.data()[i]);
    const double error = std::abs(static_cast<double>(folded.data()[i]) - want);
    errors.elementwise = std::max(errors.elementwise, error / std::abs(want));
    errors.of_scale = std::max(errors.of_scale, error / scale);
  }
  return errors;
}

/// The standard norm-wise relative error ||folded − pair||₂ / ||pair||₂, over the whole
/// output and the largest over its rows (one row per sample), accumulated in long double.
struct NormwiseErrors {
  double whole = 0.0;
  double worst_row = 0.0;
};

template <typename Scalar>
NormwiseErrors normwise_errors(const Tensor<Scalar, 2>& folded, const Tensor<Scalar, 2>& pair) {
  const Index rows = pair.dimension(0), cols = pair.dimension(1);
  long double error_sq = 0.0L, pair_sq = 0.0L;
  NormwiseErrors errors;
  for (Index r = 0; r < rows; ++r) {
    long double row_error_sq = 0.0L, row_pair_sq = 0.0L;
    for (Index c = 0; c < cols; ++c) {
      const long double want = pair(r, c);
      const long double difference = static_cast<long double>(folded(r, c)) - want;
      row_error_sq += difference * difference;
      row_pair_sq += want * want;
    }
    error_sq += row_error_sq;
    pair_sq += row_pair_sq;
    errors.worst_row = std::max(errors.worst_row, static_cast<double>(std::sqrt(row_error_sq / row_pair_sq)));
  }
  errors.whole = static_cast<double>(std::sqrt(error_sq / pair_sq));
  return errors;
}

// ---------------------------------------------------------------------------------------
// The formula.

template <typename Scalar>
void check_hand_computed() {
  Dense<Scalar> dense(3, 2);
  dense.weight().setValues({{1, 2, -3}, {4, 5, 6}});
  dense.bias().setValues({3, 1});
  BatchNormOptions options;
  options.eps = 0.25;
  BatchNorm<Scalar> bn(2, options);
  bn.weight().setValues({2, -1});
  bn.bias().setValues({Scalar(0.5), 1});
  bn.running_mean().setValues({1, -2});
  bn.running_var().setValues({Scalar(3.75), Scalar(0.75)});  // + eps: 4 and 1, so s = (2/2, −1/1) = (1, −1)
  const Dense<Scalar> folded = eigenet::fold_dense_batchnorm(dense, bn);
  // W' = diag(s)·W,  b' = (b − running_mean)·s + β = ((3 − 1)·1 + 0.5, (1 + 2)·(−1) + 1)
  const std::vector<Scalar> expected_weight{1, 2, -3, -4, -5, -6}, expected_bias{Scalar(2.5), -2};
  EXPECT_EQ(std::vector<Scalar>(folded.weight().data(), folded.weight().data() + 6), expected_weight);
  EXPECT_EQ(std::vector<Scalar>(folded.bias().data(), folded.bias().data() + 2), expected_bias);
  EXPECT_EQ(folded.name(), "Dense(3 -> 2)");
  EXPECT_FALSE(folded.is_training()) << "the folded Dense is in inference mode";
  for (Index i = 0; i < 6; ++i) EXPECT_EQ(folded.weight_grad().data()[i], Scalar(0));
  for (Index i = 0; i < 2; ++i) EXPECT_EQ(folded.bias_grad()(i), Scalar(0));

  // Without affine parameters γ = 1 and β = 0, whatever weight() and bias() hold.
  options.affine = false;
  BatchNorm<Scalar> plain(2, options);
  plain.weight().setValues({7, 7});
  plain.bias().setValues({7, 7});
  plain.running_mean().setValues({1, -2});
  plain.running_var().setValues({Scalar(3.75), Scalar(0.75)});
  const Dense<Scalar> folded_plain = eigenet::fold_dense_batchnorm(dense, plain);
  // s = (1/2, 1),  b' = ((3 − 1)/2, 1 + 2)
  const std::vector<Scalar> plain_weight{Scalar(0.5), 1, Scalar(-1.5), 4, 5, 6}, plain_bias{1, 3};
  EXPECT_EQ(std::vector<Scalar>(folded_plain.weight().data(), folded_plain.weight().data() + 6), plain_weight);
  EXPECT_EQ(std::vector<Scalar>(folded_plain.bias().data(), folded_plain.bias().data() + 2), plain_bias);
}

TEST(FoldDenseBatchNorm, GivesTheFormulaOnAHandComputedCaseInDouble) { check_hand_computed<double>(); }
TEST(FoldDenseBatchNorm, GivesTheFormulaOnAHandComputedCaseInFloat) { check_hand_computed<float>(); }

// ---------------------------------------------------------------------------------------
// Folded output against the pair's inference output, after training, for each BatchNorm
// option that could change what inference computes.

struct Variant {
  std::string name;
  BatchNormOptions options;
  bool freeze = false;
};

std::vector<Variant> variants() {
  std::vector<Variant> all;
  all.push_back({"pytorch_defaults", BatchNormOptions::pytorch()});
  all.push_back({"keras_channels_last_biased_var_eps1e-3", BatchNormOptions::keras(0.9)});
  BatchNormOptions no_affine;
  no_affine.affine = false;
  all.push_back({"no_affine", no_affine});
  BatchNormOptions ghost_cumulative;
  ghost_cumulative.momentum = std::nullopt;
  ghost_cumulative.virtual_batch_size = 8;
  ghost_cumulative.eps = 1e-2;
  all.push_back({"ghost_batches_momentum_none_eps1e-2", ghost_cumulative});
  all.push_back({"frozen", BatchNormOptions::pytorch(), true});
  return all;
}

void PrintTo(const Variant& variant, std::ostream* out) { *out << variant.name; }

/// The pair's inference output computed exactly enough (long double) from its Scalar
/// parameters, and the magnitude of the terms each output element sums:
///   z = ((x·Wᵀ + b) − running_mean) · s + β,   terms = |s| (Σ_i |W x_i| + |b| + |running_mean|) + |β|.
/// An output that cancels to near 0 carries the rounding of its terms, in the pair as in the
/// folded Dense, so elementwise relative error is measured against the terms.
template <typename Scalar>
void exact_pair(const Dense<Scalar>& dense, const BatchNorm<Scalar>& bn, const Tensor<Scalar, 2>& x,
                std::vector<long double>& exact, std::vector<long double>& terms) {
  const Index n = x.dimension(0), in = dense.in_features(), out = dense.out_features();
  exact.assign(static_cast<std::size_t>(n * out), 0.0L);
  terms.assign(exact.size(), 0.0L);
  const bool affine = bn.options().affine;
  for (Index o = 0; o < out; ++o) {
    const long double gamma = affine ? static_cast<long double>(bn.weight()(o)) : 1.0L;
    const long double beta = affine ? static_cast<long double>(bn.bias()(o)) : 0.0L;
    const long double mean = bn.running_mean()(o);
    const long double s =
        gamma / std::sqrt(static_cast<long double>(bn.running_var()(o)) + static_cast<long double>(bn.options().eps));
    for (Index r = 0; r < n; ++r) {
      long double y = dense.bias()(o), magnitude = std::abs(static_cast<long double>(dense.bias()(o)));
      for (Index i = 0; i < in; ++i) {
        const long double term = static_cast<long double>(dense.weight()(o, i)) * static_cast<long double>(x(r, i));
        y += term;
        magnitude += std::abs(term);
      }
      const auto k = static_cast<std::size_t>(r * out + o);
      exact[k] = (y - mean) * s + beta;
      terms[k] = std::abs(s) * (magnitude + std::abs(mean)) + std::abs(beta);
    }
  }
}

template <typename Scalar>
long double max_error_of_terms(const Tensor<Scalar, 2>& actual, const std::vector<long double>& expected,
                               const std::vector<long double>& terms) {
  long double worst = 0.0L;
  for (std::size_t k = 0; k < expected.size(); ++k)
    worst = std::max(worst, std::abs(static_cast<long double>(actual.data()[k]) - expected[k]) / terms[k]);
  return worst;
}

// Measured on these cases (Release, AVX2; g++ 12 and clang 14), folded against the pair:
// relative to the terms ≤ 2.7e-7 in float and 5.6e-16 in double; norm-wise,
// ||folded − pair||₂ / ||pair||₂, ≤ 1.7e-7 over the whole output and ≤ 6.4e-7 over the worst
// row in float, ≤ 3.5e-16 and ≤ 8.2e-16 in double; elementwise it reaches 1e-2 in float, on
// an output that cancels to ~1e-5 of its terms (the pair's own float error there is as
// large). Asserted: 1e-5 (the bound) in float, 1e-13 in double, of the terms for
// folded vs pair and folded vs exact, and norm-wise for folded vs pair over the whole output
// and every row; plainly elementwise where the output is at least a quarter of its terms.
template <typename Scalar>
double pair_tolerance() {
  return std::is_same_v<Scalar, float> ? 1e-5 : 1e-13;
}

class FoldedPair : public ::testing::TestWithParam<Variant> {};

template <typename Scalar>
void check_folded_pair(const Variant& variant) {
  constexpr Index in = 12, out = 8, batch = 64;
  Sequential<Scalar> model;
  auto& dense = model.template add<Dense<Scalar>>(in, out, eigenet::Init::HeUniform, 3);
  const auto bias = random_values(out, 4, 1.0, 3.0);  // offsets the running mean from 0
  for (Index o = 0; o < out; ++o)
    dense.bias()(o) = static_cast<Scalar>(bias[static_cast<std::size_t>(o)] * (o % 3 == 0 ? -1.0 : 1.0));
  auto& bn = model.template add<BatchNorm<Scalar>>(out, variant.options);
  if (variant.options.affine) randomise_affine(bn, 5);
  train(model, in, 6, 100);
  if (variant.freeze) {
    bn.freeze(false);
    train(model, in, 2, 200);  // γ, β and Dense still train; running statistics stay
  }
  ASSERT_EQ(bn.num_batches_tracked(), variant.options.virtual_batch_size > 0 ? 6 * 4 : 6);
  for (Index c = 0; c < out; ++c) {
    ASSERT_GT(std::abs(static_cast<double>(bn.running_mean()(c))), 0.05) << "non-trivial running statistics";
    ASSERT_GT(std::abs(static_cast<double>(bn.running_var()(c)) - 1.0), 0.01) << "non-trivial running statistics";
  }

  const Dense<Scalar> folded = eigenet::fold_dense_batchnorm(dense, bn);
  model.eval();
  const auto x = random_tensor<Scalar>(batch, in, 7, 0.0, 5.0);
  const Tensor<Scalar, 2> pair = model.forward(x);
  Dense<Scalar> folded_copy = folded;
  const Tensor<Scalar, 2> y = folded_copy.forward(x);

  std::vector<long double> exact, terms;
  exact_pair(dense, bn, x, exact, terms);
  const std::vector<long double> pair_values(pair.data(), pair.data() + pair.size());
  const long double folded_vs_pair = max_error_of_terms(y, pair_values, terms);
  const long double folded_vs_exact = max_error_of_terms(y, exact, terms);
  const long double pair_vs_exact = max_error_of_terms(pair, exact, terms);
  const Errors errors = errors_of(y, pair);
  const NormwiseErrors normwise = normwise_errors(y, pair);
  std::printf(
      "[ fold     ] %s %-40s folded vs pair: %.2e of the terms, %.2e elementwise, norm-wise %.2e (worst row %.2e); "
      "vs exact: folded %.2e, pair %.2e\n",
      std::is_same_v<Scalar, float> ? "float " : "double", variant.name.c_str(), static_cast<double>(folded_vs_pair),
      errors.elementwise, normwise.whole, normwise.worst_row, static_cast<double>(folded_vs_exact),
      static_cast<double>(pair_vs_exact));
  EXPECT_LE(folded_vs_pair, pair_tolerance<Scalar>());
  EXPECT_LE(folded_vs_exact, pair_tolerance<Scalar>());
  // The requirement read the standard way: ||y_folded − y_pair||₂ / ||y_pair||₂.
  EXPECT_LE(normwise.whole, pair_tolerance<Scalar>()) << "norm-wise over the whole output";
  EXPECT_LE(normwise.worst_row, pair_tolerance<Scalar>()) << "norm-wise over the worst output row";
  // Where the output does not cancel, plainly elementwise.
  for (std::size_t k = 0; k < exact.size(); ++k) {
    if (std::abs(pair_values[k]) >= 0.25L * terms[k]) {
      EXPECT_LE(std::abs(static_cast<long double>(y.data()[k]) - pair_values[k]),
                pair_tolerance<Scalar>() * std::abs(pair_values[k]))
          << "element " << k;
    }
  }

  // The same Dense from fold_batchnorm on the model.
  const Sequential<Scalar> folded_model = eigenet::fold_batchnorm(model);
  ASSERT_EQ(folded_model.size(), 1u);
  const auto& from_model = dynamic_cast<const Dense<Scalar>&>(folded_model[0]);
  EXPECT_EQ(std::vector<Scalar>(from_model.weight().data(), from_model.weight().data() + from_model.weight().size()),
            std::vector<Scalar>(folded.weight().data(), folded.weight().data() + folded.weight().size()));
  EXPECT_EQ(std::vector<Scalar>(from_model.bias().data(), from_model.bias().data() + out),
            std::vector<Scalar>(folded.bias().data(), folded.bias().data() + out));
}

TEST_P(FoldedPair, MatchesThePairsInferenceOutputInFloat) { check_folded_pair<float>(GetParam()); }
TEST_P(FoldedPair, MatchesThePairsInferenceOutputInDouble) { check_folded_pair<double>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(BatchNormOptions, FoldedPair, ::testing::ValuesIn(variants()),
                         [](const ::testing::TestParamInfo<Variant>& info) {
                           std::string name = info.param.name;
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// The coefficients are computed in double and rounded once: in float every folded value is
// the correctly rounded double result (computed here independently, in long double).
TEST(FoldDenseBatchNorm, RoundsTheDoubleCoefficientsOnceInFloat) {
  Dense<float> dense(7, 5, eigenet::Init::GlorotUniform, 11);
  const auto bias = random_values(5, 12, -2.0, 2.0);
  for (Index o = 0; o < 5; ++o) dense.bias()(o) = static_cast<float>(bias[static_cast<std::size_t>(o)]);
  BatchNorm<float> bn(5);
  randomise_affine(bn, 13);
  const auto mean = random_values(5, 14, -3.0, 3.0), var = random_values(5, 15, 0.01, 4.0);
  for (Index c = 0; c < 5; ++c) {
    bn.running_mean()(c) = static_cast<float>(mean[static_cast<std::size_t>(c)]);
    bn.running_var()(c) = static_cast<float>(var[static_cast<std::size_t>(c)]);
  }
  const Dense<float> folded = eigenet::fold_dense_batchnorm(dense, bn);
  for (Index o = 0; o < 5; ++o) {
    const long double s = static_cast<long double>(bn.weight()(o)) /
                          std::sqrt(static_cast<long double>(bn.running_var()(o)) + static_cast<long double>(1e-5));
    for (Index i = 0; i < 7; ++i) {
      const long double w = static_cast<long double>(dense.weight()(o, i)) * s;
      EXPECT_LE(std::abs(static_cast<long double>(folded.weight()(o, i)) - w), std::abs(w) * 0x1.0p-24L * 1.0001L)
          << "weight(" << o << ", " << i << ")";
    }
    const long double b =
        (static_cast<long double>(dense.bias()(o)) - static_cast<long double>(bn.running_mean()(o))) * s +
        static_cast<long double>(bn.bias()(o));
    EXPECT_LE(std::abs(static_cast<long double>(folded.bias()(o)) - b), std::abs(b) * 0x1.0p-24L * 1.0001L)
        << "bias(" << o << ")";
  }
}

// ---------------------------------------------------------------------------------------
// Against PyTorch 1.13's torch.nn.utils.fusion.fuse_linear_bn_eval.

// double: our s = γ/√(var + eps) against PyTorch's γ·rsqrt(var + eps), a few double ulps;
// outputs carry the rounding of a dot product. float: the folded weight and bias are the
// float64 values rounded once (≤ 2^-24 relative); outputs: 8 float ulps of the value and
// of the array's magnitude (as the BatchNorm golden tests).
template <typename Scalar>
Tolerance coefficient_tolerance() {
  return std::is_same_v<Scalar, float> ? Tolerance{0.0, 0x1.0p-24 * 1.0001, 0.0} : Tolerance{0.0, 1e-15, 0.0};
}
template <typename Scalar>
Tolerance output_tolerance() {
  const double ulp = 0x1.0p-23;
  return std::is_same_v<Scalar, float> ? Tolerance{0.0, 8 * ulp, 8 * ulp} : Tolerance{0.0, 1e-13, 1e-14};
}

class FoldGolden : public ::testing::TestWithParam<std::string> {};

template <typename Scalar>
void check_golden(const std::string& name) {
  const GoldenFile golden(name);
  const auto weight = golden["weight"].tensor<Scalar, 2>("weight");
  const Index out = weight.dimension(0), in = weight.dimension(1);
  const bool affine = golden.scalar("affine") != 0.0;
  BatchNormOptions options;
  options.eps = golden.scalar("eps");
  options.affine = affine;

  Sequential<Scalar> model;
  auto& dense = model.template add<Dense<Scalar>>(in, out);
  dense.weight() = weight;
  dense.bias() = golden["bias"].tensor<Scalar, 1>("bias");
  auto& bn = model.template add<BatchNorm<Scalar>>(out, options);
  if (affine) {
    bn.weight() = golden["gamma"].tensor<Scalar, 1>("gamma");
    bn.bias() = golden["beta"].tensor<Scalar, 1>("beta");
  }
  bn.running_mean() = golden["running_mean"].tensor<Scalar, 1>("running_mean");
  bn.running_var() = golden["running_var"].tensor<Scalar, 1>("running_var");

  Dense<Scalar> folded = eigenet::fold_dense_batchnorm(dense, bn);
  expect_close(folded.weight(), golden["fused_weight"], coefficient_tolerance<Scalar>(), name + " fused_weight");
  expect_close(folded.bias(), golden["fused_bias"], coefficient_tolerance<Scalar>(), name + " fused_bias");

  const auto x = golden["x"].tensor<Scalar, 2>("x");
  expect_close(folded.forward(x), golden["y"], output_tolerance<Scalar>(), name + " folded output vs bn(linear(x))");
  expect_close(folded.forward(x), golden["y_fused"], output_tolerance<Scalar>(), name + " folded output vs fused(x)");
  Sequential<Scalar> folded_model = eigenet::fold_batchnorm(model);
  expect_close(folded_model.forward(x), golden["y"], output_tolerance<Scalar>(), name + " folded model output");
  model.eval();
  expect_close(model.forward(x), golden["y"], output_tolerance<Scalar>(), name + " the pair in inference");
}

TEST_P(FoldGolden, MatchesFuseLinearBnEvalInDouble) { check_golden<double>(GetParam()); }
TEST_P(FoldGolden, MatchesFuseLinearBnEvalInFloat) { check_golden<float>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Cases, FoldGolden,
                         ::testing::Values("fold_linear_bn1d_default", "fold_linear_bn1d_eps1e-3_offset",
                                           "fold_linear_bn1d_no_affine"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// ---------------------------------------------------------------------------------------
// Whole models.

/// Dense, BN, ReLU, Dropout, Sequential(Dense, BN, Dropout), Dense, BN without running
/// statistics, Dense, BN, BN, Sequential(Dense), BN: the last BatchNorm follows a nested
/// Sequential, not a Dense, so it stays.
template <typename Scalar>
struct Network {
  Sequential<Scalar> model;
  Network() {
    model.template add<Dense<Scalar>>(4, 6, eigenet::Init::HeUniform, 1);
    randomise_affine(model.template add<BatchNorm<Scalar>>(6), 21);
    model.template add<ReLU<Scalar>>();
    model.template add<Dropout<Scalar>>(0.5, 3);
    auto& inner = model.template add<Sequential<Scalar>>();
    inner.template add<Dense<Scalar>>(6, 5, eigenet::Init::HeUniform, 2);
    randomise_affine(inner.template add<BatchNorm<Scalar>>(5), 22);
    inner.template add<Dropout<Scalar>>(0.3, 4);
    model.template add<Dense<Scalar>>(5, 5, eigenet::Init::GlorotUniform, 5);
    BatchNormOptions no_running_stats;
    no_running_stats.track_running_stats = false;
    randomise_affine(model.template add<BatchNorm<Scalar>>(5, no_running_stats), 23);
    model.template add<Dense<Scalar>>(5, 3, eigenet::Init::GlorotUniform, 6);
    randomise_affine(model.template add<BatchNorm<Scalar>>(3), 24);
    randomise_affine(model.template add<BatchNorm<Scalar>>(3, BatchNormOptions::keras()), 25);
    auto& tail = model.template add<Sequential<Scalar>>();
    tail.template add<Dense<Scalar>>(3, 4, eigenet::Init::GlorotUniform, 7);
    randomise_affine(model.template add<BatchNorm<Scalar>>(4), 26);
  }
};

constexpr const char* kNetworkName =
    "Sequential(Dense(4 -> 6), BatchNorm(6), ReLU, Dropout(p=0.5), Sequential(Dense(6 -> 5), BatchNorm(5), "
    "Dropout(p=0.3)), Dense(5 -> 5), BatchNorm(5), Dense(5 -> 3), BatchNorm(3), BatchNorm(3), "
    "Sequential(Dense(3 -> 4)), BatchNorm(4))";
constexpr const char* kFoldedName =
    "Sequential(Dense(4 -> 6), ReLU, Dropout(p=0.5), Sequential(Dense(6 -> 5), Dropout(p=0.3)), Dense(5 -> 5), "
    "BatchNorm(5), Dense(5 -> 3), Sequential(Dense(3 -> 4)), BatchNorm(4))";

template <typename Scalar>
void check_whole_model() {
  Network<Scalar> net;
  train(net.model, 4, 5, 300);
  ASSERT_EQ(net.model.name(), kNetworkName);
  const Sequential<Scalar> folded = eigenet::fold_batchnorm(net.model);
  EXPECT_EQ(folded.name(), kFoldedName);
  EXPECT_FALSE(folded.is_training());
  for (std::size_t i = 0; i < folded.size(); ++i) EXPECT_FALSE(folded[i].is_training()) << "layer " << i;
  const auto& inner = dynamic_cast<const Sequential<Scalar>&>(folded[3]);
  for (std::size_t i = 0; i < inner.size(); ++i) EXPECT_FALSE(inner[i].is_training()) << "inner layer " << i;
  // The unfolded BatchNorm without running statistics is a copy: same γ and β.
  const auto& kept = dynamic_cast<const BatchNorm<Scalar>&>(folded[5]);
  const auto& original_kept = net.model.template at<BatchNorm<Scalar>>(6);
  EXPECT_FALSE(kept.options().track_running_stats);
  for (Index c = 0; c < 5; ++c) {
    EXPECT_EQ(kept.weight()(c), original_kept.weight()(c));
    EXPECT_EQ(kept.bias()(c), original_kept.bias()(c));
  }

  // Its output equals the original's in inference (a copy of the original, so the
  // original stays in training mode).
  Sequential<Scalar> reference = net.model.deep_copy();
  reference.eval();
  Sequential<Scalar> folded_run = folded.deep_copy();
  const auto x = random_tensor<Scalar>(16, 4, 31, 0.0, 4.0);
  const Errors errors = errors_of(folded_run.forward(x), reference.forward(x));
  std::printf("[ fold     ] %s whole model: max relative error %.3g (of the output's scale %.3g)\n",
              std::is_same_v<Scalar, float> ? "float " : "double", errors.elementwise, errors.of_scale);
  // Eight layers deep, through a batch-statistics BatchNorm whose outputs can be near 0:
  // held to the output's scale rather than elementwise.
  EXPECT_LE(errors.of_scale, (std::is_same_v<Scalar, float> ? 1e-5 : 1e-12));
  EXPECT_TRUE(net.model.is_training());
}

TEST(FoldBatchNorm, FoldsEveryDenseBatchNormPairAlsoNestedAndCopiesTheRestInFloat) { check_whole_model<float>(); }
TEST(FoldBatchNorm, FoldsEveryDenseBatchNormPairAlsoNestedAndCopiesTheRestInDouble) { check_whole_model<double>(); }

TEST(FoldBatchNorm, LeavesTheOriginalBitwiseUnchangedAndItKeepsTraining) {
  Network<float> net;
  train(net.model, 4, 3, 400);
  const auto before = state_of(net.model);
  Sequential<float> folded = eigenet::fold_batchnorm(net.model);
  EXPECT_EQ(state_of(net.model), before) << "folding changed the original model";
  EXPECT_TRUE(net.model.is_training());

  const auto x = random_tensor<float>(10, 4, 41, 0.0, 4.0);
  const auto folded_before = values_of(folded.forward(x));
  auto& bn = net.model.at<BatchNorm<float>>(1);
  auto& inner_bn = net.model.at<Sequential<float>>(4).at<BatchNorm<float>>(1);
  const float mean_before = bn.running_mean()(0), inner_var_before = inner_bn.running_var()(0);
  const float gamma_before = bn.weight()(0), weight_before = net.model.at<Dense<float>>(0).weight()(0, 0);
  const long long tracked_before = bn.num_batches_tracked();

  train(net.model, 4, 3, 500);  // the original trains on
  EXPECT_EQ(bn.num_batches_tracked(), tracked_before + 3);
  EXPECT_NE(bn.running_mean()(0), mean_before);
  EXPECT_NE(inner_bn.running_var()(0), inner_var_before);
  EXPECT_NE(bn.weight()(0), gamma_before);
  EXPECT_NE(net.model.at<Dense<float>>(0).weight()(0, 0), weight_before);
  EXPECT_NE(state_of(net.model), before);
  EXPECT_EQ(values_of(folded.forward(x)), folded_before) << "the folded model shares state with the original";

  // And the folded model still equals the trained original if folded again.
  Sequential<float> refolded = eigenet::fold_batchnorm(net.model);
  Sequential<float> reference = net.model.deep_copy();
  reference.eval();
  EXPECT_LE(errors_of(refolded.forward(x), reference.forward(x)).of_scale, 1e-5);
  EXPECT_NE(values_of(refolded.forward(x)), folded_before);
}

TEST(FoldBatchNorm, FoldsSeveralBatchNormsInARowIntoOneDense) {
  Sequential<double> model;
  model.add<Dense<double>>(3, 2, eigenet::Init::HeUniform, 8);
  for (std::uint32_t k = 0; k < 3; ++k) {
    auto& bn = model.add<BatchNorm<double>>(2);
    randomise_affine(bn, 50 + k);
    bn.running_mean().setValues({0.5 * k, -1.0});
    bn.running_var().setValues({2.0 + k, 0.25});
  }
  Sequential<double> folded = eigenet::fold_batchnorm(model);
  ASSERT_EQ(folded.name(), "Sequential(Dense(3 -> 2))");
  model.eval();
  const auto x = random_tensor<double>(5, 3, 9);
  EXPECT_LE(errors_of(folded.forward(x), model.forward(x)).elementwise, 1e-13);
}

TEST(FoldBatchNorm, KeepsAnEmptyModelEmptyAndCopiesModelsWithoutPairs) {
  const Sequential<float> empty;
  EXPECT_TRUE(eigenet::fold_batchnorm(empty).empty());
  Sequential<float> no_pairs;
  no_pairs.add<BatchNorm<float>>(3);
  no_pairs.add<Dense<float>>(3, 2);
  no_pairs.add<ReLU<float>>();
  Sequential<float> folded = eigenet::fold_batchnorm(no_pairs);
  EXPECT_EQ(folded.name(), "Sequential(BatchNorm(3), Dense(3 -> 2), ReLU)") << "a BatchNorm before a Dense stays";
  no_pairs.eval();
  const auto x = random_tensor<float>(4, 3, 10);
  EXPECT_EQ(values_of(folded.forward(x)), values_of(no_pairs.forward(x)));
}

// ---------------------------------------------------------------------------------------
// Gradients of the folded layers (they train on, as any Dense: fine-tuning after folding).

template <typename Scalar>
std::vector<Scalar> inputs(Index count, std::uint32_t seed) {
  const auto values = random_values(count, seed, 0.0, 3.0);
  return std::vector<Scalar>(values.begin(), values.end());
}

template <typename Scalar>
void check_folded_gradients() {
  Network<Scalar> net;
  train(net.model, 4, 4, 600);
  Dense<Scalar> folded_dense = eigenet::fold_dense_batchnorm(net.model.template at<Dense<Scalar>>(0),
                                                             net.model.template at<BatchNorm<Scalar>>(1));
  EXPECT_EQ(check_layer_gradients(folded_dense, {5, 4}, inputs<Scalar>(20, 61)), 0);
  folded_dense.train();
  EXPECT_EQ(check_layer_gradients(folded_dense, {5, 4}, inputs<Scalar>(20, 62)), 0);

  Sequential<Scalar> folded = eigenet::fold_batchnorm(net.model);
  EXPECT_EQ(check_layer_gradients(folded, {8, 4}, inputs<Scalar>(32, 63)), 0);
}

TEST(FoldGradient, FoldedDenseAndModelMatchFiniteDifferencesInDouble) { check_folded_gradients<double>(); }
TEST(FoldGradient, FoldedDenseAndModelMatchFiniteDifferencesInFloat) { check_folded_gradients<float>(); }

// ---------------------------------------------------------------------------------------
// Errors: derived from eigenet::Error, naming what is wrong.

TEST(FoldDenseBatchNorm, RejectsABatchNormOfOtherWidth) {
  const Dense<float> dense(3, 4);
  const BatchNorm<float> bn(5);
  EXPECT_THROW(eigenet::fold_dense_batchnorm(dense, bn), eigenet::Error);
  const std::string message = message_of<eigenet::ShapeError>([&] { eigenet::fold_dense_batchnorm(dense, bn); });
  EXPECT_TRUE(contains(message, "fold_dense_batchnorm"));
  EXPECT_TRUE(contains(message, "BatchNorm(5)"));
  EXPECT_TRUE(contains(message, "Dense(3 -> 4)"));
  EXPECT_TRUE(contains(message, "5 channels"));
  EXPECT_TRUE(contains(message, "4 out_features"));

  Sequential<float> model;
  model.add<ReLU<float>>();
  model.add<Dense<float>>(3, 4);
  model.add<BatchNorm<float>>(5);
  const std::string in_model = message_of<eigenet::ShapeError>([&] { eigenet::fold_batchnorm(model); });
  EXPECT_TRUE(contains(in_model, "fold_batchnorm: Sequential layers 1..2"));
  EXPECT_TRUE(contains(in_model, "BatchNorm(5)"));
  // Also when that BatchNorm could not be folded anyway (it tracks no running statistics).
  Sequential<float> unfoldable;
  unfoldable.add<Dense<float>>(3, 4);
  BatchNormOptions no_running_stats;
  no_running_stats.track_running_stats = false;
  unfoldable.add<BatchNorm<float>>(5, no_running_stats);
  EXPECT_TRUE(contains(message_of<eigenet::ShapeError>([&] { eigenet::fold_batchnorm(unfoldable); }),
                       "Sequential layers 0..1"));
}

TEST(FoldDenseBatchNorm, RejectsABatchNormWithoutRunningStatistics) {
  BatchNormOptions options;
  options.track_running_stats = false;
  const Dense<double> dense(3, 4);
  const BatchNorm<double> bn(4, options);
  EXPECT_FALSE(eigenet::can_fold(bn));
  EXPECT_TRUE(eigenet::can_fold(BatchNorm<double>(4)));
  const std::string message = message_of<eigenet::StateError>([&] { eigenet::fold_dense_batchnorm(dense, bn); });
  EXPECT_TRUE(contains(message, "BatchNorm(4)"));
  EXPECT_TRUE(contains(message, "track_running_stats = false"));
}

TEST(FoldBatchNorm, KeepsOrRejectsAnUnfoldablePairAsAsked) {
  Network<float> net;
  const std::string message =
      message_of<eigenet::StateError>([&] { eigenet::fold_batchnorm(net.model, FoldOptions{UnfoldablePair::Throw}); });
  EXPECT_TRUE(contains(message, "fold_batchnorm: Sequential layers 5..6"));
  EXPECT_TRUE(contains(message, "BatchNorm(5)"));
  EXPECT_TRUE(contains(message, "track_running_stats = false"));
  EXPECT_EQ(eigenet::fold_batchnorm(net.model, FoldOptions{UnfoldablePair::Keep}).name(), kFoldedName);

  // In a nested Sequential the message locates it through both levels.
  Sequential<float> outer;
  auto& inner = outer.add<Sequential<float>>();
  inner.add<Dense<float>>(2, 3);
  BatchNormOptions options;
  options.track_running_stats = false;
  inner.add<BatchNorm<float>>(3, options);
  const std::string nested =
      message_of<eigenet::StateError>([&] { eigenet::fold_batchnorm(outer, FoldOptions{UnfoldablePair::Throw}); });
  EXPECT_TRUE(contains(nested, "fold_batchnorm: Sequential layer 0: Sequential layers 0..1"));
}

TEST(FoldDenseBatchNorm, RejectsRunningStatisticsThatGiveNoFiniteFold) {
  const Dense<float> dense(2, 3);
  BatchNorm<float> bn(3);
  bn.running_var()(1) = -1.0f;  // running_var + eps < 0
  std::string message = message_of<eigenet::ValueError>([&] { eigenet::fold_dense_batchnorm(dense, bn); });
  EXPECT_TRUE(contains(message, "BatchNorm(3)"));
  EXPECT_TRUE(contains(message, "channel 1"));
  EXPECT_TRUE(contains(message, "running_var -1"));

  bn.running_var()(1) = 1.0f;
  bn.running_mean()(2) = std::numeric_limits<float>::quiet_NaN();
  message = message_of<eigenet::ValueError>([&] { eigenet::fold_dense_batchnorm(dense, bn); });
  EXPECT_TRUE(contains(message, "channel 2"));
  EXPECT_TRUE(contains(message, "running_mean nan"));

  bn.running_mean()(2) = 0.0f;
  bn.weight()(0) = std::numeric_limits<float>::infinity();
  message = message_of<eigenet::ValueError>([&] { eigenet::fold_dense_batchnorm(dense, bn); });
  EXPECT_TRUE(contains(message, "channel 0"));
  EXPECT_TRUE(contains(message, "gamma"));

  // Finite in double, beyond float: W' = γ/√(var + eps) · W overflows.
  bn.weight()(0) = 3e38f;
  bn.running_var()(0) = 1e-6f;
  message = message_of<eigenet::ValueError>([&] { eigenet::fold_dense_batchnorm(dense, bn); });
  EXPECT_TRUE(contains(message, "not finite in this precision"));
  EXPECT_TRUE(contains(message, "row 0"));
}

}  // namespace
