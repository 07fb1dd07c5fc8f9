// eigenet/layers/batchnorm.hpp — BatchNorm over (N, C) and (N, C, d1, ..., dk) inputs.
//
// PyTorch's BatchNorm1d/2d/3d semantics and defaults:
//   eps = 1e-5 inside the square root; momentum = 0.1 weighting the NEW batch:
//     running_mean ← (1 − momentum) · running_mean + momentum · batch_mean
//     running_var  ← (1 − momentum) · running_var  + momentum · batch_var_unbiased
//   training normalises with the BIASED batch variance (Σ(x − mean)²/M) but stores the
//   UNBIASED one (Σ(x − mean)²/(M − 1)) in running_var, M = values per channel;
//   γ (weight) = 1, β (bias) = 0, running_mean = 0, running_var = 1 at construction.
// Keras users: Keras' momentum m_k weights the OLD value, so m_k = 1 − momentum here,
// and its default eps is 1e-3.
//
// Training mode normalises with batch statistics and updates the running statistics;
// inference mode normalises with the running statistics. A training batch with one value
// per channel (M = 1) has no variance and throws, as PyTorch does.
//
// State kept between forward and backward: per-channel mean and inv_std only (O(C)); x̂ is
// recomputed from x in backward. The math and its derivation: eigenet/kernels/batchnorm.hpp.
#pragma once

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eigenet/kernels/batchnorm.hpp"
#include "eigenet/layers/layer.hpp"

namespace eigenet {

/// Where the channels are: dim 1 (PyTorch, channels-first (N, C, ...)) or the last dim
/// (Keras axis=-1, channels-last (N, ..., C)).
enum class ChannelAxis { First, Last };

/// Which variance of a batch the running variance averages.
enum class RunningVariance {
  Unbiased,  // Σ(x − mean)²/(M − 1): PyTorch
  Biased,    // Σ(x − mean)²/M: Keras (it removes TensorFlow's Bessel correction)
};

/// What a training batch (or ghost chunk) with one value per channel does.
enum class SingleValueBatch {
  Throw,            // ValueError, as PyTorch ("Expected more than 1 value per channel")
  UseRunningStats,  // normalise that chunk with the running statistics, leave them unchanged
};

struct BatchNormOptions {
  double eps = 1e-5;  // added to the variance inside the square root
  /// Weight of the NEW batch in the running statistics, in [0, 1]; std::nullopt: a
  /// cumulative average over all batches so far (PyTorch's momentum=None), weight 1/k for
  /// batch k.
  std::optional<double> momentum = 0.1;
  bool affine = true;               // learnable γ and β; without, γ = 1 and β = 0, no parameters
  bool track_running_stats = true;  // without, batch statistics are used in both modes
  ChannelAxis channel_axis = ChannelAxis::First;
  RunningVariance running_variance = RunningVariance::Unbiased;
  /// Ghost batch normalisation: in training, statistics per chunk of this many samples
  /// (0 = off: the whole batch is one chunk). The last chunk may be smaller.
  Index virtual_batch_size = 0;
  SingleValueBatch single_value_batch = SingleValueBatch::Throw;

  /// PyTorch's defaults (BatchNorm1d/2d/3d).
  static BatchNormOptions pytorch() { return {}; }

  /// Keras' BatchNormalization defaults: momentum 0.99 weighting the OLD value (0.01 for
  /// the new batch here), eps 1e-3, channels last, the biased variance in the running
  /// variance.
  static BatchNormOptions keras(double keras_momentum = 0.99, double keras_epsilon = 1e-3) {
    BatchNormOptions options;
    options.momentum = 1.0 - keras_momentum;
    options.eps = keras_epsilon;
    options.channel_axis = ChannelAxis::Last;
    options.running_variance = RunningVariance::Biased;
    return options;
  }
};

template <typename Scalar>
class BatchNorm : public Layer<Scalar> {
 public:
  explicit BatchNorm(Index num_features, BatchNormOptions options = {}) : channels_(num_features), options_(options) {
    if (num_features < 1)
      throw ValueError(detail::concat("BatchNorm: num_features should be at least 1, not ", num_features));
    if (!(options.eps > 0.0) || !std::isfinite(options.eps))
      throw ValueError(detail::concat("BatchNorm: eps should be positive and finite, not ", options.eps));
    if (options.momentum && !(*options.momentum >= 0.0 && *options.momentum <= 1.0))
      throw ValueError(detail::concat("BatchNorm: momentum should be in [0, 1] or none, not ", *options.momentum));
    weight_ = Tensor<Scalar, 1>(channels_);
    weight_.setConstant(Scalar(1));
    bias_ = Tensor<Scalar, 1>(channels_);
    bias_.setZero();
    weight_grad_ = Tensor<Scalar, 1>(channels_);
    weight_grad_.setZero();
    bias_grad_ = Tensor<Scalar, 1>(channels_);
    bias_grad_.setZero();
    running_mean_ = Tensor<Scalar, 1>(channels_);
    running_mean_.setZero();
    running_var_ = Tensor<Scalar, 1>(channels_);
    running_var_.setConstant(Scalar(1));
  }

  std::string name() const override { return detail::concat("BatchNorm(", channels_, ")"); }
  std::unique_ptr<Layer<Scalar>> clone() const override { return std::make_unique<BatchNorm>(*this); }

  Shape output_shape(const Shape& input) const override {
    if (input.size() < 2)
      throw ShapeError(
          detail::concat(name(), ": input should have rank >= 2, (N, C) or (N, C, ...), not shape ", to_string(input)));
    if (input[1] != channels_)
      throw ShapeError(detail::concat(name(), ": input should have ", channels_, " channels (dim 1), not ", input[1],
                                      " (shape ", to_string(input), ")"));
    for (Index extent : input)
      if (extent < 1)
        throw ShapeError(detail::concat(name(), ": input shape ", to_string(input), " has an empty dimension"));
    return input;
  }

  void forward_into(ConstView<Scalar> x, View<Scalar> y) override {
    detail::check_forward_shapes(*this, x, y);
    const auto [samples, spatial] = layout(x.shape);
    if (this->is_training()) {
      const kernels::ChannelStats stats = kernels::channel_stats(x.data, samples, channels_, spatial);
      if (stats.count < 2)
        throw ValueError(detail::concat(name(), ": expected more than 1 value per channel in training mode, got input ",
                                        to_string(x.shape)));
      mean_ = stats.mean;
      inv_std_ = (stats.biased_variance() + options_.eps).rsqrt();
      update_running_stats(stats);
    } else {
      mean_ = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>(running_mean_.data(), channels_)
                  .template cast<double>();
      const Eigen::ArrayXd var =
          Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>(running_var_.data(), channels_)
              .template cast<double>();
      inv_std_ = (var + options_.eps).rsqrt();
    }
    const auto transform = kernels::make_channel_transform<Scalar>(mean_, inv_std_, weight_.data(), bias_.data());
    kernels::apply_channel_transform(x.data, y.data, samples, channels_, spatial, transform);
    cached_shape_ = x.shape;
    cached_training_ = this->is_training();
  }

  void backward_into(ConstView<Scalar> x, ConstView<Scalar> dy, View<Scalar> dx) override {
    detail::check_backward_shapes(*this, x, dy, dx);
    if (cached_shape_.empty()) throw StateError(name() + ": backward called before forward");
    if (x.shape != cached_shape_)
      throw StateError(detail::concat(name(), ": backward expects the input of the last forward, of shape ",
                                      to_string(cached_shape_), ", not ", to_string(x.shape)));
    const auto [samples, spatial] = layout(x.shape);
    const kernels::ChannelGradSums sums =
        kernels::channel_grad_sums(x.data, dy.data, samples, channels_, spatial, mean_);
    for (Index c = 0; c < channels_; ++c) {
      weight_grad_(c) += static_cast<Scalar>(inv_std_[c] * sums.sum_grad_xmean[c]);
      bias_grad_(c) += static_cast<Scalar>(sums.sum_grad[c]);
    }
    if (dx.data == nullptr) return;
    const auto transform = kernels::make_channel_backward<Scalar>(mean_, inv_std_, weight_.data(), sums,
                                                                  samples * spatial, cached_training_);
    kernels::apply_channel_backward(x.data, dy.data, dx.data, samples, channels_, spatial, transform);
  }

  std::vector<Parameter<Scalar>> parameters() override {
    return {{"weight", weight_.data(), weight_grad_.data(), channels_},
            {"bias", bias_.data(), bias_grad_.data(), channels_}};
  }

  Index num_features() const { return channels_; }
  const BatchNormOptions& options() const { return options_; }

  /// γ and β (PyTorch's weight and bias), and their gradients, each (C).
  Tensor<Scalar, 1>& weight() { return weight_; }
  Tensor<Scalar, 1>& bias() { return bias_; }
  const Tensor<Scalar, 1>& weight() const { return weight_; }
  const Tensor<Scalar, 1>& bias() const { return bias_; }
  const Tensor<Scalar, 1>& weight_grad() const { return weight_grad_; }
  const Tensor<Scalar, 1>& bias_grad() const { return bias_grad_; }

  /// Running statistics, each (C); running_var holds the unbiased variance.
  Tensor<Scalar, 1>& running_mean() { return running_mean_; }
  Tensor<Scalar, 1>& running_var() { return running_var_; }
  const Tensor<Scalar, 1>& running_mean() const { return running_mean_; }
  const Tensor<Scalar, 1>& running_var() const { return running_var_; }

  /// How many training batches have updated the running statistics.
  long long num_batches_tracked() const { return batches_tracked_; }

 private:
  struct Layout {
    Index samples, spatial;
  };
  Layout layout(const Shape& shape) const {
    Index spatial = 1;
    for (std::size_t i = 2; i < shape.size(); ++i) spatial *= shape[i];
    return {shape[0], spatial};
  }

  void update_running_stats(const kernels::ChannelStats& stats) {
    const double momentum = options_.momentum ? *options_.momentum : 1.0 / static_cast<double>(batches_tracked_ + 1);
    const Eigen::ArrayXd unbiased = stats.unbiased_variance();
    for (Index c = 0; c < channels_; ++c) {
      running_mean_(c) =
          static_cast<Scalar>((1.0 - momentum) * static_cast<double>(running_mean_(c)) + momentum * stats.mean[c]);
      running_var_(c) =
          static_cast<Scalar>((1.0 - momentum) * static_cast<double>(running_var_(c)) + momentum * unbiased[c]);
    }
    ++batches_tracked_;
  }

  Index channels_;
  BatchNormOptions options_;
  Tensor<Scalar, 1> weight_, bias_, weight_grad_, bias_grad_;  // (C)
  Tensor<Scalar, 1> running_mean_, running_var_;               // (C)
  long long batches_tracked_ = 0;
  // Backward cache, O(C): statistics the last forward normalised with, and its mode.
  Eigen::ArrayXd mean_, inv_std_;  // (C)
  Shape cached_shape_;
  bool cached_training_ = true;
};

}  // namespace eigenet
