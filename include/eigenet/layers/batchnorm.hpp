// eigenet/layers/batchnorm.hpp — BatchNorm over inputs of rank 2 to 5 (and beyond), with
// the channels on dim 1 (PyTorch: (N, C), (N, C, L), (N, C, H, W), (N, C, D, H, W)) or on
// the last dim (Keras axis=-1: (N, ..., C)).
//
// PyTorch's BatchNorm1d/2d/3d semantics and defaults:
//   eps = 1e-5 inside the square root; momentum = 0.1 weighting the NEW batch:
//     running_mean ← (1 − momentum) · running_mean + momentum · batch_mean
//     running_var  ← (1 − momentum) · running_var  + momentum · batch_var_unbiased
//   momentum = none: a cumulative average, momentum = 1/k for the k-th batch;
//   training normalises with the BIASED batch variance (Σ(x − mean)²/M) but stores the
//   UNBIASED one (Σ(x − mean)²/(M − 1)) in running_var, M = values per channel;
//   γ (weight) = 1, β (bias) = 0, running_mean = 0, running_var = 1 at construction.
// Keras (BatchNormOptions::keras()): its momentum m_k weights the OLD value, so
// momentum = 1 − m_k here; eps 1e-3; channels last; the BIASED variance in the running
// variance. The full table: docs/batchnorm.md.
//
// Which statistics a forward normalises with:
//   training, not frozen           batch statistics (per ghost chunk), running ones updated
//   inference, or frozen           running statistics, nothing updated
//   track_running_stats = false    batch statistics in every mode (as PyTorch), no running state
// A training chunk with one value per channel (M = 1) has no variance: by default it throws,
// as PyTorch does (SingleValueBatch::Throw); SingleValueBatch::UseRunningStats normalises
// that chunk with the running statistics instead.
//
// Frozen (freeze()): the layer behaves as in inference whatever train()/eval() a parent
// passes down; with freeze(true) γ and β are held fixed as well (backward adds nothing to
// their gradients, optimisers skip them). unfreeze() returns it to the parent's mode.
//
// Ghost batch normalisation (virtual_batch_size = V > 0): in training, the batch is split
// into chunks of V samples (the last may be smaller) and each chunk is normalised with its
// own statistics; the running statistics are updated once per chunk, in order, as if the
// chunks had come as separate batches (Hoffer et al. 2017; Keras instead averages the chunk
// statistics into one update). Inference uses the running statistics, so its output does
// not depend on the batch size.
//
// State kept between forward and backward: per chunk, the per-channel mean and inv_std only
// (O(C · chunks)); x̂ is recomputed from x in backward. The math and its derivation:
// eigenet/kernels/batchnorm.hpp and docs/batchnorm.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
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
    if (!(keras_momentum >= 0.0 && keras_momentum <= 1.0))
      throw ValueError(
          detail::concat("BatchNormOptions::keras: momentum (Keras' weight of the old value) should be in ",
                         "[0, 1], not ", keras_momentum));
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
  /// The smallest eps accepted (PyTorch's default is 1e-5, Keras' 1e-3).
  static constexpr double kMinEps = 1e-30;

  explicit BatchNorm(Index num_features, BatchNormOptions options = {}) : channels_(num_features), options_(options) {
    if (num_features < 1)
      throw ValueError(detail::concat("BatchNorm: num_features should be at least 1, not ", num_features));
    // Below ~1e-30, 1/sqrt(var + eps) of a constant channel (var = 0) overflows float, and
    // its cube (in backward) overflows double: the output would be 0 · inf = NaN.
    if (!(options.eps >= kMinEps) || !std::isfinite(options.eps))
      throw ValueError(detail::concat("BatchNorm: eps should be finite and at least ", kMinEps, ", not ", options.eps));
    if (options.momentum && !(*options.momentum >= 0.0 && *options.momentum <= 1.0))
      throw ValueError(detail::concat("BatchNorm: momentum should be in [0, 1] or none, not ", *options.momentum));
    if (options.virtual_batch_size < 0)
      throw ValueError(detail::concat("BatchNorm: virtual_batch_size should be 0 (off) or positive, not ",
                                      options.virtual_batch_size));
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
    const bool last = options_.channel_axis == ChannelAxis::Last;
    if (input.size() < 2)
      throw ShapeError(detail::concat(name(), ": input should have rank >= 2, ",
                                      last ? "(N, C) or (N, ..., C)" : "(N, C) or (N, C, ...)", ", not shape ",
                                      to_string(input)));
    const std::size_t axis = last ? input.size() - 1 : 1;
    if (input[axis] != channels_)
      throw ShapeError(detail::concat(name(), ": input should have ", channels_, " channels (dim ", axis, ", ",
                                      last ? "channels last" : "channels first", "), not ", input[axis], " (shape ",
                                      to_string(input), ")"));
    for (Index extent : input)
      if (extent < 1)
        throw ShapeError(detail::concat(name(), ": input shape ", to_string(input), " has an empty dimension"));
    return input;
  }

  void forward_into(ConstView<Scalar> x, View<Scalar> y) override {
    this->last_input_.reset();
    detail::check_forward_shapes(*this, x, y);
    const Layout layout = layout_of(x.shape);
    const bool batch_stats = uses_batch_statistics();
    const bool update = batch_stats && this->is_training() && options_.track_running_stats && !frozen_;
    const Index chunk_samples = batch_stats && this->is_training() && options_.virtual_batch_size > 0
                                    ? options_.virtual_batch_size
                                    : layout.samples;
    std::vector<Chunk> chunks;
    for (Index begin = 0; begin < layout.samples; begin += chunk_samples)
      chunks.push_back(plan_chunk(x, layout, begin, std::min(layout.samples, begin + chunk_samples), batch_stats));
    if (std::any_of(chunks.begin(), chunks.end(), [](const Chunk& chunk) { return !chunk.batch_stats; }))
      check_running_stats();
    // Every check has passed: only now do the running statistics change (a forward that
    // throws leaves them as they were; backward then refuses until a forward succeeds).
    for (Chunk& chunk : chunks) {
      if (update && chunk.batch_stats) update_running_stats(chunk.stats);
      if (!chunk.batch_stats) running_normalisation(chunk);
      const auto transform =
          kernels::make_channel_transform<Scalar>(chunk.mean, chunk.inv_std, affine_weight(), affine_bias());
      kernels::apply_channel_transform(x.data + chunk.offset, y.data + chunk.offset, chunk.rows, channels_,
                                       layout.spatial, transform);
      chunk.stats = {};  // the cache keeps mean and inv_std only
    }
    chunks_ = std::move(chunks);
    this->last_input_ = x.shape;
  }

  void backward_into(ConstView<Scalar> x, ConstView<Scalar> dy, View<Scalar> dx) override {
    detail::check_backward_shapes(*this, x, dy, dx);
    detail::check_follows_forward(*this, this->last_input_, x);
    const Layout layout = layout_of(x.shape);
    for (const Chunk& chunk : chunks_) {
      const kernels::ChannelGradSums sums = kernels::channel_grad_sums(
          x.data + chunk.offset, dy.data + chunk.offset, chunk.rows, channels_, layout.spatial, chunk.mean);
      if (options_.affine && !affine_frozen_) {
        for (Index c = 0; c < channels_; ++c) {
          weight_grad_(c) += static_cast<Scalar>(chunk.inv_std[c] * sums.sum_grad_xmean[c]);
          bias_grad_(c) += static_cast<Scalar>(sums.sum_grad[c]);
        }
      }
      if (dx.data == nullptr) continue;
      const auto transform = kernels::make_channel_backward<Scalar>(chunk.mean, chunk.inv_std, affine_weight(), sums,
                                                                    chunk.rows * layout.spatial, chunk.batch_stats);
      kernels::apply_channel_backward(x.data + chunk.offset, dy.data + chunk.offset, dx.data + chunk.offset, chunk.rows,
                                      channels_, layout.spatial, transform);
    }
  }

  /// γ and β ("weight", "bias"), unless the layer was made without affine parameters.
  std::vector<Parameter<Scalar>> parameters() override {
    if (!options_.affine) return {};
    return {{"weight", weight_.data(), weight_grad_.data(), channels_, &affine_frozen_},
            {"bias", bias_.data(), bias_grad_.data(), channels_, &affine_frozen_}};
  }

  /// Normalise with the running statistics and leave them unchanged, whatever mode a parent
  /// sets; with `freeze_affine`, γ and β are held fixed too. Requires running statistics.
  void freeze(bool freeze_affine = true) {
    if (!options_.track_running_stats)
      throw StateError(name() + ": cannot be frozen: it tracks no running statistics (track_running_stats = false)");
    frozen_ = true;
    affine_frozen_ = freeze_affine;
  }
  void unfreeze() { frozen_ = affine_frozen_ = false; }
  bool is_frozen() const { return frozen_; }
  bool is_affine_frozen() const { return affine_frozen_; }

  /// Whether the next forward normalises with batch statistics (else running statistics).
  bool uses_batch_statistics() const { return !options_.track_running_stats || (this->is_training() && !frozen_); }

  Index num_features() const { return channels_; }
  const BatchNormOptions& options() const { return options_; }

  /// γ and β (PyTorch's weight and bias), and their gradients, each (C). Without affine
  /// parameters they stay 1 and 0 and are not used.
  FixedShapeRef<Scalar, 1> weight() { return {weight_, *this, "weight"}; }
  FixedShapeRef<Scalar, 1> bias() { return {bias_, *this, "bias"}; }
  const Tensor<Scalar, 1>& weight() const { return weight_; }
  const Tensor<Scalar, 1>& bias() const { return bias_; }
  const Tensor<Scalar, 1>& weight_grad() const { return weight_grad_; }
  const Tensor<Scalar, 1>& bias_grad() const { return bias_grad_; }

  /// Running statistics, each (C); running_var holds the unbiased variance (the biased one
  /// with RunningVariance::Biased). Unused when track_running_stats is false.
  FixedShapeRef<Scalar, 1> running_mean() { return {running_mean_, *this, "running_mean"}; }
  FixedShapeRef<Scalar, 1> running_var() { return {running_var_, *this, "running_var"}; }
  const Tensor<Scalar, 1>& running_mean() const { return running_mean_; }
  const Tensor<Scalar, 1>& running_var() const { return running_var_; }

  /// How many training batches (ghost chunks, with virtual_batch_size) have updated the
  /// running statistics; with momentum none, batch k is weighted 1/k.
  long long num_batches_tracked() const { return batches_tracked_; }

 private:
  // The input seen as (samples, rows per sample, C, S): channels first (N, C, S...) has one
  // row of C·S values per sample; channels last (N, d..., C) has prod(d) rows of C values.
  struct Layout {
    Index samples, rows_per_sample, spatial;
  };
  Layout layout_of(const Shape& shape) const {
    Index middle = 1;
    for (std::size_t i = (options_.channel_axis == ChannelAxis::Last ? 1 : 2);
         i + (options_.channel_axis == ChannelAxis::Last ? 1 : 0) < shape.size(); ++i)
      middle *= shape[i];
    if (options_.channel_axis == ChannelAxis::Last) return {shape[0], middle, 1};
    return {shape[0], 1, middle};
  }

  // One chunk of samples normalised with one set of statistics (the whole batch, or one
  // ghost batch).
  struct Chunk {
    Index offset = 0;  // first element
    Index rows = 0;    // kernel rows (samples × rows per sample)
    bool batch_stats = true;
    kernels::ChannelStats stats;   // batch statistics (before the update), dropped after forward
    Eigen::ArrayXd mean, inv_std;  // (C): what the chunk was normalised with
  };

  Chunk plan_chunk(const ConstView<Scalar>& x, const Layout& layout, Index begin, Index end, bool batch_stats) const {
    Chunk chunk;
    chunk.offset = begin * layout.rows_per_sample * channels_ * layout.spatial;
    chunk.rows = (end - begin) * layout.rows_per_sample;
    chunk.batch_stats = batch_stats;
    if (!batch_stats) return chunk;
    if (chunk.rows * layout.spatial < 2) {
      if (options_.single_value_batch == SingleValueBatch::Throw || !options_.track_running_stats)
        throw ValueError(detail::concat(
            name(), ": expected more than 1 value per channel to compute batch statistics (",
            options_.track_running_stats ? "training mode" : "track_running_stats = false", "), got input ",
            to_string(x.shape),
            options_.virtual_batch_size > 0 ? detail::concat(" (ghost batch of samples ", begin, "..", end - 1, ")")
                                            : std::string()));
      chunk.batch_stats = false;
      return chunk;
    }
    chunk.stats = kernels::channel_stats(x.data + chunk.offset, chunk.rows, channels_, layout.spatial);
    // One NaN or inf in the input makes its channel's statistics non-finite; caught here,
    // before the running statistics absorb it (they would stay NaN for good).
    for (Index c = 0; c < channels_; ++c)
      if (!std::isfinite(chunk.stats.mean[c]) || !std::isfinite(chunk.stats.sq_dev[c]))
        throw ValueError(detail::concat(name(), ": the batch statistics of channel ", c, " are not finite (mean ",
                                        chunk.stats.mean[c], ", variance ", chunk.stats.biased_variance()[c],
                                        "): the input ", to_string(x.shape), " holds NaN or infinite values"));
    if (options_.track_running_stats) check_storable(chunk.stats, x.shape);
    chunk.mean = chunk.stats.mean;
    chunk.inv_std = (chunk.stats.biased_variance() + options_.eps).rsqrt();
    return chunk;
  }

  void running_normalisation(Chunk& chunk) const {
    using ConstArray = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
    chunk.mean = ConstArray(running_mean_.data(), channels_).template cast<double>();
    chunk.inv_std = (ConstArray(running_var_.data(), channels_).template cast<double>() + options_.eps).rsqrt();
  }

  /// The running statistics are stored in Scalar: a batch whose variance exceeds float's
  /// range (values spread over ~2e19) would turn them into inf. Refused before any update.
  void check_storable(const kernels::ChannelStats& stats, const Shape& shape) const {
    const Eigen::ArrayXd variance = running_variance_of(stats);
    constexpr double kLargest = static_cast<double>(std::numeric_limits<Scalar>::max());
    for (Index c = 0; c < channels_; ++c)
      if (std::abs(stats.mean[c]) > kLargest || variance[c] > kLargest)
        throw ValueError(detail::concat(name(), ": the batch mean ", stats.mean[c], " or variance ", variance[c],
                                        " of channel ", c, " (input ", to_string(shape), ") overflows the ",
                                        sizeof(Scalar) == 4 ? "float" : "Scalar",
                                        " running statistics; inputs of this magnitude need BatchNorm<double>"));
  }

  Eigen::ArrayXd running_variance_of(const kernels::ChannelStats& stats) const {
    return options_.running_variance == RunningVariance::Unbiased ? stats.unbiased_variance() : stats.biased_variance();
  }

  /// Running statistics a user or a checkpoint set must still normalise to finite values.
  void check_running_stats() const {
    for (Index c = 0; c < channels_; ++c) {
      const auto mean = static_cast<double>(running_mean_(c)), var = static_cast<double>(running_var_(c));
      if (!std::isfinite(mean) || !std::isfinite(var) || !(var + options_.eps > 0.0))
        throw StateError(detail::concat(name(), ": running statistics of channel ", c, " cannot normalise (mean ", mean,
                                        ", variance ", var, "); the running variance must be finite and > -eps"));
    }
  }

  const Scalar* affine_weight() const { return options_.affine ? weight_.data() : nullptr; }
  const Scalar* affine_bias() const { return options_.affine ? bias_.data() : nullptr; }

  void update_running_stats(const kernels::ChannelStats& stats) {
    const double momentum = options_.momentum ? *options_.momentum : 1.0 / static_cast<double>(batches_tracked_ + 1);
    const Eigen::ArrayXd variance = running_variance_of(stats);
    for (Index c = 0; c < channels_; ++c) {
      running_mean_(c) =
          static_cast<Scalar>((1.0 - momentum) * static_cast<double>(running_mean_(c)) + momentum * stats.mean[c]);
      running_var_(c) =
          static_cast<Scalar>((1.0 - momentum) * static_cast<double>(running_var_(c)) + momentum * variance[c]);
    }
    ++batches_tracked_;
  }

  Index channels_;
  BatchNormOptions options_;
  Tensor<Scalar, 1> weight_, bias_, weight_grad_, bias_grad_;  // (C)
  Tensor<Scalar, 1> running_mean_, running_var_;               // (C)
  long long batches_tracked_ = 0;
  bool frozen_ = false;
  bool affine_frozen_ = false;  // Parameter::frozen of γ and β points here
  // Backward cache: the chunks of the last forward, O(C) each, and its input shape.
  std::vector<Chunk> chunks_;
};

}  // namespace eigenet
