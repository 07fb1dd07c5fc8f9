// tests/support/gradcheck.hpp — one finite-difference gradient checker for every layer.
//
// For a layer f and a fixed random upstream gradient w (the shape of f(x)), the scalar
//   L(x, θ) = Σ w ⊙ f(x; θ)
// has ∂L/∂x = backward(x, w) and ∂L/∂θ = the gradients backward adds into each parameter.
// The checker compares both with central differences (L(v + h) − L(v − h)) / 2h over every
// element of x and of every parameter. `before_forward` runs before every forward, so a
// layer with per-call state (Dropout's step counter) can replay its mask.
//
// In double (the reference check) the step is 1e-6 and the tolerances tight. In float the
// same check runs with a larger step and looser tolerances (options_for<float>()): L is
// summed in double, but each output carries float rounding (~6e-8 relative), which a
// central difference divides by 2h; with h = 3e-3 that is ~1e-4 of the gradient's scale.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "eigenet/layers/layer.hpp"

namespace eigenet::testing {

struct GradCheckOptions {
  double step = 1e-6;
  double abs_tol = 1e-7;
  double rel_tol = 1e-5;
  std::function<void()> before_forward = [] {};
};

/// The default options for a scalar type (see the header comment).
template <typename Scalar>
GradCheckOptions options_for() {
  GradCheckOptions options;
  if constexpr (std::is_same_v<Scalar, float>) {
    options.step = 3e-3;
    options.abs_tol = 2e-3;
    options.rel_tol = 1e-2;
  }
  return options;
}

inline std::vector<double> random_values(Index count, std::uint32_t seed, double low = -1.0, double high = 1.0) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<double> dist(low, high);
  std::vector<double> values(static_cast<std::size_t>(count));
  for (double& v : values) v = dist(engine);
  return values;
}

/// The core of every check: for each of `count` values at `values`, perturbs it by ±step
/// (restoring it after), evaluates `loss()` (a double) and compares the central difference
/// with analytic[i]. Returns the number of mismatches; reports the first few, naming `who`
/// and `what[i]`.
template <typename Scalar, typename Loss>
int compare_with_finite_differences(Scalar* values, const Scalar* analytic, Index count, Loss&& loss,
                                    const std::string& who, const std::string& what, const GradCheckOptions& options,
                                    int reported_so_far = 0) {
  const auto step = static_cast<Scalar>(options.step);
  int mismatches = 0;
  for (Index i = 0; i < count; ++i) {
    const Scalar saved = values[i];
    values[i] = saved + step;
    const double plus = loss();
    values[i] = saved - step;
    const double minus = loss();
    values[i] = saved;
    // The step actually taken: saved ± step rounded to Scalar.
    const double taken = static_cast<double>(Scalar(saved + step)) - static_cast<double>(Scalar(saved - step));
    const double numeric = (plus - minus) / taken;
    const auto exact = static_cast<double>(analytic[i]);
    const double tol = options.abs_tol + options.rel_tol * std::max(std::abs(exact), std::abs(numeric));
    if (!(std::abs(exact - numeric) <= tol)) {
      if (reported_so_far + ++mismatches <= 5)
        ADD_FAILURE() << who << ": gradient of " << what << "[" << i << "]: backward gives " << exact
                      << ", finite differences give " << numeric;
    }
  }
  return mismatches;
}

/// Returns the number of mismatching elements (0 when everything agrees) and reports
/// each mismatch (up to a few) as a gtest failure.
template <typename Scalar>
int check_layer_gradients(Layer<Scalar>& layer, const Shape& input_shape, std::vector<Scalar> x,
                          const GradCheckOptions& options = options_for<Scalar>()) {
  const Shape output_shape = layer.output_shape(input_shape);
  const Index out_count = element_count(output_shape);
  const std::vector<double> upstream_values = random_values(out_count, 12345u);
  const std::vector<Scalar> upstream(upstream_values.begin(), upstream_values.end());
  std::vector<Scalar> y(static_cast<std::size_t>(out_count));

  auto loss = [&] {
    options.before_forward();
    layer.forward_into({x.data(), input_shape}, {y.data(), output_shape});
    double total = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) total += static_cast<double>(upstream[i]) * static_cast<double>(y[i]);
    return total;
  };

  // Analytic gradients.
  loss();
  layer.zero_grad();
  std::vector<Scalar> dx(x.size());
  layer.backward_into({x.data(), input_shape}, {upstream.data(), output_shape}, {dx.data(), input_shape});
  auto parameters = layer.parameters();
  std::vector<std::vector<Scalar>> param_grads;
  for (const auto& p : parameters) param_grads.emplace_back(p.grad, p.grad + p.size);

  int mismatches = compare_with_finite_differences(x.data(), dx.data(), static_cast<Index>(x.size()), loss,
                                                   layer.name(), "input", options);
  for (std::size_t k = 0; k < parameters.size(); ++k)
    mismatches += compare_with_finite_differences(parameters[k].value, param_grads[k].data(), parameters[k].size, loss,
                                                  layer.name(), parameters[k].name, options, mismatches);
  return mismatches;
}

/// The same check for a loss: L(logits) = loss.forward(logits, labels), whose gradient
/// loss.backward_into gives. Works for any loss with SoftmaxCrossEntropy's interface.
template <typename Loss, typename Scalar>
int check_loss_gradients(Loss& loss, const Shape& logits_shape, std::vector<Scalar> logits,
                         const std::vector<std::int64_t>& labels,
                         const GradCheckOptions& options = options_for<Scalar>()) {
  const auto label_count = static_cast<Index>(labels.size());
  auto value = [&] { return loss.forward({logits.data(), logits_shape}, labels.data(), label_count); };
  value();
  std::vector<Scalar> grad(logits.size());
  loss.backward_into({grad.data(), logits_shape});
  return compare_with_finite_differences(logits.data(), grad.data(), static_cast<Index>(logits.size()), value, "loss",
                                         "logits", options);
}

}  // namespace eigenet::testing
