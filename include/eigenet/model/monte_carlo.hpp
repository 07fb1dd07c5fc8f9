// eigenet/model/monte_carlo.hpp — Monte-Carlo dropout prediction (Gal & Ghahramani 2016).
//
// monte_carlo_predict(model, x, T) runs T stochastic forward passes of `model` on x with
// every Dropout (and AlphaDropout, Dropout2d, ...) drawing a fresh mask and everything else
// in inference mode (every BatchNorm normalises with its running statistics and updates
// nothing), and returns per output element
//   mean     = (1/T) Σ_t y_t
//   variance = 1/(T − 1) Σ_t (y_t − mean)²      the UNBIASED sample variance (torch.var's
//                                               default, correction 1); so T >= 2.
// Both are accumulated in double (Welford's update) and rounded to Scalar once.
//
// Modes: the model is put in inference mode and every Dropout in it — also inside nested
// Sequentials — in Monte-Carlo mode for the duration; afterwards every layer's previous
// mode and Monte-Carlo flag are restored, also when a pass throws. The passes advance each
// Dropout's step (T steps, as T training forwards would), so the result is a pure function
// of the seeds and steps at the call, and later training draws fresh masks. The model's
// backward cache is that of the last pass.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "eigenet/layers/dropout.hpp"
#include "eigenet/layers/layer.hpp"
#include "eigenet/model/sequential.hpp"

namespace eigenet {

template <typename Scalar, int Rank>
struct MonteCarloPrediction {
  Tensor<Scalar, Rank> mean;      // per output element, the shape of model.forward(x)
  Tensor<Scalar, Rank> variance;  // unbiased (divides by passes − 1)
  int passes = 0;
};

namespace detail {

/// Every layer of a tree of Sequentials in pre-order, with the mode it had, and the
/// Monte-Carlo flag of each Dropout; restores them on destruction.
template <typename Scalar>
class ModeSnapshot {
 public:
  explicit ModeSnapshot(Layer<Scalar>& root) { visit(root); }
  ModeSnapshot(const ModeSnapshot&) = delete;
  ModeSnapshot& operator=(const ModeSnapshot&) = delete;

  ~ModeSnapshot() {
    // Pre-order: a Sequential's set_training reaches its children, which are restored after it.
    for (const auto& [layer, training] : modes_) layer->set_training(training);
    for (const auto& [dropout, monte_carlo] : flags_) dropout->set_monte_carlo(monte_carlo);
  }

  const std::vector<std::pair<Dropout<Scalar>*, bool>>& dropouts() const { return flags_; }

 private:
  void visit(Layer<Scalar>& layer) {
    modes_.emplace_back(&layer, layer.is_training());
    if (auto* dropout = dynamic_cast<Dropout<Scalar>*>(&layer)) flags_.emplace_back(dropout, dropout->is_monte_carlo());
    if (auto* sequential = dynamic_cast<Sequential<Scalar>*>(&layer))
      for (std::size_t i = 0; i < sequential->size(); ++i) visit((*sequential)[i]);
  }

  std::vector<std::pair<Layer<Scalar>*, bool>> modes_;
  std::vector<std::pair<Dropout<Scalar>*, bool>> flags_;
};

}  // namespace detail

/// T = `passes` Monte-Carlo dropout passes of `model` (a Sequential, or any layer) on x.
/// Throws ValueError unless passes >= 2; shape errors as model.forward(x).
template <typename Scalar, typename Input>
MonteCarloPrediction<Scalar, Input::NumDimensions> monte_carlo_predict(Layer<Scalar>& model, const Input& x,
                                                                       int passes) {
  static_assert(std::is_same_v<typename Input::Scalar, Scalar>, "input scalar type differs from the model's");
  constexpr int Rank = Input::NumDimensions;
  if (passes < 2)
    throw ValueError(
        detail::concat("monte_carlo_predict: passes should be at least 2 (the unbiased variance divides "
                       "by passes - 1), not ",
                       passes));
  const ConstView<Scalar> in = detail::view_of(x);
  const Shape out_shape = model.output_shape(in.shape);
  MonteCarloPrediction<Scalar, Rank> result{detail::make_tensor<Scalar, Rank>(out_shape),
                                            detail::make_tensor<Scalar, Rank>(out_shape), passes};
  const auto count = static_cast<std::size_t>(element_count(out_shape));
  std::vector<Scalar> y(count);
  std::vector<double> mean(count, 0.0), sum_squares(count, 0.0);  // Welford: running mean, Σ(y − mean)²

  {
    const detail::ModeSnapshot<Scalar> snapshot(model);
    model.eval();
    for (const auto& entry : snapshot.dropouts()) entry.first->set_monte_carlo(true);
    for (int t = 1; t <= passes; ++t) {
      model.forward_into(in, {y.data(), out_shape});
      const double weight = 1.0 / static_cast<double>(t);
      for (std::size_t i = 0; i < count; ++i) {
        const double value = static_cast<double>(y[i]);
        const double delta = value - mean[i];
        mean[i] += delta * weight;
        sum_squares[i] += delta * (value - mean[i]);
      }
    }
  }
  const double correction = 1.0 / static_cast<double>(passes - 1);
  for (std::size_t i = 0; i < count; ++i) {
    result.mean.data()[i] = static_cast<Scalar>(mean[i]);
    result.variance.data()[i] = static_cast<Scalar>(sum_squares[i] * correction);
  }
  return result;
}

}  // namespace eigenet
