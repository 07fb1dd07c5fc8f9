// eigenet/layers/dropout.hpp — inverted dropout for tensors of any rank.
//
// Training: each element is dropped (set to 0) with probability p and kept elements are
// scaled by 1/(1 − p), so E[y] = x. Inference: the identity. p = 0 is the identity in
// both modes; p = 1 gives zeros and zero gradients (never NaN).
//
// Reproducible: the mask of training forward number k (k = 0, 1, ...) is a pure function
// of (seed, k, element index) — see eigenet/kernels/dropout.hpp — so it does not depend
// on the thread count, and backward recomputes exactly the mask of the last forward from
// two integers instead of storing it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "eigenet/kernels/dropout.hpp"
#include "eigenet/layers/layer.hpp"

namespace eigenet {

template <typename Scalar>
class Dropout : public Layer<Scalar> {
 public:
  explicit Dropout(double p = 0.5, std::uint64_t seed = 0) : p_(p), seed_(seed) {
    kernels::check_drop_probability(p, "Dropout");
  }

  std::string name() const override { return detail::concat("Dropout(p=", p_, ")"); }
  std::unique_ptr<Layer<Scalar>> clone() const override { return std::make_unique<Dropout>(*this); }

  Shape output_shape(const Shape& input) const override { return input; }

  void forward_into(ConstView<Scalar> x, View<Scalar> y) override {
    detail::check_forward_shapes(*this, x, y);
    cached_shape_ = x.shape;
    cached_training_ = this->is_training();
    have_cache_ = true;
    if (!cached_training_) {
      std::copy(x.data, x.data + x.size(), y.data);
      return;
    }
    cached_step_ = next_step_++;
    kernels::apply_dropout_mask(x.data, y.data, x.size(), mask(cached_step_));
  }

  void backward_into(ConstView<Scalar> x, ConstView<Scalar> dy, View<Scalar> dx) override {
    detail::check_backward_shapes(*this, x, dy, dx);
    if (!have_cache_) throw StateError(name() + ": backward called before forward");
    if (x.shape != cached_shape_)
      throw StateError(detail::concat(name(), ": backward expects the input of the last forward, of shape ",
                                      to_string(cached_shape_), ", not ", to_string(x.shape)));
    if (dx.data == nullptr) return;
    if (!cached_training_) {
      std::copy(dy.data, dy.data + dy.size(), dx.data);
      return;
    }
    kernels::apply_dropout_mask(dy.data, dx.data, dy.size(), mask(cached_step_));
  }

  double drop_probability() const { return p_; }
  std::uint64_t seed() const { return seed_; }

  /// The number of the next training forward; set it to replay a mask (the mask of a
  /// forward depends only on seed, step and element index).
  std::uint64_t step() const { return next_step_; }
  void set_step(std::uint64_t step) { next_step_ = step; }
  void set_seed(std::uint64_t seed) { seed_ = seed; }

 private:
  kernels::DropoutMask mask(std::uint64_t step) const { return {p_, seed_, step}; }

  double p_;
  std::uint64_t seed_;
  std::uint64_t next_step_ = 0;
  // Backward cache: which mask the last forward used.
  std::uint64_t cached_step_ = 0;
  Shape cached_shape_;
  bool cached_training_ = true;
  bool have_cache_ = false;
};

}  // namespace eigenet
