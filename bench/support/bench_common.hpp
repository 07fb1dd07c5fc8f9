// Shared pieces of eigenet's benchmarks: the benchmark shape, deterministic inputs, and the
// plain pass y = a·x + b that every memory-bound kernel is measured against.
//
// Every benchmark reports bytes per second over its compulsory bytes (what must be read and
// written at least once), so results read as a fraction of the plain pass in the same run.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "eigenet/kernels/parallel.hpp"
#include "eigenet/kernels/random.hpp"
#include "eigenet/tensor.hpp"

namespace eigenet::bench {

// (N, C) = (16384, 1024) floats: 64 MiB, far beyond the last-level cache.
inline constexpr Index kSamples = 16384;
inline constexpr Index kChannels = 1024;
inline const Shape kShape{kSamples, kChannels};
inline constexpr Index kElements = kSamples * kChannels;

// Values uniform in [offset − 1, offset + 1), a pure function of (seed, index).
inline std::vector<float> random_input(std::uint64_t seed, float offset = 0.0f) {
  std::vector<float> values(static_cast<std::size_t>(kElements));
  const kernels::StreamKey key = kernels::stream_key(seed, 0);
  for (Index i = 0; i < kElements; ++i)
    values[static_cast<std::size_t>(i)] =
        offset + static_cast<float>(2.0 * kernels::uniform01(key, static_cast<std::uint64_t>(i)) - 1.0);
  return values;
}

inline void set_bytes(benchmark::State& state, Index bytes_per_iteration) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes_per_iteration);
}

// The machine's own limit for one streaming read + write pass, threaded like the kernels.
inline void BM_PlainPass(benchmark::State& state) {
  const std::vector<float> x = random_input(1);
  std::vector<float> y(x.size());
  const float a = 1.5f, b = 0.25f;
  for (auto _ : state) {
    kernels::parallel_chunks(kElements, Index{1} << 15, [&](Index, Index begin, Index end) {
      for (Index i = begin; i < end; ++i) y[static_cast<std::size_t>(i)] = a * x[static_cast<std::size_t>(i)] + b;
    });
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2 * kElements * Index{sizeof(float)});
}

}  // namespace eigenet::bench
