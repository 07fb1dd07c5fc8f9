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

#include <cmath>
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

  auto loss_at = [&](const std::vector<Scalar>& input) {
    options.before_forward();
    layer.forward_into({input.data(), input_shape}, {y.data(), output_shape});
    double total = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) total += static_cast<double>(upstream[i]) * static_cast<double>(y[i]);
    return total;
  };
  const auto step = static_cast<Scalar>(options.step);

  // Analytic gradients.
  loss_at(x);
  layer.zero_grad();
  std::vector<Scalar> dx(x.size());
  layer.backward_into({x.data(), input_shape}, {upstream.data(), output_shape}, {dx.data(), input_shape});
  auto parameters = layer.parameters();
  std::vector<std::vector<Scalar>> param_grads;
  for (const auto& p : parameters) param_grads.emplace_back(p.grad, p.grad + p.size);

  int mismatches = 0;
  auto compare = [&](Scalar analytic_value, double numeric, const std::string& where) {
    const auto analytic = static_cast<double>(analytic_value);
    const double tol = options.abs_tol + options.rel_tol * std::max(std::abs(analytic), std::abs(numeric));
    if (!(std::abs(analytic - numeric) <= tol)) {
      if (++mismatches <= 5)
        ADD_FAILURE() << layer.name() << ": gradient of " << where << ": backward gives " << analytic
                      << ", finite differences give " << numeric;
    }
  };

  for (std::size_t i = 0; i < x.size(); ++i) {
    const Scalar saved = x[i];
    x[i] = saved + step;
    const double plus = loss_at(x);
    x[i] = saved - step;
    const double minus = loss_at(x);
    x[i] = saved;
    // The step actually taken: saved ± step rounded to Scalar.
    const double taken = static_cast<double>(Scalar(saved + step)) - static_cast<double>(Scalar(saved - step));
    compare(dx[i], (plus - minus) / taken, "input[" + std::to_string(i) + "]");
  }
  for (std::size_t k = 0; k < parameters.size(); ++k) {
    for (Index i = 0; i < parameters[k].size; ++i) {
      Scalar& value = parameters[k].value[i];
      const Scalar saved = value;
      value = saved + step;
      const double plus = loss_at(x);
      value = saved - step;
      const double minus = loss_at(x);
      value = saved;
      const double taken = static_cast<double>(Scalar(saved + step)) - static_cast<double>(Scalar(saved - step));
      compare(param_grads[k][static_cast<std::size_t>(i)], (plus - minus) / taken,
              parameters[k].name + "[" + std::to_string(i) + "]");
    }
  }
  return mismatches;
}

}  // namespace eigenet::testing
