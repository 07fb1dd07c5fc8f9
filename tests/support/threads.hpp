// tests/support/threads.hpp — for tests that compare 1 thread with 2: set OpenMP's thread
// count for a scope, and find out how many threads really ran, so a "1 thread == 2 threads"
// test cannot pass by running serially twice (too few chunks, OpenMP off or limited to one
// thread, OMP_DYNAMIC handing out fewer threads).
//
//   if (!eigenet::testing::kHaveOpenMP) GTEST_SKIP() << eigenet::testing::kNoOpenMP;
//   ASSERT_EQ(eigenet::testing::threads_that_ran(2, count, grain), 2);
//   { eigenet::testing::ThreadCount two(2); ... the work under test ... }
#pragma once

#include <algorithm>
#include <vector>

#include "eigenet/kernels/parallel.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace eigenet::testing {

#if defined(_OPENMP)
inline constexpr bool kHaveOpenMP = true;
#else
inline constexpr bool kHaveOpenMP = false;
#endif

/// Why a thread-count test skips without OpenMP.
inline constexpr const char* kNoOpenMP =
    "built without OpenMP (EIGENET_USE_OPENMP=OFF or no -fopenmp): the kernels run on one thread, so there is no "
    "second thread count to compare";

/// OpenMP's thread count (omp_set_num_threads) is `threads` until the end of the scope,
/// then what it was before. Without OpenMP it does nothing.
class ThreadCount {
 public:
  explicit ThreadCount(int threads) {
#if defined(_OPENMP)
    saved_ = omp_get_max_threads();
    omp_set_num_threads(threads);
#else
    static_cast<void>(threads);
#endif
  }
  ~ThreadCount() {
#if defined(_OPENMP)
    omp_set_num_threads(saved_);
#endif
  }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int saved_ = 1;
};

/// How many distinct threads run a chunk when kernels::parallel_chunks splits `count` items
/// into chunks of `grain` under a thread count of `threads`: the split the kernels use for
/// work of that size. 1 without OpenMP, or when the work is a single chunk.
inline int threads_that_ran(int threads, Index count, Index grain) {
  const ThreadCount scope(threads);
  // Each chunk records its thread in its own slot: no data race, no lock.
  std::vector<int> thread_of_chunk(static_cast<std::size_t>(kernels::chunk_count(count, grain)), -1);
  kernels::parallel_chunks(count, grain, [&](Index chunk, Index, Index) {
#if defined(_OPENMP)
    thread_of_chunk[static_cast<std::size_t>(chunk)] = omp_get_thread_num();
#else
    thread_of_chunk[static_cast<std::size_t>(chunk)] = 0;
#endif
  });
  std::sort(thread_of_chunk.begin(), thread_of_chunk.end());
  return static_cast<int>(std::unique(thread_of_chunk.begin(), thread_of_chunk.end()) - thread_of_chunk.begin());
}

}  // namespace eigenet::testing
