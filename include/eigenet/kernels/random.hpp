// eigenet/kernels/random.hpp — a counter-based generator: random bits as a pure function
// of (seed, stream counter, element index).
//
// Why counter-based: the value for element i does not depend on how many values were drawn
// before it, so a dropout mask is the same for any thread count or any split of a batch,
// and backward can recompute the forward mask instead of storing it.
//
// Construction: the (seed, counter) pair is mixed into a 64-bit key with the splitmix64
// finaliser; each element's 32 bits are two rounds of a 32-bit avalanche hash (the
// "lowbias32" constants published by C. Wellons) keyed by the two halves of that key.
// Everything is 32-bit integer multiply/xor/shift, so the loop vectorises with AVX2.
#pragma once

#include <cstdint>

namespace eigenet::kernels {

/// splitmix64's finaliser: a bijective 64-bit mix.
constexpr std::uint64_t mix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// A bijective 32-bit avalanche hash.
constexpr std::uint32_t hash32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352DU;
  x ^= x >> 15;
  x *= 0x846CA68BU;
  x ^= x >> 16;
  return x;
}

/// The key of one stream: one per (seed, counter), e.g. one per dropout forward call.
struct StreamKey {
  std::uint32_t low = 0;
  std::uint32_t high = 0;
};

constexpr StreamKey stream_key(std::uint64_t seed, std::uint64_t counter) {
  const std::uint64_t key = mix64(mix64(seed) ^ (counter * 0xD1B54A32D192ED03ULL + 0x8BB84B93962EACC9ULL));
  return {static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32)};
}

/// The key for elements whose index has the given upper 32 bits; for tensors below 2^32
/// elements this is the key itself.
constexpr StreamKey segment_key(StreamKey key, std::uint32_t index_high) {
  if (index_high == 0) return key;
  return {key.low ^ hash32(index_high * 0x9E3779B9U), key.high + hash32(index_high)};
}

/// 32 random bits for element `index_low` of a segment.
constexpr std::uint32_t random_bits(StreamKey key, std::uint32_t index_low) {
  return hash32(hash32(index_low ^ key.low) + key.high);
}

/// 32 random bits for element `index` of the stream.
constexpr std::uint32_t random_bits(StreamKey key, std::uint64_t index) {
  return random_bits(segment_key(key, static_cast<std::uint32_t>(index >> 32)), static_cast<std::uint32_t>(index));
}

/// A uniform double in [0, 1) with 53 random bits, for element `index` of the stream.
constexpr double uniform01(StreamKey key, std::uint64_t index) {
  const std::uint64_t high = random_bits(key, 2 * index);
  const std::uint64_t low = random_bits(key, 2 * index + 1);
  return static_cast<double>(((high << 32) | low) >> 11) * 0x1.0p-53;
}

}  // namespace eigenet::kernels
