// eigenet/kernels/dropout.hpp — inverted dropout as a pure function of
// (drop probability, seed, step, element index).
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
// Reference loop (what the vectorised loop below computes):
//   for i: y[i] = bits(i) >= threshold ? x[i] * scale : 0
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

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

/// `keep ? value : 0`, written as a bit mask: g++ 12 does not if-convert the plain select in
/// the dropout loop ("control flow in loop") and runs it ten times slower; the mask form
/// vectorises with both g++ and clang. Masking (not multiplying by 0) keeps dropped inf and
/// NaN inputs at 0.
template <typename Scalar>
inline Scalar keep_or_zero(bool keep, Scalar value) {
  static_assert(std::is_floating_point_v<Scalar> && (sizeof(Scalar) == 4 || sizeof(Scalar) == 8),
                "dropout supports float and double");
  using Bits = std::conditional_t<sizeof(Scalar) == 4, std::uint32_t, std::uint64_t>;
  Bits bits;
  std::memcpy(&bits, &value, sizeof bits);
  bits &= Bits{0} - static_cast<Bits>(keep);
  std::memcpy(&value, &bits, sizeof bits);
  return value;
}

}  // namespace detail

/// Elements whose random bits are below this are dropped (p < 1).
inline std::uint32_t drop_threshold(double p) {
  const double scaled = std::nearbyint(p * 4294967296.0);
  return static_cast<std::uint32_t>(std::min(scaled, 4294967295.0));
}

/// out[i] = mask(first_index + i) · in[i] / (1 − p), for i in [0, count).
/// `first_index` is the global index of in[0], so any split of a tensor into pieces gives
/// the same mask as the whole. `in` and `out` may be the same array.
template <typename Scalar>
void apply_dropout_mask(const Scalar* in, Scalar* out, Index count, const DropoutMask& mask,
                        std::uint64_t first_index = 0) {
  check_drop_probability(mask.drop_probability, "apply_dropout_mask");
  if (mask.drop_probability >= 1.0) {
    std::fill(out, out + count, Scalar(0));
    return;
  }
  const auto scale = static_cast<Scalar>(1.0 / (1.0 - mask.drop_probability));
  const std::uint32_t threshold = drop_threshold(mask.drop_probability);
  const StreamKey key = stream_key(mask.seed, mask.step);
  parallel_chunks(count, Index{1} << 16, [&](Index, Index begin, Index end) {
    Index i = begin;
    while (i < end) {
      // A segment shares the upper 32 bits of the global index, so the inner loop runs on
      // 32-bit counters and vectorises.
      const std::uint64_t global = first_index + static_cast<std::uint64_t>(i);
      const std::uint64_t to_boundary = (std::uint64_t{1} << 32) - (global & 0xFFFFFFFFULL);
      const Index stop =
          static_cast<Index>(std::min<std::uint64_t>(static_cast<std::uint64_t>(end - i), to_boundary)) + i;
      const StreamKey segment = segment_key(key, static_cast<std::uint32_t>(global >> 32));
      const auto low0 = static_cast<std::uint32_t>(global);
      const Scalar* src = in + i;
      Scalar* dst = out + i;
      const Index n = stop - i;
      for (Index j = 0; j < n; ++j) {
        const std::uint32_t bits =
            random_bits(segment, static_cast<std::uint32_t>(low0 + static_cast<std::uint32_t>(j)));
        dst[j] = detail::keep_or_zero(bits >= threshold, src[j] * scale);
      }
      i = stop;
    }
  });
}

/// Writes the 0/1 keep mask itself (for tests and inspection).
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

}  // namespace eigenet::kernels
