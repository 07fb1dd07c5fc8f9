// eigenet/layers/alpha_dropout.hpp — AlphaDropout for self-normalising (SELU) networks.
//
// PyTorch's nn.AlphaDropout (and, with channel sharing, nn.FeatureAlphaDropout), Keras'
// AlphaDropout: in training each element is dropped with probability p and set to SELU's
// saturation value α' = −λα = −1.7580993408473766, then
//   y = a · (x or α') + b,   a = ((1 − p)(1 + p α'²))^(−1/2),   b = −a α' p,
// so an input of mean 0 and variance 1 keeps mean 0 and variance 1 (the derivation is in
// eigenet/kernels/dropout.hpp and docs/dropout.md). Kept: y = a x + b; dropped:
// y = a α' + b, whatever x is (a dropped inf or NaN does not reach y).
//   backward: dx = a · dy on kept elements, 0 on dropped ones (the forward's mask).
// Inference: the identity. p = 0: the identity in both modes. p = 1: zeros and zero
// gradients, as PyTorch 1.13 (which returns x · 0), but never NaN.
//
// Everything else is Dropout's: the counter-based mask of (seed, step, mask index), so the
// same seed and step drop the same elements as a Dropout with the same p; shared axes;
// chunks with a sample offset; Monte-Carlo mode.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "eigenet/kernels/dropout.hpp"
#include "eigenet/layers/dropout.hpp"

namespace eigenet {

template <typename Scalar>
class AlphaDropout : public Dropout<Scalar> {
 public:
  explicit AlphaDropout(double p = 0.5, std::uint64_t seed = 0, DropoutOptions options = {})
      : Dropout<Scalar>(check(p), seed, std::move(options)) {}

  /// "AlphaDropout(p=0.5)"; "FeatureAlphaDropout(p=0.5)" when whole channels drop.
  std::string name() const override {
    return this->describe(this->options().channelwise ? "FeatureAlphaDropout" : "AlphaDropout");
  }
  std::unique_ptr<Layer<Scalar>> clone() const override { return std::make_unique<AlphaDropout>(*this); }

  /// a, b and the value of a dropped element, a α' + b; for p = 1 all three are 0 (the
  /// layer then outputs zeros).
  kernels::AlphaDropoutConstants constants() const {
    if (this->drop_probability() >= 1.0) return {0.0, 0.0, 0.0};
    return kernels::alpha_dropout_constants(this->drop_probability());
  }

 protected:
  void masked_forward(const Scalar* x, Scalar* y, const kernels::NoiseLayout& layout, const kernels::DropoutMask& mask,
                      std::uint64_t first_index) const override {
    const double p = mask.drop_probability;
    if (p <= 0.0) {
      std::copy(x, x + layout.count, y);
      return;
    }
    if (p >= 1.0) {
      std::fill(y, y + layout.count, Scalar(0));
      return;
    }
    const kernels::AlphaDropoutConstants c = kernels::alpha_dropout_constants(p);
    const auto scale = static_cast<Scalar>(c.scale), offset = static_cast<Scalar>(c.offset);
    const auto dropped = static_cast<Scalar>(c.dropped_value);
    kernels::apply_masked(x, y, layout, mask, first_index, [=](bool keep, Scalar value) {
      return kernels::detail::keep_or(keep, value * scale + offset, dropped);
    });
  }

  void masked_backward(const Scalar* dy, Scalar* dx, const kernels::NoiseLayout& layout,
                       const kernels::DropoutMask& mask, std::uint64_t first_index) const override {
    const double p = mask.drop_probability;
    if (p <= 0.0) {
      std::copy(dy, dy + layout.count, dx);
      return;
    }
    if (p >= 1.0) {
      std::fill(dx, dx + layout.count, Scalar(0));
      return;
    }
    const auto scale = static_cast<Scalar>(kernels::alpha_dropout_constants(p).scale);
    kernels::apply_masked(dy, dx, layout, mask, first_index,
                          [=](bool keep, Scalar value) { return kernels::detail::keep_or_zero(keep, value * scale); });
  }

 private:
  static double check(double p) {
    kernels::check_drop_probability(p, "AlphaDropout");
    return p;
  }
};

/// AlphaDropout of whole channels of (N, C, ...) inputs of rank >= 3 (PyTorch's
/// nn.FeatureAlphaDropout): every value of a channel of a sample shares one mask value.
template <typename Scalar>
class FeatureAlphaDropout : public AlphaDropout<Scalar> {
 public:
  explicit FeatureAlphaDropout(double p = 0.5, std::uint64_t seed = 0)
      : AlphaDropout<Scalar>(p, seed, DropoutOptions::channels()) {}

  std::unique_ptr<Layer<Scalar>> clone() const override { return std::make_unique<FeatureAlphaDropout>(*this); }
};

}  // namespace eigenet
