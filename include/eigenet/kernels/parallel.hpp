// eigenet/kernels/parallel.hpp — the one place kernels meet threads.
//
// Decision (DESIGN "open choices"): OpenMP, when the consumer compiles with it (the CMake
// target links OpenMP::OpenMP_CXX when EIGENET_USE_OPENMP is on), else serial. Why:
// a `parallel for` over fixed chunks costs a few microseconds to enter, needs no pool
// object threaded through every call, and Eigen's own matrix products already use OpenMP.
//
// Work is split into chunks whose boundaries depend only on the problem size and a grain,
// never on the thread count; reductions combine per-chunk partials in chunk order. So
// every result is bit-identical with 1 or 2 (or 64) threads.
#pragma once

#include <algorithm>
#include <cstdint>

#include "eigenet/tensor.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace eigenet::kernels {

/// Number of chunks of at most `grain` items that cover `count` items.
inline Index chunk_count(Index count, Index grain) {
  grain = std::max<Index>(grain, 1);
  return count <= 0 ? 0 : (count + grain - 1) / grain;
}

/// Calls body(chunk, begin, end) for each chunk [begin, end) of [0, count), chunks of
/// `grain` items, in parallel when that pays (more than one chunk).
template <typename Body>
void parallel_chunks(Index count, Index grain, Body&& body) {
  const Index chunks = chunk_count(count, grain);
  grain = std::max<Index>(grain, 1);
#if defined(_OPENMP)
  if (chunks > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (Index chunk = 0; chunk < chunks; ++chunk) {
      body(chunk, chunk * grain, std::min(count, (chunk + 1) * grain));
    }
    return;
  }
#endif
  for (Index chunk = 0; chunk < chunks; ++chunk) body(chunk, chunk * grain, std::min(count, (chunk + 1) * grain));
}

/// A grain, in rows of `row_elements` elements, that gives chunks of about
/// `target_elements` elements: big enough to amortise a thread hand-off, small enough to
/// balance two cores and stay in L2.
inline Index rows_per_chunk(Index row_elements, Index target_elements = Index{1} << 15) {
  return std::max<Index>(1, target_elements / std::max<Index>(row_elements, 1));
}

}  // namespace eigenet::kernels
