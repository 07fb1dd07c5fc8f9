// tests/support/gradcheck.hpp — one finite-difference gradient checker for every layer.
//
// For a layer f and a fixed random upstream gradient w (the shape of f(x)), the scalar
//   L(x, θ) = Σ w ⊙ f(x; θ)
// has ∂L/∂x = backward(x, w) and ∂L/∂θ = the gradients backward adds into each parameter.
// The checker compares both with central differences (L(v + h) − L(v − h)) / 2h over every
// element of x and of every parameter, in double. `before_forward` runs before every
// forward, so a layer with per-call state (Dropout's step counter) can replay its mask.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "eigenet/layers/layer.hpp"

namespace eigenet::testing {

struct GradCheckOptions {
  double step = 1e-6;
  double abs_tol = 1e-7;
  double rel_tol = 1e-5;
  std::function<void()> before_forward = [] {};
};

inline std::vector<double> random_values(Index count, std::uint32_t seed, double low = -1.0, double high = 1.0) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<double> dist(low, high);
  std::vector<double> values(static_cast<std::size_t>(count));
  for (double& v : values) v = dist(engine);
  return values;
}

/// Returns the number of mismatching elements (0 when everything agrees) and reports
/// each mismatch (up to a few) as a gtest failure.
inline int check_layer_gradients(Layer<double>& layer, const Shape& input_shape, std::vector<double> x,
                                 const GradCheckOptions& options = {}) {
  const Shape output_shape = layer.output_shape(input_shape);
  const Index out_count = element_count(output_shape);
  const std::vector<double> upstream = random_values(out_count, 12345u);
  std::vector<double> y(static_cast<std::size_t>(out_count));

  auto loss_at = [&](const std::vector<double>& input) {
    options.before_forward();
    layer.forward_into({input.data(), input_shape}, {y.data(), output_shape});
    double total = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) total += upstream[i] * y[i];
    return total;
  };

  // Analytic gradients.
  loss_at(x);
  layer.zero_grad();
  std::vector<double> dx(x.size());
  layer.backward_into({x.data(), input_shape}, {upstream.data(), output_shape}, {dx.data(), input_shape});
  auto parameters = layer.parameters();
  std::vector<std::vector<double>> param_grads;
  for (const auto& p : parameters) param_grads.emplace_back(p.grad, p.grad + p.size);

  int mismatches = 0;
  auto compare = [&](double analytic, double numeric, const std::string& where) {
    const double tol = options.abs_tol + options.rel_tol * std::max(std::abs(analytic), std::abs(numeric));
    if (!(std::abs(analytic - numeric) <= tol)) {
      if (++mismatches <= 5)
        ADD_FAILURE() << layer.name() << ": gradient of " << where << ": backward gives " << analytic
                      << ", finite differences give " << numeric;
    }
  };

  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + options.step;
    const double plus = loss_at(x);
    x[i] = saved - options.step;
    const double minus = loss_at(x);
    x[i] = saved;
    compare(dx[i], (plus - minus) / (2 * options.step), "input[" + std::to_string(i) + "]");
  }
  for (std::size_t k = 0; k < parameters.size(); ++k) {
    for (Index i = 0; i < parameters[k].size; ++i) {
      double& value = parameters[k].value[i];
      const double saved = value;
      value = saved + options.step;
      const double plus = loss_at(x);
      value = saved - options.step;
      const double minus = loss_at(x);
      value = saved;
      compare(param_grads[k][static_cast<std::size_t>(i)], (plus - minus) / (2 * options.step),
              parameters[k].name + "[" + std::to_string(i) + "]");
    }
  }
  return mismatches;
}

}  // namespace eigenet::testing
