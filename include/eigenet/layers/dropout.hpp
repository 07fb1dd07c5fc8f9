// eigenet/layers/dropout.hpp — inverted dropout for tensors of any rank, with masks shared
// along chosen axes (Keras noise_shape, PyTorch Dropout1d/2d/3d) and Monte-Carlo dropout.
//
// Training: each element is dropped (set to 0) with probability p and kept elements are
// scaled by 1/(1 − p), so E[y] = x. Inference: the identity. p = 0 is the identity in
// both modes; p = 1 gives zeros and zero gradients (never NaN).
//
// Shared axes (DropoutOptions::shared_axes): one mask value per element of the "noise"
// tensor, the input's shape with extent 1 on the shared axes (Keras' noise_shape); every
// element reads the value of its noise element. Channel dropout (Dropout2d, or
// DropoutOptions::channelwise): for (N, C, ...) of rank >= 3 every axis after 1 is shared,
// so whole channels drop together (PyTorch Dropout1d/2d/3d, Keras SpatialDropout1D/2D/3D).
//
// Reproducible: the mask of training forward number k (k = 0, 1, ...) is a pure function
// of (seed, k, mask index) — see eigenet/kernels/dropout.hpp — where the mask index is the
// row-major index into the noise tensor of the WHOLE batch. So it does not depend on the
// thread count, a batch run in chunks (forward_chunk with each chunk's sample offset) gets
// the mask of the whole, and backward recomputes exactly the mask of the last forward from
// three integers (seed, step, sample offset) instead of storing it.
//
// Monte-Carlo dropout (set_monte_carlo(true)): the layer stays stochastic in inference
// mode, and a parent's train()/eval() does not undo the flag. Each forward then draws a
// new mask (advances step) and backward uses that forward's mask. See
// eigenet/model/monte_carlo.hpp for T stochastic passes with mean and variance.
//
// Contract (beyond Layer's):
//   output_shape(s)   ShapeError if a shared axis is outside [−rank, rank) or repeated, or
//                     channelwise and rank < 3.
//   forward_chunk(x, step, sample_offset)
//                     x holds samples [sample_offset, sample_offset + N) of a larger batch;
//                     the output is that part of the whole batch's output at `step`.
//                     Does not advance step().
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eigenet/kernels/dropout.hpp"
#include "eigenet/layers/layer.hpp"

namespace eigenet {

struct DropoutOptions {
  /// Axes along which one mask value is shared (broadcast): Keras' noise_shape has extent
  /// 1 on exactly these axes. Negative axes count from the end (−1 is the last). Empty:
  /// every element has its own mask value.
  std::vector<int> shared_axes;
  /// Channel dropout: additionally share every axis after 1 of an (N, C, ...) input, which
  /// must then have rank >= 3 (PyTorch Dropout1d/2d/3d on batched input).
  bool channelwise = false;

  /// Whole channels of (N, C, ...) drop together.
  static DropoutOptions channels() {
    DropoutOptions options;
    options.channelwise = true;
    return options;
  }
  /// The mask is shared along `axes` (Keras noise_shape with 1 on these axes).
  static DropoutOptions shared(std::vector<int> axes) {
    DropoutOptions options;
    options.shared_axes = std::move(axes);
    return options;
  }
};

template <typename Scalar>
class Dropout : public Layer<Scalar> {
 public:
  explicit Dropout(double p = 0.5, std::uint64_t seed = 0, DropoutOptions options = {})
      : p_(p), seed_(seed), options_(std::move(options)) {
    kernels::check_drop_probability(p, "Dropout");
  }

  /// "Dropout(p=0.5)"; "Dropout2d(p=0.5)" for channel dropout.
  std::string name() const override { return describe(options_.channelwise ? "Dropout2d" : "Dropout"); }
  std::unique_ptr<Layer<Scalar>> clone() const override { return std::make_unique<Dropout>(*this); }

  Shape output_shape(const Shape& input) const override {
    shared_flags(input);  // validates the axes against the rank
    return input;
  }

  void forward_into(ConstView<Scalar> x, View<Scalar> y) override {
    run_forward(x, y, next_step_, 0);
    if (cached_stochastic_) ++next_step_;
  }

  /// Forward of samples [sample_offset, sample_offset + N) of a larger batch with that
  /// batch's mask of training step `step` (axis 0 is the sample axis). Does not advance
  /// step(); backward then uses this chunk's mask.
  void forward_chunk_into(ConstView<Scalar> x, View<Scalar> y, std::uint64_t step, Index sample_offset) {
    run_forward(x, y, step, sample_offset);
  }

  template <typename Input>
  Tensor<Scalar, Input::NumDimensions> forward_chunk(const Input& x, std::uint64_t step, Index sample_offset) {
    static_assert(std::is_same_v<typename Input::Scalar, Scalar>, "input scalar type differs from the layer's");
    this->last_input_.reset();
    const ConstView<Scalar> in = detail::view_of(x);
    auto y = detail::make_tensor<Scalar, Input::NumDimensions>(output_shape(in.shape));
    forward_chunk_into(in, {y.data(), detail::shape_of(y)}, step, sample_offset);
    return y;
  }

  void backward_into(ConstView<Scalar> x, ConstView<Scalar> dy, View<Scalar> dx) override {
    detail::check_backward_shapes(*this, x, dy, dx);
    detail::check_follows_forward(*this, this->last_input_, x);
    if (dx.data == nullptr) return;
    if (!cached_stochastic_) {
      std::copy(dy.data, dy.data + dy.size(), dx.data);
      return;
    }
    masked_backward(dy.data, dx.data, layout_of(x.shape), mask(cached_step_),
                    first_mask_index(x.shape, cached_offset_));
  }

  double drop_probability() const { return p_; }
  std::uint64_t seed() const { return seed_; }
  const DropoutOptions& options() const { return options_; }

  /// The number of the next training forward; set it to replay a mask (the mask of a
  /// forward depends only on seed, step and mask index).
  std::uint64_t step() const { return next_step_; }
  void set_step(std::uint64_t step) { next_step_ = step; }
  void set_seed(std::uint64_t seed) { seed_ = seed; }

  /// Monte-Carlo dropout: stay stochastic in inference mode too. A parent's train()/eval()
  /// leaves this flag as it is.
  void set_monte_carlo(bool enabled) { monte_carlo_ = enabled; }
  bool is_monte_carlo() const { return monte_carlo_; }

  /// Whether the next forward draws a mask (training mode, or Monte-Carlo dropout).
  bool is_stochastic() const { return this->is_training() || monte_carlo_; }

  /// Which input axes of `shape` share one mask value (resolved shared axes and
  /// channelwise); ShapeError if they do not fit the rank.
  std::vector<bool> shared_flags(const Shape& shape) const {
    const int rank = static_cast<int>(shape.size());
    std::vector<bool> shared(shape.size(), false);
    if (options_.channelwise) {
      if (rank < 3)
        throw ShapeError(detail::concat(
            name(), ": channel dropout needs an input of rank >= 3, (N, C, ...), not shape ", to_string(shape)));
      for (int k = 2; k < rank; ++k) shared[static_cast<std::size_t>(k)] = true;
    }
    std::vector<bool> listed(shape.size(), false);
    for (int axis : options_.shared_axes) {
      if (axis < -rank || axis >= rank)
        throw ShapeError(detail::concat(name(), ": shared_axes entry ", axis, " should be in [", -rank, ", ", rank,
                                        ") for an input of rank ", rank, ", shape ", to_string(shape)));
      const auto k = static_cast<std::size_t>(axis < 0 ? axis + rank : axis);
      if (listed[k])
        throw ShapeError(
            detail::concat(name(), ": shared_axes names axis ", k, " twice for an input of shape ", to_string(shape)));
      listed[k] = true;
      shared[k] = true;
    }
    return shared;
  }

  /// Keras' noise_shape for an input of `shape`: its extents with 1 on the shared axes.
  Shape noise_shape(const Shape& shape) const {
    const std::vector<bool> shared = shared_flags(shape);
    Shape noise = shape;
    for (std::size_t k = 0; k < noise.size(); ++k)
      if (shared[k]) noise[k] = 1;
    return noise;
  }

 protected:
  /// y = the masked transform of x (the layer's forward in its stochastic state).
  virtual void masked_forward(const Scalar* x, Scalar* y, const kernels::NoiseLayout& layout,
                              const kernels::DropoutMask& mask, std::uint64_t first_index) const {
    kernels::apply_dropout_mask(x, y, layout, mask, first_index);
  }
  /// dx = ∂y/∂x · dy for the same mask: dx_i = m_i dy_i / (1 − p).
  virtual void masked_backward(const Scalar* dy, Scalar* dx, const kernels::NoiseLayout& layout,
                               const kernels::DropoutMask& mask, std::uint64_t first_index) const {
    kernels::apply_dropout_mask(dy, dx, layout, mask, first_index);
  }

  /// "Kind(p=0.5)", with the shared axes when there are any.
  std::string describe(const std::string& kind) const {
    std::string text = detail::concat(kind, "(p=", p_);
    if (!options_.shared_axes.empty()) {
      text += ", shared_axes=[";
      for (std::size_t i = 0; i < options_.shared_axes.size(); ++i)
        text += detail::concat(i ? ", " : "", options_.shared_axes[i]);
      text += "]";
    }
    return text + ")";
  }

 private:
  void run_forward(const ConstView<Scalar>& x, const View<Scalar>& y, std::uint64_t step, Index sample_offset) {
    this->last_input_.reset();
    detail::check_forward_shapes(*this, x, y);
    if (sample_offset < 0)
      throw ValueError(detail::concat(name(), ": sample_offset should be >= 0, not ", sample_offset));
    if (sample_offset > 0 && x.shape.empty())
      throw ShapeError(name() + ": a sample offset needs an input with a sample axis (rank >= 1), not a scalar");
    const bool stochastic = is_stochastic();
    if (stochastic) {
      masked_forward(x.data, y.data, layout_of(x.shape), mask(step), first_mask_index(x.shape, sample_offset));
    } else {
      std::copy(x.data, x.data + x.size(), y.data);
    }
    this->last_input_ = x.shape;
    cached_stochastic_ = stochastic;
    cached_step_ = step;
    cached_offset_ = sample_offset;
  }

  kernels::DropoutMask mask(std::uint64_t step) const { return {p_, seed_, step}; }

  kernels::NoiseLayout layout_of(const Shape& shape) const {
    if (options_.shared_axes.empty() && !options_.channelwise) return kernels::contiguous_layout(element_count(shape));
    return kernels::noise_layout(shape, shared_flags(shape));
  }

  /// The global mask index of the first element of a chunk starting at sample
  /// `sample_offset`: offset · (noise elements per sample), 0 when axis 0 is shared.
  std::uint64_t first_mask_index(const Shape& shape, Index sample_offset) const {
    if (sample_offset == 0) return 0;
    const std::vector<bool> shared = shared_flags(shape);
    if (shared[0]) return 0;  // every sample uses the same mask
    Index per_sample = 1;
    for (std::size_t k = 1; k < shape.size(); ++k) per_sample *= shared[k] ? 1 : shape[k];
    return static_cast<std::uint64_t>(sample_offset) * static_cast<std::uint64_t>(per_sample);
  }

  double p_;
  std::uint64_t seed_;
  DropoutOptions options_;
  std::uint64_t next_step_ = 0;
  bool monte_carlo_ = false;
  // Backward cache: which mask the last forward used.
  std::uint64_t cached_step_ = 0;
  Index cached_offset_ = 0;
  bool cached_stochastic_ = true;
};

/// Channel dropout for (N, C, ...) inputs of rank >= 3: every value of a channel of a sample
/// shares one mask value, so whole feature maps drop together (PyTorch Dropout2d, and
/// Dropout1d/3d on batched input; Keras SpatialDropout1D/2D/3D with channels first).
template <typename Scalar>
class Dropout2d : public Dropout<Scalar> {
 public:
  explicit Dropout2d(double p = 0.5, std::uint64_t seed = 0) : Dropout<Scalar>(p, seed, DropoutOptions::channels()) {}

  std::unique_ptr<Layer<Scalar>> clone() const override { return std::make_unique<Dropout2d>(*this); }
};

}  // namespace eigenet
