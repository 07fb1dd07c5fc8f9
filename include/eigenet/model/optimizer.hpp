// eigenet/model/optimizer.hpp — SGD (with momentum) and Adam, PyTorch's update rules.
//
// An optimiser holds the parameters it was given (Sequential::parameters()) and per-
// parameter state. step() reads each parameter's grad; zero_grad() clears them (backward
// accumulates into grad, so clear once per step, or once per group of micro-batches).
// A parameter that is frozen at the time of a step (Parameter::is_frozen, e.g. a frozen
// BatchNorm's γ and β) is skipped entirely: no update, no weight decay, no state change,
// as PyTorch skips a parameter whose grad is None.
//
// SGD, as torch.optim.SGD:   g ← grad + weight_decay · θ
//   momentum μ > 0:          b ← g (first step),  b ← μ b + (1 − dampening) g (after)
//                            g ← g + μ b (nesterov)  or  g ← b
//                            θ ← θ − lr · g
// Adam, as torch.optim.Adam (L2 weight decay, not AdamW):
//   g ← grad + weight_decay · θ,   t ← t + 1
//   m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²
//   θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)          (bias-corrected)
//
// State that decays below the smallest normal number is set to 0 (momentum buffers, m, v).
// A parameter whose gradient is 0 on most steps (the weights of MNIST's always-black border
// pixels) has moments that decay geometrically into the subnormal range, where x86
// arithmetic runs about a hundred times slower: a seed-bn epoch of examples/mlp_mnist grew
// from 0.9 s to 1.75 s over ten epochs (flushed: a flat 0.72 s). What the flush changes is below 1e-38 in m or v:
// against eps (1e-8) in the denominator and a weight's ulp in the update, nothing a float
// or double result can show (the MNIST runs end bit-identical).
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "eigenet/layers/layer.hpp"

namespace eigenet {

template <typename Scalar>
class Optimizer {
 public:
  explicit Optimizer(std::vector<Parameter<Scalar>> parameters) : parameters_(std::move(parameters)) {
    // As PyTorch: an empty list is almost always model.parameters() taken before the
    // layers were added, and would train nothing without a word.
    if (parameters_.empty())
      throw ValueError("Optimizer: got an empty parameter list (were the layers added after model.parameters()?)");
    for (const auto& p : parameters_)
      if (p.value == nullptr || p.grad == nullptr || p.size < 0)
        throw ValueError("Optimizer: parameter \"" + p.name + "\" has no storage");
  }
  Optimizer(const Optimizer&) = default;
  Optimizer& operator=(const Optimizer&) = default;
  virtual ~Optimizer() = default;

  virtual void step() = 0;

  void zero_grad() {
    for (auto& p : parameters_) std::fill(p.grad, p.grad + p.size, Scalar(0));
  }

  const std::vector<Parameter<Scalar>>& parameters() const { return parameters_; }

 protected:
  static void check_rate(double value, const char* what, const char* who) {
    if (!(value >= 0.0) || !std::isfinite(value))
      throw ValueError(detail::concat(who, ": ", what, " should be finite and >= 0, not ", value));
  }
  /// value, or 0 if it is subnormal; branch-free, so the update loops stay vectorised.
  static Scalar flush_subnormal(Scalar value) {
    return value * static_cast<Scalar>(std::abs(value) >= std::numeric_limits<Scalar>::min());
  }
  static std::vector<std::vector<Scalar>> zero_state_like(const std::vector<Parameter<Scalar>>& parameters) {
    std::vector<std::vector<Scalar>> state;
    for (const auto& p : parameters) state.emplace_back(static_cast<std::size_t>(p.size), Scalar(0));
    return state;
  }

  std::vector<Parameter<Scalar>> parameters_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

template <typename Scalar>
class SGD : public Optimizer<Scalar> {
 public:
  SGD(std::vector<Parameter<Scalar>> parameters, SGDOptions options = {})
      : Optimizer<Scalar>(std::move(parameters)), options_(options) {
    this->check_rate(options.lr, "lr", "SGD");
    this->check_rate(options.momentum, "momentum", "SGD");
    this->check_rate(options.weight_decay, "weight_decay", "SGD");
    this->check_rate(options.dampening, "dampening", "SGD");
    if (options.nesterov && (options.momentum <= 0.0 || options.dampening != 0.0))
      throw ValueError("SGD: nesterov needs momentum > 0 and dampening 0");
    momentum_buffers_ = this->zero_state_like(this->parameters_);
    has_buffer_.assign(this->parameters_.size(), false);
  }

  /// The momentum buffer of parameter k (PyTorch's state "momentum_buffer").
  const std::vector<Scalar>& momentum_buffer(std::size_t k) const { return momentum_buffers_.at(k); }

  void step() override {
    const auto lr = static_cast<Scalar>(options_.lr), mu = static_cast<Scalar>(options_.momentum);
    const auto decay = static_cast<Scalar>(options_.weight_decay), damp = static_cast<Scalar>(1.0 - options_.dampening);
    for (std::size_t k = 0; k < this->parameters_.size(); ++k) {
      const Parameter<Scalar>& p = this->parameters_[k];
      if (p.is_frozen()) continue;
      const bool first_step = !has_buffer_[k];
      has_buffer_[k] = true;
      Scalar* buffer = momentum_buffers_[k].data();
      for (Index i = 0; i < p.size; ++i) {
        Scalar g = p.grad[i] + decay * p.value[i];
        if (options_.momentum > 0.0) {
          buffer[i] = this->flush_subnormal(first_step ? g : mu * buffer[i] + damp * g);
          g = options_.nesterov ? g + mu * buffer[i] : buffer[i];
        }
        p.value[i] -= lr * g;
      }
    }
  }

 private:
  SGDOptions options_;
  std::vector<std::vector<Scalar>> momentum_buffers_;
  std::vector<bool> has_buffer_;  // per parameter: a step has filled its momentum buffer
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

template <typename Scalar>
class Adam : public Optimizer<Scalar> {
 public:
  Adam(std::vector<Parameter<Scalar>> parameters, AdamOptions options = {})
      : Optimizer<Scalar>(std::move(parameters)), options_(options) {
    this->check_rate(options.lr, "lr", "Adam");
    // eps = 0 divides 0 by 0 for a parameter whose gradient has always been 0.
    if (!(options.eps > 0.0) || !std::isfinite(options.eps) || !(static_cast<Scalar>(options.eps) > Scalar(0)))
      throw ValueError(detail::concat("Adam: eps should be finite and > 0 (also once rounded to ",
                                      sizeof(Scalar) == 4 ? "float" : "the scalar type", "), not ", options.eps));
    this->check_rate(options.weight_decay, "weight_decay", "Adam");
    if (!(options.beta1 >= 0.0 && options.beta1 < 1.0) || !(options.beta2 >= 0.0 && options.beta2 < 1.0))
      throw ValueError(
          detail::concat("Adam: betas should be in [0, 1), not (", options.beta1, ", ", options.beta2, ")"));
    first_moment_ = this->zero_state_like(this->parameters_);
    second_moment_ = this->zero_state_like(this->parameters_);
    parameter_steps_.assign(this->parameters_.size(), 0);
  }

  void step() override {
    ++steps_;
    const auto b1 = static_cast<Scalar>(options_.beta1), b2 = static_cast<Scalar>(options_.beta2);
    const auto eps = static_cast<Scalar>(options_.eps), decay = static_cast<Scalar>(options_.weight_decay);
    for (std::size_t k = 0; k < this->parameters_.size(); ++k) {
      const Parameter<Scalar>& p = this->parameters_[k];
      if (p.is_frozen()) continue;
      // t counts this parameter's own updates (PyTorch keeps state["step"] per parameter).
      const double t = static_cast<double>(++parameter_steps_[k]);
      const auto step_size = static_cast<Scalar>(options_.lr / (1.0 - std::pow(options_.beta1, t)));
      const auto sqrt_correction2 = static_cast<Scalar>(std::sqrt(1.0 - std::pow(options_.beta2, t)));
      Scalar* m = first_moment_[k].data();
      Scalar* v = second_moment_[k].data();
      for (Index i = 0; i < p.size; ++i) {
        const Scalar g = p.grad[i] + decay * p.value[i];
        m[i] = this->flush_subnormal(b1 * m[i] + (Scalar(1) - b1) * g);
        v[i] = this->flush_subnormal(b2 * v[i] + (Scalar(1) - b2) * g * g);
        p.value[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_correction2 + eps);
      }
    }
  }

  /// Calls of step() so far.
  long long steps() const { return steps_; }

  /// The moments of parameter k (PyTorch's state "exp_avg" and "exp_avg_sq"), one value
  /// per element.
  const std::vector<Scalar>& exp_avg(std::size_t k) const { return first_moment_.at(k); }
  const std::vector<Scalar>& exp_avg_sq(std::size_t k) const { return second_moment_.at(k); }

 private:
  AdamOptions options_;
  std::vector<std::vector<Scalar>> first_moment_, second_moment_;
  long long steps_ = 0;
  std::vector<long long> parameter_steps_;  // per parameter: updates it has received
};

}  // namespace eigenet
