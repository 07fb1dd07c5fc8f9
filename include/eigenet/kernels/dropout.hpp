// eigenet/kernels/dropout.hpp — dropout masks as a pure function of
// (drop probability, seed, step, mask index), and the element-wise passes that apply them.
//
//   forward  (training):  y_i = m_i · x_i / (1 − p),   m_i = 1 with probability 1 − p
//   backward (training): dx_i = m_i · dy_i / (1 − p)   (the same mask: ∂y_i/∂x_i)
//
// Both are `apply_dropout_mask`: the mask of element i is recomputed from
// random_bits(stream_key(seed, step), i), so nothing but (seed, step) needs storing.
// Element i is kept when its 32 random bits are >= round(p · 2^32): the keep probability
// is exact to 2^-32. p = 1 drops everything and writes zeros (never 0 · ∞ = NaN); p = 0
// keeps everything with scale 1.
//
// Shared (broadcast) masks, Keras' noise_shape: the mask is drawn for a "noise" tensor that
// has extent 1 on the shared axes, and element i uses the value of its noise element, i.e.
// the index i is the row-major index into the noise tensor. `NoiseLayout` describes that
// broadcast, `apply_masked` runs any per-element operation op(keep, value) over it (the
// layers use it for Dropout with shared axes and for AlphaDropout).
//
// Indices are GLOBAL: `first_index` is the mask index of the first element (or noise
// element) passed in, so a batch processed in pieces gets the mask of the whole.
//
// Reference loop (what the vectorised loops below compute):
//   for i: y[i] = op(bits(first_index + noise_index(i)) >= threshold, x[i])
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "eigenet/kernels/parallel.hpp"
#include "eigenet/kernels/random.hpp"

namespace eigenet::kernels {

/// The parameters that fully determine one dropout mask.
struct DropoutMask {
  double drop_probability = 0.5;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
};

inline void check_drop_probability(double p, const char* who) {
  if (!(p >= 0.0 && p <= 1.0))  // also rejects NaN
    throw ValueError(eigenet::detail::concat(who, ": drop probability p should be in [0, 1], not ", p));
}

namespace detail {

template <typename Scalar>
using BitsOf = std::conditional_t<sizeof(Scalar) == 4, std::uint32_t, std::uint64_t>;

/// `keep ? value : 0`, written as a bit mask: g++ 12 does not if-convert the plain select in
/// the dropout loop ("control flow in loop") and runs it ten times slower; the mask form
/// vectorises with both g++ and clang. Masking (not multiplying by 0) keeps dropped inf and
/// NaN inputs at 0.
template <typename Scalar>
inline Scalar keep_or_zero(bool keep, Scalar value) {
  static_assert(std::is_floating_point_v<Scalar> && (sizeof(Scalar) == 4 || sizeof(Scalar) == 8),
                "dropout supports float and double");
  using Bits = BitsOf<Scalar>;
  Bits bits;
  std::memcpy(&bits, &value, sizeof bits);
  bits &= Bits{0} - static_cast<Bits>(keep);
  std::memcpy(&value, &bits, sizeof bits);
  return value;
}

/// `keep ? kept : otherwise` as the same branch-free bit blend (vectorises; a dropped
/// inf or NaN input never reaches the output).
template <typename Scalar>
inline Scalar keep_or(bool keep, Scalar kept, Scalar otherwise) {
  static_assert(std::is_floating_point_v<Scalar> && (sizeof(Scalar) == 4 || sizeof(Scalar) == 8),
                "dropout supports float and double");
  using Bits = BitsOf<Scalar>;
  Bits a, b;
  std::memcpy(&a, &kept, sizeof a);
  std::memcpy(&b, &otherwise, sizeof b);
  const Bits select = Bits{0} - static_cast<Bits>(keep);
  const Bits bits = (a & select) | (b & ~select);
  Scalar value;
  std::memcpy(&value, &bits, sizeof bits);
  return value;
}

/// dst[j] = op(bits(global + j) >= threshold, src[j]) for j in [0, n).
template <typename Scalar, typename Op>
inline void masked_run(const Scalar* src, Scalar* dst, Index n, StreamKey key, std::uint32_t threshold,
                       std::uint64_t global, const Op& op) {
  Index i = 0;
  while (i < n) {
    // A segment shares the upper 32 bits of the global index, so the inner loop runs on
    // 32-bit counters and vectorises.
    const std::uint64_t index = global + static_cast<std::uint64_t>(i);
    const std::uint64_t to_boundary = (std::uint64_t{1} << 32) - (index & 0xFFFFFFFFULL);
    const Index length = static_cast<Index>(std::min<std::uint64_t>(static_cast<std::uint64_t>(n - i), to_boundary));
    const StreamKey segment = segment_key(key, static_cast<std::uint32_t>(index >> 32));
    const auto low0 = static_cast<std::uint32_t>(index);
    const Scalar* in = src + i;
    Scalar* out = dst + i;
    for (Index j = 0; j < length; ++j) {
      const std::uint32_t bits = random_bits(segment, static_cast<std::uint32_t>(low0 + static_cast<std::uint32_t>(j)));
      out[j] = op(bits >= threshold, in[j]);
    }
    i += length;
  }
}

}  // namespace detail

/// Elements whose random bits are below this are dropped (p < 1).
inline std::uint32_t drop_threshold(double p) {
  const double scaled = std::nearbyint(p * 4294967296.0);
  return static_cast<std::uint32_t>(std::min(scaled, 4294967295.0));
}

/// How a mask drawn for the noise tensor (extent 1 on shared axes) broadcasts over an input.
/// The input's axes are collapsed: extent-1 axes dropped, neighbouring axes that are both
/// shared or both unshared merged (row-major flat indices of input and noise are unchanged
/// by that). noise_strides[k] is 0 on shared dims.
struct NoiseLayout {
  std::vector<Index> extents;        // collapsed input extents, outermost first
  std::vector<Index> noise_strides;  // per collapsed dim: its stride in the noise tensor
  Index count = 0;                   // input elements
  Index noise_count = 0;             // noise (mask) elements

  /// Whether some mask value is shared by more than one element.
  bool broadcasts() const { return noise_count != count; }
};

/// The layout for an input of `shape` whose axes k with shared[k] share one mask value.
inline NoiseLayout noise_layout(const Shape& shape, const std::vector<bool>& shared) {
  NoiseLayout layout;
  layout.count = element_count(shape);
  std::vector<bool> is_shared;
  for (std::size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == 1) continue;
    const bool s = k < shared.size() && shared[k];
    if (!layout.extents.empty() && is_shared.back() == s) {
      layout.extents.back() *= shape[k];
    } else {
      layout.extents.push_back(shape[k]);
      is_shared.push_back(s);
    }
  }
  if (layout.extents.empty()) {  // every extent is 1
    layout.extents.push_back(1);
    is_shared.push_back(false);
  }
  layout.noise_strides.assign(layout.extents.size(), 0);
  Index stride = 1;
  for (std::size_t k = layout.extents.size(); k-- > 0;) {
    if (is_shared[k]) continue;
    layout.noise_strides[k] = stride;
    stride *= layout.extents[k];
  }
  layout.noise_count = layout.count == 0 ? 0 : stride;
  return layout;
}

/// The layout with nothing shared (every element its own mask value).
inline NoiseLayout contiguous_layout(Index count) {
  NoiseLayout layout;
  layout.extents = {count};
  layout.noise_strides = {1};
  layout.count = layout.noise_count = count;
  return layout;
}

/// out[i] = op(keep(first_index + noise_index(i)), in[i]) over the input of `layout`, where
/// keep(k) is the mask bit of noise element k; for p = 1 keep is false everywhere.
/// `in` and `out` may be the same array. Bit-identical for any thread count.
template <typename Scalar, typename Op>
void apply_masked(const Scalar* in, Scalar* out, const NoiseLayout& layout, const DropoutMask& mask,
                  std::uint64_t first_index, const Op& op) {
  check_drop_probability(mask.drop_probability, "apply_masked");
  const Index count = layout.count;
  if (count == 0) return;
  if (mask.drop_probability >= 1.0) {
    parallel_chunks(count, Index{1} << 16, [&](Index, Index begin, Index end) {
      for (Index i = begin; i < end; ++i) out[i] = op(false, in[i]);
    });
    return;
  }
  const std::uint32_t threshold = drop_threshold(mask.drop_probability);
  const StreamKey key = stream_key(mask.seed, mask.step);
  if (!layout.broadcasts()) {
    parallel_chunks(count, Index{1} << 16, [&](Index, Index begin, Index end) {
      detail::masked_run(in + begin, out + begin, end - begin, key, threshold,
                         first_index + static_cast<std::uint64_t>(begin), op);
    });
    return;
  }
  // Rows of the innermost collapsed dim: within a row the noise index either advances by 1
  // (an unshared dim) or stays (a shared dim).
  const std::size_t dims = layout.extents.size();
  const Index row_length = layout.extents.back();
  const bool row_shared = layout.noise_strides.back() == 0;
  const Index rows = count / row_length;
  parallel_chunks(rows, rows_per_chunk(row_length, Index{1} << 16), [&](Index, Index begin, Index end) {
    // The multi-index of row `begin` over the outer dims, then an odometer.
    std::vector<Index> position(dims, 0);
    Index rest = begin;
    Index noise = 0;
    for (std::size_t k = dims - 1; k-- > 0;) {
      position[k] = rest % layout.extents[k];
      rest /= layout.extents[k];
      noise += position[k] * layout.noise_strides[k];
    }
    for (Index row = begin; row < end; ++row) {
      const Scalar* src = in + row * row_length;
      Scalar* dst = out + row * row_length;
      const std::uint64_t global = first_index + static_cast<std::uint64_t>(noise);
      if (row_shared) {
        const bool keep = random_bits(key, global) >= threshold;
        for (Index j = 0; j < row_length; ++j) dst[j] = op(keep, src[j]);
      } else {
        detail::masked_run(src, dst, row_length, key, threshold, global, op);
      }
      for (std::size_t k = dims - 1; k-- > 0;) {  // next row
        noise += layout.noise_strides[k];
        if (++position[k] < layout.extents[k]) break;
        noise -= position[k] * layout.noise_strides[k];
        position[k] = 0;
      }
    }
  });
}

/// Inverted dropout over a (possibly broadcast) mask: out[i] = m · in[i] / (1 − p) with m the
/// mask bit of i's noise element; p = 1 writes zeros.
template <typename Scalar>
void apply_dropout_mask(const Scalar* in, Scalar* out, const NoiseLayout& layout, const DropoutMask& mask,
                        std::uint64_t first_index = 0) {
  check_drop_probability(mask.drop_probability, "apply_dropout_mask");
  if (mask.drop_probability >= 1.0) {
    std::fill(out, out + layout.count, Scalar(0));
    return;
  }
  const auto scale = static_cast<Scalar>(1.0 / (1.0 - mask.drop_probability));
  apply_masked(in, out, layout, mask, first_index,
               [scale](bool keep, Scalar value) { return detail::keep_or_zero(keep, value * scale); });
}

/// out[i] = mask(first_index + i) · in[i] / (1 − p), for i in [0, count).
/// `first_index` is the global index of in[0], so any split of a tensor into pieces gives
/// the same mask as the whole. `in` and `out` may be the same array.
template <typename Scalar>
void apply_dropout_mask(const Scalar* in, Scalar* out, Index count, const DropoutMask& mask,
                        std::uint64_t first_index = 0) {
  apply_dropout_mask(in, out, contiguous_layout(count), mask, first_index);
}

/// Writes the 0/1 keep mask of `count` consecutive mask (noise) elements, starting at mask
/// index `first_index` (for tests and inspection).
template <typename Scalar>
void dropout_keep_mask(Scalar* out, Index count, const DropoutMask& mask, std::uint64_t first_index = 0) {
  check_drop_probability(mask.drop_probability, "dropout_keep_mask");
  if (mask.drop_probability >= 1.0) {
    std::fill(out, out + count, Scalar(0));
    return;
  }
  const std::uint32_t threshold = drop_threshold(mask.drop_probability);
  const StreamKey key = stream_key(mask.seed, mask.step);
  for (Index i = 0; i < count; ++i)
    out[i] = random_bits(key, first_index + static_cast<std::uint64_t>(i)) >= threshold ? Scalar(1) : Scalar(0);
}

// --- AlphaDropout (Klambauer et al. 2017, "Self-Normalizing Neural Networks") ------------
//
// SELU's negative saturation value α' = −λα (λ, α: SELU's constants). A dropped unit is set
// to α', then y = a · (x or α') + b with
//   a = ((1 − p)(1 + p α'²))^(−1/2),   b = −a α' p,
// which keeps mean 0 and variance 1 of an input of mean 0 and variance 1:
//   E[y]   = a((1 − p)·0 + p α') + b = 0
//   Var[y] = a² ((1 − p) + p α'² − p² α'²) = a² (1 − p)(1 + p α'²) = 1.
// Kept: y = a·x + b, dropped: y = a·α' + b. Backward: dx = a·dy kept, 0 dropped.
// The constants are computed in double as PyTorch does (ATen Dropout.cpp), so its float64
// outputs agree to rounding: a = 1/sqrt((α²p + 1)(1 − p)), b = (α·a)·p, dropped = b − α·a.

inline constexpr double kSeluAlphaPrime = -1.7580993408473766;  // −λα

struct AlphaDropoutConstants {
  double scale = 1.0;          // a
  double offset = 0.0;         // b
  double dropped_value = 0.0;  // a·α' + b
};

/// a, b and a·α' + b for 0 <= p < 1.
inline AlphaDropoutConstants alpha_dropout_constants(double p) {
  const double alpha = -kSeluAlphaPrime;
  const double a = 1.0 / std::sqrt((alpha * alpha * p + 1.0) * (1.0 - p));
  const double b = alpha * a * p;
  return {a, b, b - alpha * a};
}

}  // namespace eigenet::kernels
