// tests/support/dropout_support.hpp — pieces the Dropout tests share: forward and backward
// on std::vector, distinct non-zero inputs, the documented mask written out independently of the kernels, and one
// forward + backward of a dropout layer on a golden file's x and dy, checked against PyTorch's outputs in training and
// inference mode.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "eigenet/kernels/random.hpp"
#include "eigenet/layers/dropout.hpp"
#include "support/golden.hpp"

namespace eigenet::testing {

/// One forward of `dropout` (in its current mode) over x viewed as `shape`.
template <typename Scalar>
std::vector<Scalar> forward(Dropout<Scalar>& dropout, const std::vector<Scalar>& x, const Shape& shape) {
  std::vector<Scalar> y(x.size());
  dropout.forward_into({x.data(), shape}, {y.data(), shape});
  return y;
}

/// The same over x viewed as (count,).
template <typename Scalar>
std::vector<Scalar> forward(Dropout<Scalar>& dropout, const std::vector<Scalar>& x) {
  return forward(dropout, x, Shape{static_cast<Index>(x.size())});
}

/// dx of the last forward, for x and dy viewed as `shape`.
template <typename Scalar>
std::vector<Scalar> backward(Dropout<Scalar>& dropout, const std::vector<Scalar>& x, const std::vector<Scalar>& dy,
                             const Shape& shape) {
  std::vector<Scalar> dx(x.size());
  dropout.backward_into({x.data(), shape}, {dy.data(), shape}, {dx.data(), shape});
  return dx;
}

/// x[i] = 1 + i/count: every element non-zero and distinct.
template <typename Scalar>
std::vector<Scalar> ramp(Index count) {
  std::vector<Scalar> x(static_cast<std::size_t>(count));
  for (Index i = 0; i < count; ++i)
    x[static_cast<std::size_t>(i)] = Scalar(1) + static_cast<Scalar>(i) / static_cast<Scalar>(count);
  return x;
}

/// The documented mask (eigenet/kernels/dropout.hpp), written from its definition and not
/// from the kernel's loops: mask element `index` of training forward `step` is kept when
///   random_bits(stream_key(seed, step), index) >= round(p · 2^32),   0 <= p < 1.
inline bool documented_keep(double p, std::uint64_t seed, std::uint64_t step, std::uint64_t index) {
  const auto threshold = static_cast<std::uint64_t>(std::llround(p * 4294967296.0));
  return kernels::random_bits(kernels::stream_key(seed, step), index) >= threshold;
}

template <typename Scalar>
struct DropoutRun {
  std::vector<Scalar> y, dx;
};

/// One forward and backward of `dropout` on the golden x and dy.
template <typename Scalar>
DropoutRun<Scalar> run_on_golden(Dropout<Scalar>& dropout, const GoldenFile& golden) {
  const Shape shape = golden["x"].shape;
  const auto x = golden["x"].as<Scalar>(), dy = golden["dy"].as<Scalar>();
  DropoutRun<Scalar> out{std::vector<Scalar>(x.size()), std::vector<Scalar>(x.size())};
  dropout.forward_into({x.data(), shape}, {out.y.data(), shape});
  dropout.backward_into({x.data(), shape}, {dy.data(), shape}, {out.dx.data(), shape});
  return out;
}

/// `dropout` (built with the file's p) gives PyTorch's train_y/train_dx in training and
/// eval_y/eval_dx in inference, exactly and finite (the p = 0 and p = 1 cases).
template <typename Scalar>
void expect_pytorch_outputs_in_both_modes(Dropout<Scalar>& dropout, const GoldenFile& golden) {
  const Tolerance exact{};
  const DropoutRun<Scalar> train = run_on_golden(dropout, golden);
  expect_close(train.y, golden["train_y"], exact, "train_y");
  expect_close(train.dx, golden["train_dx"], exact, "train_dx");
  dropout.eval();
  const DropoutRun<Scalar> eval = run_on_golden(dropout, golden);
  expect_close(eval.y, golden["eval_y"], exact, "eval_y");
  expect_close(eval.dx, golden["eval_dx"], exact, "eval_dx");
  for (const auto& values : {train.y, train.dx, eval.y, eval.dx})
    for (Scalar v : values) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace eigenet::testing
