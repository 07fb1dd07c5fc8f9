// eigenet/kernels/batchnorm.hpp — the math of batch normalisation, with no state.
//
// Every kernel sees its tensor as (N, C, S), row-major: N samples, C channels and S values
// per channel and sample (S = H·W for (N, C, H, W); S = 1 for (N, C)). Per channel c the
// statistics run over the M = N·S values x[n, c, s].
//
// Training forward (PyTorch semantics):
//   mean_c = Σ x / M,   var_c = Σ (x − mean_c)² / M          (biased: used to normalise)
//   inv_std_c = 1 / sqrt(var_c + eps),   x̂ = (x − mean_c) · inv_std_c,   y = γ_c x̂ + β_c
// Inference forward: the same with the running mean and running variance.
//
// Normalise and affine fold into one transform per channel,
//   y = (x − shift_c) · scale_c + offset_c,
//   shift_c = (Scalar) mean_c,  scale_c = γ_c inv_std_c,  offset_c = β_c − (mean_c − shift_c) · scale_c,
// with the coefficients computed in double. Subtracting the mean rounded to Scalar first
// keeps float exact for inputs with a large common offset (x ≈ 1e4 + noise): x − shift_c
// is exact (Sterbenz), where x · scale + (β − mean · scale) would lose ~1e4 · 2^-24 per element.
//
// Backward. With g = ∂L/∂y, D_c = Σ g (x − mean_c), G_c = Σ g:
//   ∂L/∂β_c = G_c,   ∂L/∂γ_c = Σ g x̂ = inv_std_c · D_c.
//   Training: the mean and variance depend on x. Differentiating through them,
//     ∂L/∂x = γ inv_std (g − G/M − x̂ · Σ(g x̂)/M)
//           = a_c g + b_c (x − mean_c) + c_c,
//     a_c = γ inv_std,   b_c = −γ inv_std³ D_c / M,   c_c = −γ inv_std G_c / M.
//   Inference: mean and variance are constants, ∂L/∂x = γ inv_std g  (b = c = 0).
// So backward is two per-channel reductions (G, D) and one element-wise pass.
//
// Statistics and gradient sums accumulate in double whatever Scalar is: in float, a sum
// over 10^6 values loses about three digits. Values are summed relative to a per-channel
// shift (the first value of the channel), so the one-pass sum of squares does not cancel
// catastrophically. Rows are split into fixed chunks whose partial sums are added in chunk
// order: results are identical for any thread count.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <type_traits>
#include <vector>

#include "eigenet/kernels/parallel.hpp"

namespace eigenet::kernels {

/// Per-channel statistics of a batch, in a form that merges exactly across batches or
/// processes (a later synchronised BatchNorm all-reduces these before normalising).
struct ChannelStats {
  Index count = 0;        // values per channel, M = N·S
  Eigen::ArrayXd mean;    // (C)
  Eigen::ArrayXd sq_dev;  // (C)  Σ (x − mean)²

  Index channels() const { return mean.size(); }
  Eigen::ArrayXd biased_variance() const { return sq_dev / static_cast<double>(count); }
  Eigen::ArrayXd unbiased_variance() const { return sq_dev / static_cast<double>(count - 1); }
};

/// Statistics of the union of two batches (Chan, Golub and LeVeque's pairwise update).
inline ChannelStats merge_stats(const ChannelStats& a, const ChannelStats& b) {
  if (a.count == 0) return b;
  if (b.count == 0) return a;
  if (a.channels() != b.channels())
    throw ShapeError(eigenet::detail::concat("merge_stats: statistics of ", a.channels(), " and ", b.channels(),
                                             " channels cannot be merged"));
  ChannelStats merged;
  merged.count = a.count + b.count;
  const double na = static_cast<double>(a.count), nb = static_cast<double>(b.count);
  const double n = na + nb;
  const Eigen::ArrayXd delta = b.mean - a.mean;
  merged.mean = a.mean + delta * (nb / n);
  merged.sq_dev = a.sq_dev + b.sq_dev + delta.square() * (na * nb / n);
  return merged;
}

/// y = (x − shift_c) · scale_c + offset_c, the one transform of forward.
template <typename Scalar>
struct ChannelTransform {
  Eigen::Array<Scalar, Eigen::Dynamic, 1> shift, scale, offset;  // (C) each
};

/// The transform for given statistics and affine parameters (gamma/beta may be null:
/// no affine, γ = 1, β = 0).
template <typename Scalar>
ChannelTransform<Scalar> make_channel_transform(const Eigen::ArrayXd& mean, const Eigen::ArrayXd& inv_std,
                                                const Scalar* gamma, const Scalar* beta) {
  const Index channels = mean.size();
  ChannelTransform<Scalar> t;
  t.shift.resize(channels);
  t.scale.resize(channels);
  t.offset.resize(channels);
  for (Index c = 0; c < channels; ++c) {
    const auto shift = static_cast<Scalar>(mean[c]);
    const double scale = (gamma ? static_cast<double>(gamma[c]) : 1.0) * inv_std[c];
    const double offset = (beta ? static_cast<double>(beta[c]) : 0.0) - (mean[c] - static_cast<double>(shift)) * scale;
    t.shift[c] = shift;
    t.scale[c] = static_cast<Scalar>(scale);
    t.offset[c] = static_cast<Scalar>(offset);
  }
  return t;
}

namespace detail {

template <typename Scalar>
using ConstVectorMap = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
template <typename Scalar>
using VectorMap = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;

/// Sums `width` per-channel double accumulators over samples n ∈ [0, N):
/// add_samples(begin, end, acc) adds samples [begin, end)'s contribution into acc[0, width).
/// Fixed chunks of samples, partials combined in chunk order, so the result is
/// thread-count independent.
template <typename AddSamples>
Eigen::ArrayXd reduce_samples(Index samples, Index sample_elements, Index width, AddSamples&& add_samples) {
  // Chunks of ~2^18 elements: each chunk writes `width` partial sums that are read again at
  // the end, so the element-wise passes' 2^15 would move 1/8 of the input's bytes once more
  // ((16384, 1024) float: 8 MiB of partials, and 20% of the statistics pass's time).
  const Index grain = rows_per_chunk(sample_elements, Index{1} << 18);
  const Index chunks = chunk_count(samples, grain);
  Eigen::ArrayXXd partial = Eigen::ArrayXXd::Zero(width, std::max<Index>(chunks, 1));
  parallel_chunks(samples, grain,
                  [&](Index chunk, Index begin, Index end) { add_samples(begin, end, partial.col(chunk).data()); });
  Eigen::ArrayXd total = Eigen::ArrayXd::Zero(width);
  for (Index chunk = 0; chunk < chunks; ++chunk) total += partial.col(chunk);
  return total;
}

/// Rows of an (N, C) tensor taken four at a time by the (N, C) reductions. Within a block
/// the deviations x − shift, their squares and products and the four-term sums are formed
/// in Scalar (8 float lanes per AVX2 vector instead of 4 doubles), and only the block sum
/// is converted and added to the double accumulators, once per four rows. Each block sum
/// carries a relative rounding error of a few Scalar ulps that does not grow with N, so the
/// statistics keep the accuracy of double accumulation (the shift makes the deviations
/// small, and exact where x is near the shift), while the pass is no longer bound by
/// float-to-double conversions. Summation order is fixed: results stay thread-count
/// independent.
inline constexpr Index kRowBlock = 4;

/// Runs body(begin, end) over fixed chunks of samples in parallel.
template <typename Body>
void for_samples(Index samples, Index sample_elements, Body&& body) {
  parallel_chunks(samples, rows_per_chunk(sample_elements), [&](Index, Index begin, Index end) { body(begin, end); });
}

/// The sums of channel_stats with every deviation converted to double before it is
/// squared: the fallback for a batch whose Scalar squares overflow (|x − shift| above
/// ~1.8e19 in float), slower but exact to double rounding.
template <typename Scalar>
Eigen::ArrayXd channel_sums_wide(const Scalar* x, Index samples, Index channels, Index spatial,
                                 const Eigen::ArrayXd& shift) {
  const Index row = channels * spatial;
  return reduce_samples(samples, row, 2 * channels, [&](Index begin, Index end, double* acc) {
    for (Index n = begin; n < end; ++n)
      for (Index c = 0; c < channels; ++c) {
        const auto dev = ConstVectorMap<Scalar>(x + n * row + c * spatial, spatial).template cast<double>() - shift[c];
        acc[c] += dev.sum();
        acc[channels + c] += dev.square().sum();
      }
  });
}

}  // namespace detail

/// Mean and Σ (x − mean)² per channel of x (N, C, S). Requires N ≥ 1, C ≥ 1, S ≥ 1.
/// A channel holding NaN or ±inf gets a non-finite mean or sq_dev (the caller checks).
template <typename Scalar>
ChannelStats channel_stats(const Scalar* x, Index samples, Index channels, Index spatial) {
  using detail::ConstVectorMap;
  // The shift is a value of x itself, so it is exact in Scalar and in double.
  Eigen::Array<Scalar, Eigen::Dynamic, 1> shift_scalar(channels);
  for (Index c = 0; c < channels; ++c) shift_scalar[c] = x[c * spatial];
  const Eigen::ArrayXd shift = shift_scalar.template cast<double>();
  const Index row = channels * spatial;
  // acc[0, C): Σ (x − shift),  acc[C, 2C): Σ (x − shift)²
  Eigen::ArrayXd sums = detail::reduce_samples(samples, row, 2 * channels, [&](Index begin, Index end, double* acc) {
    double* sum = acc;            // Σ (x − shift)
    double* sq = acc + channels;  // Σ (x − shift)²
    const Scalar* shift_c = shift_scalar.data();
    if (spatial == 1) {
      Index n = begin;
      for (; n + detail::kRowBlock <= end; n += detail::kRowBlock) {
        const Scalar* x0 = x + n * row;
        const Scalar* x1 = x0 + row;
        const Scalar* x2 = x1 + row;
        const Scalar* x3 = x2 + row;
        for (Index c = 0; c < channels; ++c) {
          const Scalar d0 = x0[c] - shift_c[c], d1 = x1[c] - shift_c[c];
          const Scalar d2 = x2[c] - shift_c[c], d3 = x3[c] - shift_c[c];
          sum[c] += static_cast<double>((d0 + d1) + (d2 + d3));
          sq[c] += static_cast<double>((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3));
        }
      }
      for (; n < end; ++n) {
        const Scalar* xn = x + n * row;
        for (Index c = 0; c < channels; ++c) {
          const Scalar d = xn[c] - shift_c[c];
          sum[c] += static_cast<double>(d);
          sq[c] += static_cast<double>(d * d);
        }
      }
    } else {
      for (Index n = begin; n < end; ++n) {
        const Scalar* sample = x + n * row;
        for (Index c = 0; c < channels; ++c) {
          const auto dev = ConstVectorMap<Scalar>(sample + c * spatial, spatial).template cast<double>() - shift[c];
          sum[c] += dev.sum();
          sq[c] += dev.square().sum();
        }
      }
    }
  });
  // The (N, C) path squares in Scalar; finite values far from the shift can overflow there.
  if (spatial == 1 && !std::is_same_v<Scalar, double> && !sums.isFinite().all())
    sums = detail::channel_sums_wide(x, samples, channels, spatial, shift);
  ChannelStats stats;
  stats.count = samples * spatial;
  const double count = static_cast<double>(stats.count);
  const Eigen::ArrayXd sum = sums.head(channels), sq = sums.tail(channels);
  stats.mean = shift + sum / count;
  stats.sq_dev = (sq - sum.square() / count).max(0.0);
  return stats;
}

/// y = (x − shift_c) · scale_c + offset_c over x (N, C, S). y may alias x.
template <typename Scalar>
void apply_channel_transform(const Scalar* x, Scalar* y, Index samples, Index channels, Index spatial,
                             const ChannelTransform<Scalar>& t) {
  using detail::ConstVectorMap;
  using detail::VectorMap;
  const Index row = channels * spatial;
  detail::for_samples(samples, row, [&](Index begin, Index end) {
    for (Index n = begin; n < end; ++n) {
      if (spatial == 1) {
        VectorMap<Scalar>(y + n * row, channels) =
            (ConstVectorMap<Scalar>(x + n * row, channels) - t.shift) * t.scale + t.offset;
      } else {
        for (Index c = 0; c < channels; ++c) {
          const Index at = n * row + c * spatial;
          VectorMap<Scalar>(y + at, spatial) =
              (ConstVectorMap<Scalar>(x + at, spatial) - t.shift[c]) * t.scale[c] + t.offset[c];
        }
      }
    }
  });
}

/// The two per-channel reductions of backward: G_c = Σ g and D_c = Σ g (x − mean_c).
struct ChannelGradSums {
  Eigen::ArrayXd sum_grad;        // (C)  G
  Eigen::ArrayXd sum_grad_xmean;  // (C)  D
};

template <typename Scalar>
ChannelGradSums channel_grad_sums(const Scalar* x, const Scalar* grad, Index samples, Index channels, Index spatial,
                                  const Eigen::ArrayXd& mean) {
  using detail::ConstVectorMap;
  // Deviations from the mean rounded to Scalar are exact in Scalar (see the header); the
  // remainder (mean − shift) is corrected once per channel below.
  const Eigen::Array<Scalar, Eigen::Dynamic, 1> shift_scalar = mean.template cast<Scalar>();
  const Eigen::ArrayXd shift = shift_scalar.template cast<double>();
  const Index row = channels * spatial;
  const Eigen::ArrayXd sums =
      detail::reduce_samples(samples, row, 2 * channels, [&](Index begin, Index end, double* acc) {
        double* sum_g = acc;              // Σ g
        double* sum_gx = acc + channels;  // Σ g (x − shift)
        const Scalar* shift_c = shift_scalar.data();
        if (spatial == 1) {
          Index n = begin;
          for (; n + detail::kRowBlock <= end; n += detail::kRowBlock) {
            const Index at = n * row;
            const Scalar *g0 = grad + at, *g1 = g0 + row, *g2 = g1 + row, *g3 = g2 + row;
            const Scalar *x0 = x + at, *x1 = x0 + row, *x2 = x1 + row, *x3 = x2 + row;
            for (Index c = 0; c < channels; ++c) {
              const Scalar d0 = x0[c] - shift_c[c], d1 = x1[c] - shift_c[c];
              const Scalar d2 = x2[c] - shift_c[c], d3 = x3[c] - shift_c[c];
              sum_g[c] += static_cast<double>((g0[c] + g1[c]) + (g2[c] + g3[c]));
              sum_gx[c] += static_cast<double>((g0[c] * d0 + g1[c] * d1) + (g2[c] * d2 + g3[c] * d3));
            }
          }
          for (; n < end; ++n) {
            const Scalar* gn = grad + n * row;
            const Scalar* xn = x + n * row;
            for (Index c = 0; c < channels; ++c) {
              sum_g[c] += static_cast<double>(gn[c]);
              sum_gx[c] += static_cast<double>(gn[c] * (xn[c] - shift_c[c]));
            }
          }
        } else {
          for (Index n = begin; n < end; ++n) {
            const Index at = n * row;
            for (Index c = 0; c < channels; ++c) {
              const auto g = ConstVectorMap<Scalar>(grad + at + c * spatial, spatial).template cast<double>();
              const auto dev = ConstVectorMap<Scalar>(x + at + c * spatial, spatial).template cast<double>() - shift[c];
              sum_g[c] += g.sum();
              sum_gx[c] += (g * dev).sum();
            }
          }
        }
      });
  ChannelGradSums out;
  out.sum_grad = sums.head(channels);
  out.sum_grad_xmean = sums.tail(channels) - (mean - shift) * out.sum_grad;
  return out;
}

/// dx = a_c · g + b_c · (x − shift_c) + c_c over (N, C, S), the element-wise pass of backward.
template <typename Scalar>
struct ChannelBackwardTransform {
  Eigen::Array<Scalar, Eigen::Dynamic, 1> grad_scale, shift, x_scale, offset;  // a, shift, b, c (C) each
};

/// The coefficients of the element-wise pass. `training`: the statistics were batch
/// statistics (differentiate through them); else they were constants.
template <typename Scalar>
ChannelBackwardTransform<Scalar> make_channel_backward(const Eigen::ArrayXd& mean, const Eigen::ArrayXd& inv_std,
                                                       const Scalar* gamma, const ChannelGradSums& sums, Index count,
                                                       bool training) {
  const Index channels = mean.size();
  const double m = static_cast<double>(count);
  ChannelBackwardTransform<Scalar> t;
  t.grad_scale.resize(channels);
  t.shift.resize(channels);
  t.x_scale.resize(channels);
  t.offset.resize(channels);
  for (Index c = 0; c < channels; ++c) {
    const double g = gamma ? static_cast<double>(gamma[c]) : 1.0;
    const double a = g * inv_std[c];
    const double b = training ? -a * inv_std[c] * inv_std[c] * sums.sum_grad_xmean[c] / m : 0.0;
    const double offset = training ? -a * sums.sum_grad[c] / m : 0.0;
    const auto shift = static_cast<Scalar>(mean[c]);
    t.grad_scale[c] = static_cast<Scalar>(a);
    t.shift[c] = shift;
    t.x_scale[c] = static_cast<Scalar>(b);
    t.offset[c] = static_cast<Scalar>(offset - b * (mean[c] - static_cast<double>(shift)));
  }
  return t;
}

template <typename Scalar>
void apply_channel_backward(const Scalar* x, const Scalar* grad, Scalar* dx, Index samples, Index channels,
                            Index spatial, const ChannelBackwardTransform<Scalar>& t) {
  using detail::ConstVectorMap;
  using detail::VectorMap;
  const Index row = channels * spatial;
  detail::for_samples(samples, row, [&](Index begin, Index end) {
    for (Index n = begin; n < end; ++n) {
      if (spatial == 1) {
        const Index at = n * row;
        VectorMap<Scalar>(dx + at, channels) = ConstVectorMap<Scalar>(grad + at, channels) * t.grad_scale +
                                               (ConstVectorMap<Scalar>(x + at, channels) - t.shift) * t.x_scale +
                                               t.offset;
      } else {
        for (Index c = 0; c < channels; ++c) {
          const Index at = n * row + c * spatial;
          VectorMap<Scalar>(dx + at, spatial) = ConstVectorMap<Scalar>(grad + at, spatial) * t.grad_scale[c] +
                                                (ConstVectorMap<Scalar>(x + at, spatial) - t.shift[c]) * t.x_scale[c] +
                                                t.offset[c];
        }
      }
    }
  });
}

}  // namespace eigenet::kernels
