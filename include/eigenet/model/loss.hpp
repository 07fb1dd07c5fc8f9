// eigenet/model/loss.hpp — softmax cross-entropy on logits with integer class labels.
//
//   logits z (N, K), labels t (N) in [0, K)
//   loss = (1/N) Σ_n [ logsumexp(z_n) − z_{n, t_n} ]         (PyTorch's CrossEntropyLoss,
//                                                                reduction="mean")
//   ∂loss/∂z_{n,k} = (softmax(z_n)_k − [k = t_n]) / N
// The batch average is applied here, once; layers never divide by N.
// Stable for any finite logits: logsumexp(z) = m + log Σ exp(z − m) with m = max z, in
// double, so no exp overflows and the log never sees 0 (the max term contributes 1).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "eigenet/tensor.hpp"

namespace eigenet {

template <typename Scalar>
class SoftmaxCrossEntropy {
 public:
  /// The mean loss over the batch; keeps softmax(logits) and the labels for backward.
  double forward(ConstView<Scalar> logits, const std::int64_t* labels, Index label_count) {
    if (logits.rank() != 2 || logits.shape[0] < 1 || logits.shape[1] < 1)
      throw ShapeError(detail::concat("SoftmaxCrossEntropy: logits should have shape (N, K) with N, K >= 1, not ",
                                      to_string(logits.shape)));
    const Index n = logits.shape[0], k = logits.shape[1];
    if (label_count != n)
      throw ShapeError(detail::concat("SoftmaxCrossEntropy: expected ", n, " labels (one per row of logits ",
                                      to_string(logits.shape), "), not ", label_count));
    for (Index i = 0; i < n; ++i)
      if (labels[i] < 0 || labels[i] >= k)
        throw ValueError(
            detail::concat("SoftmaxCrossEntropy: label ", labels[i], " at position ", i, " is outside [0, ", k, ")"));
    // Checked before any state changes, so a forward that throws leaves backward the last
    // good forward. NaN is looked for in every logit (std::max skips one that is not first);
    // −inf is allowed (a masked class) as long as the row's max is finite.
    for (Index i = 0; i < n; ++i) {
      const Scalar* row = logits.data + i * k;
      double max_logit = static_cast<double>(row[0]);
      bool has_nan = false;
      for (Index j = 0; j < k; ++j) {
        has_nan = has_nan || std::isnan(row[j]);
        max_logit = std::max(max_logit, static_cast<double>(row[j]));
      }
      if (has_nan || !std::isfinite(max_logit))
        throw ValueError(detail::concat("SoftmaxCrossEntropy: row ", i,
                                        " of the logits is not finite (it holds NaN or +inf, or only -inf)"));
    }
    probabilities_ = Tensor<Scalar, 2>(n, k);
    labels_.assign(labels, labels + n);
    double total = 0.0;
    for (Index i = 0; i < n; ++i) {
      const Scalar* row = logits.data + i * k;
      double max_logit = static_cast<double>(row[0]);
      for (Index j = 1; j < k; ++j) max_logit = std::max(max_logit, static_cast<double>(row[j]));
      double sum = 0.0;
      for (Index j = 0; j < k; ++j) sum += std::exp(static_cast<double>(row[j]) - max_logit);
      const double log_sum = std::log(sum);
      for (Index j = 0; j < k; ++j)
        probabilities_(i, j) = static_cast<Scalar>(std::exp(static_cast<double>(row[j]) - max_logit - log_sum));
      total += max_logit + log_sum - static_cast<double>(row[labels[i]]);
    }
    return total / static_cast<double>(n);
  }

  template <typename Logits>
  double forward(const Logits& logits, const std::vector<std::int64_t>& labels) {
    return forward(detail::view_of(logits), labels.data(), static_cast<Index>(labels.size()));
  }

  /// ∂loss/∂logits of the last forward, (N, K).
  Tensor<Scalar, 2> backward() const {
    if (labels_.empty()) throw StateError("SoftmaxCrossEntropy: backward called before forward");
    Tensor<Scalar, 2> grad = probabilities_;
    backward_into({grad.data(), detail::shape_of(grad)});
    return grad;
  }

  void backward_into(View<Scalar> grad) const {
    if (labels_.empty()) throw StateError("SoftmaxCrossEntropy: backward called before forward");
    const Index n = probabilities_.dimension(0), k = probabilities_.dimension(1);
    if (grad.shape != Shape{n, k})
      throw ShapeError(detail::concat("SoftmaxCrossEntropy: gradient should have shape ", to_string(Shape{n, k}),
                                      ", not ", to_string(grad.shape)));
    const Scalar inv_n = Scalar(1) / static_cast<Scalar>(n);
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < k; ++j)
        grad.data[i * k + j] =
            (probabilities_(i, j) - (j == labels_[static_cast<std::size_t>(i)] ? Scalar(1) : Scalar(0))) * inv_n;
  }

  /// softmax(logits) of the last forward, (N, K).
  const Tensor<Scalar, 2>& probabilities() const { return probabilities_; }

 private:
  Tensor<Scalar, 2> probabilities_;
  std::vector<std::int64_t> labels_;
};

/// The index of the largest logit of each row of (N, K) logits (the first one on ties).
template <typename Scalar>
std::vector<std::int64_t> argmax_rows(ConstView<Scalar> logits) {
  if (logits.rank() != 2 || logits.shape[1] < 1)
    throw ShapeError(detail::concat("argmax_rows: logits should be (N, K) with K >= 1, not ", to_string(logits.shape)));
  const Index n = logits.shape[0], k = logits.shape[1];
  std::vector<std::int64_t> out(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const Scalar* row = logits.data + i * k;
    Index best = 0;
    for (Index j = 1; j < k; ++j)
      if (row[j] > row[best]) best = j;
    out[static_cast<std::size_t>(i)] = best;
  }
  return out;
}

}  // namespace eigenet
