// eigenet/model/fold.hpp — folding a Dense followed by an inference-mode BatchNorm into one
// Dense, for deployment (PyTorch: torch.nn.utils.fusion.fuse_linear_bn_eval).
//
// In inference a BatchNorm is a per-channel affine map of the Dense's output y = x·Wᵀ + b:
//   s  = γ / √(running_var + eps)                       (C)
//   z  = (y − running_mean) · s + β
//      = x · (diag(s) · W)ᵀ + ((b − running_mean) · s + β)
// so the pair is one Dense with
//   W' = diag(s) · W            (out, in): row o of W scaled by s_o
//   b' = (b − running_mean) · s + β        (out)
// Without affine parameters (BatchNormOptions::affine false) γ = 1 and β = 0. W' and b' are
// computed in double from the Scalar parameters and rounded to Scalar once (also when one
// Dense absorbs several BatchNorms in a row), so in float the folded output differs from the
// pair's only by float rounding. The channel axis does not matter: on the rank-2 output of a
// Dense, channels first and channels last are both dim 1. momentum, virtual_batch_size,
// running_variance and a frozen state only change training, so they do not matter either.
//
// What can be folded: a BatchNorm that tracks running statistics. One with
// track_running_stats = false normalises with the statistics of each batch in every mode,
// so it is not a fixed affine map: fold_dense_batchnorm throws StateError for it, and
// fold_batchnorm keeps such a pair as it is (a copy of both layers), or throws with
// UnfoldablePair::Throw. Folding reads the running statistics whatever mode the BatchNorm
// is in: the folded Dense reproduces the pair in inference mode.
//
// fold_batchnorm never changes its argument: the original model, with all its BatchNorm
// state, keeps training; the folded model shares nothing with it. Only layers whose dynamic
// type is exactly Dense<Scalar>, BatchNorm<Scalar> or Sequential<Scalar> are looked into
// (a subclass may behave differently, so it is copied with clone() like any other layer).
// A Dense is folded with the BatchNorms that follow it directly in the same Sequential; a
// BatchNorm before a Dense, or across the boundary of a nested Sequential, is not folded.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <memory>
#include <string>
#include <typeinfo>

#include "eigenet/layers/batchnorm.hpp"
#include "eigenet/layers/dense.hpp"
#include "eigenet/model/sequential.hpp"

namespace eigenet {

/// What fold_batchnorm does with a Dense followed by a BatchNorm that cannot be folded (one
/// without running statistics).
enum class UnfoldablePair {
  Keep,   // copy both layers into the folded model unchanged
  Throw,  // throw StateError naming the layer
};

struct FoldOptions {
  UnfoldablePair unfoldable = UnfoldablePair::Keep;
};

/// Whether a BatchNorm is a fixed affine map in inference, so that it can be folded.
template <typename Scalar>
bool can_fold(const BatchNorm<Scalar>& bn) {
  return bn.options().track_running_stats;
}

namespace detail {

/// A Dense's weight and bias held in double while BatchNorms are folded into them.
struct FoldedAffine {
  Eigen::MatrixXd weight;  // (out, in)
  Eigen::VectorXd bias;    // (out)
};

template <typename Scalar>
FoldedAffine affine_of(const Dense<Scalar>& dense) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  const Index out = dense.out_features(), in = dense.in_features();
  return {Eigen::Map<const Matrix>(dense.weight().data(), out, in).template cast<double>(),
          Eigen::Map<const Vector>(dense.bias().data(), out).template cast<double>()};
}

/// Throws unless the BatchNorm has one channel per output of the Dense.
template <typename Scalar>
void check_width(const FoldedAffine& affine, const std::string& dense_name, const BatchNorm<Scalar>& bn,
                 const std::string& where) {
  if (affine.bias.size() != bn.num_features())
    throw ShapeError(concat(where, "cannot fold ", bn.name(), " into ", dense_name, ": the BatchNorm has ",
                            bn.num_features(), " channels, the Dense ", affine.bias.size(), " out_features"));
}

/// Applies one BatchNorm's inference transform to `affine`; `where` prefixes the messages.
/// Checks everything before it changes anything.
template <typename Scalar>
void fold_into(FoldedAffine& affine, const std::string& dense_name, const BatchNorm<Scalar>& bn,
               const std::string& where) {
  check_width(affine, dense_name, bn, where);
  const Index channels = bn.num_features();
  if (!can_fold(bn))
    throw StateError(concat(where, "cannot fold ", bn.name(), " into ", dense_name,
                            ": it tracks no running statistics (track_running_stats = false), so it normalises with "
                            "batch statistics also in inference"));
  const bool affine_bn = bn.options().affine;
  Eigen::VectorXd scale(channels), mean(channels), beta(channels);
  for (Index c = 0; c < channels; ++c) {
    mean[c] = static_cast<double>(bn.running_mean()(c));
    const double var = static_cast<double>(bn.running_var()(c));
    const double gamma = affine_bn ? static_cast<double>(bn.weight()(c)) : 1.0;
    beta[c] = affine_bn ? static_cast<double>(bn.bias()(c)) : 0.0;
    if (!std::isfinite(mean[c]) || !std::isfinite(var) || !(var + bn.options().eps > 0.0))
      throw ValueError(concat(where, "cannot fold ", bn.name(), ": channel ", c, " has running_mean ", mean[c],
                              " and running_var ", var, "; running_var + eps should be positive and both finite"));
    if (!std::isfinite(gamma) || !std::isfinite(beta[c]))
      throw ValueError(concat(where, "cannot fold ", bn.name(), ": channel ", c, " has weight (gamma) ", gamma,
                              " and bias (beta) ", beta[c], ", which should be finite"));
    scale[c] = gamma / std::sqrt(var + bn.options().eps);
  }
  affine.weight = scale.asDiagonal() * affine.weight;             // W' = diag(s)·W
  affine.bias = (affine.bias - mean).cwiseProduct(scale) + beta;  // b' = (b − running_mean)·s + β
}

/// The Dense holding `affine` rounded to Scalar, in inference mode, gradients zero.
template <typename Scalar>
Dense<Scalar> dense_of(const FoldedAffine& affine, const std::string& where) {
  const Index out = affine.weight.rows(), in = affine.weight.cols();
  Dense<Scalar> dense(in, out);
  for (Index o = 0; o < out; ++o) {
    for (Index i = 0; i < in; ++i) dense.weight()(o, i) = static_cast<Scalar>(affine.weight(o, i));
    dense.bias()(o) = static_cast<Scalar>(affine.bias(o));
  }
  for (Index k = 0; k < dense.weight().size(); ++k)
    if (!std::isfinite(dense.weight().data()[k]))
      throw ValueError(concat(where, "folding gives a weight that is not finite in this precision (row ", k / in,
                              ", column ", k % in, ": ", affine.weight(k / in, k % in), ")"));
  for (Index o = 0; o < out; ++o)
    if (!std::isfinite(dense.bias()(o)))
      throw ValueError(concat(where, "folding gives a bias that is not finite in this precision (element ", o, ": ",
                              affine.bias(o), ")"));
  dense.eval();
  return dense;
}

template <typename Scalar>
Sequential<Scalar> fold_batchnorm(const Sequential<Scalar>& model, const FoldOptions& options,
                                  const std::string& where) {
  Sequential<Scalar> folded;
  for (std::size_t i = 0; i < model.size();) {
    const Layer<Scalar>& layer = model[i];
    const std::string here = concat(where, "Sequential layer ", i, ": ");
    if (typeid(layer) == typeid(Sequential<Scalar>)) {
      folded.add(std::make_unique<Sequential<Scalar>>(
          fold_batchnorm(static_cast<const Sequential<Scalar>&>(layer), options, here)));
      ++i;
      continue;
    }
    if (typeid(layer) != typeid(Dense<Scalar>)) {
      folded.add(layer.clone());
      ++i;
      continue;
    }
    const auto& dense = static_cast<const Dense<Scalar>&>(layer);
    FoldedAffine affine = affine_of(dense);
    std::size_t next = i + 1;
    for (; next < model.size() && typeid(model[next]) == typeid(BatchNorm<Scalar>); ++next) {
      const auto& bn = static_cast<const BatchNorm<Scalar>&>(model[next]);
      const std::string pair = concat(where, "Sequential layers ", i, "..", next, ": ");
      check_width(affine, dense.name(), bn, pair);  // a model that cannot run: never copied silently
      if (!can_fold(bn) && options.unfoldable == UnfoldablePair::Keep) break;
      fold_into(affine, dense.name(), bn, pair);
    }
    if (next == i + 1)
      folded.add(layer.clone());
    else
      folded.add(std::make_unique<Dense<Scalar>>(dense_of<Scalar>(affine, here)));
    i = next;
  }
  folded.eval();
  return folded;
}

}  // namespace detail

/// The Dense whose output equals dense followed by bn in inference mode (see the header
/// comment for the formula), in inference mode with zero gradients. Neither argument
/// changes. Throws ShapeError if bn.num_features() != dense.out_features(), StateError if bn
/// tracks no running statistics, ValueError if its state is not finite (or running_var +
/// eps is not positive) or a folded value overflows Scalar.
template <typename Scalar>
Dense<Scalar> fold_dense_batchnorm(const Dense<Scalar>& dense, const BatchNorm<Scalar>& bn) {
  detail::FoldedAffine affine = detail::affine_of(dense);
  detail::fold_into(affine, dense.name(), bn, "fold_dense_batchnorm: ");
  return detail::dense_of<Scalar>(affine, "fold_dense_batchnorm: ");
}

/// A new model, in inference mode, in which every Dense directly followed by one or more
/// foldable BatchNorms is one folded Dense; every other layer is a deep copy (clone()),
/// and nested Sequentials are folded the same way. `model` does not change and shares
/// nothing with the result. Exceptions as fold_dense_batchnorm, their message prefixed with
/// the layers' positions ("Sequential layers 3..4: "); a BatchNorm without running
/// statistics after a Dense is kept (UnfoldablePair::Keep) or throws (::Throw).
template <typename Scalar>
Sequential<Scalar> fold_batchnorm(const Sequential<Scalar>& model, const FoldOptions& options = {}) {
  return detail::fold_batchnorm(model, options, "fold_batchnorm: ");
}

}  // namespace eigenet
