// The thread-count helper (tests/support/threads.hpp) can tell one thread from two: it
// reports 1 for one requested thread and for work of a single chunk, 2 for two threads on
// several chunks (when built with OpenMP), and ThreadCount restores the previous setting. A
// helper that always answered 2 would let every "1 thread == 2 threads" test run serially.
#include "support/threads.hpp"

#include <gtest/gtest.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using eigenet::Index;
using eigenet::testing::kHaveOpenMP;
using eigenet::testing::kNoOpenMP;
using eigenet::testing::ThreadCount;
using eigenet::testing::threads_that_ran;

TEST(ThreadsThatRan, IsOneForOneThreadOrOneChunk) {
  EXPECT_EQ(threads_that_ran(1, 64, 1), 1);
  EXPECT_EQ(threads_that_ran(1, 300001, Index{1} << 16), 1);
  EXPECT_EQ(threads_that_ran(2, 1, 1), 1) << "one chunk runs on one thread";
  EXPECT_EQ(threads_that_ran(2, Index{1} << 16, Index{1} << 16), 1) << "one chunk runs on one thread";
  EXPECT_EQ(threads_that_ran(2, 0, 1), 0) << "no work, no thread";
}

TEST(ThreadsThatRan, IsTwoForTwoThreadsOnSeveralChunks) {
  if (!kHaveOpenMP) GTEST_SKIP() << kNoOpenMP;
  EXPECT_EQ(threads_that_ran(2, 2, 1), 2);
  EXPECT_EQ(threads_that_ran(2, 300001, Index{1} << 16), 2);
}

TEST(ThreadCount, SetsTheCountForItsScopeAndRestoresIt) {
  if (!kHaveOpenMP) GTEST_SKIP() << kNoOpenMP;
#if defined(_OPENMP)
  const int before = omp_get_max_threads();
  {
    const ThreadCount three(3);
    EXPECT_EQ(omp_get_max_threads(), 3);
    {
      const ThreadCount one(1);
      EXPECT_EQ(omp_get_max_threads(), 1);
    }
    EXPECT_EQ(omp_get_max_threads(), 3);
  }
  EXPECT_EQ(omp_get_max_threads(), before);
  threads_that_ran(2, 8, 1);
  EXPECT_EQ(omp_get_max_threads(), before) << "threads_that_ran restores the thread count";
#endif
}

}  // namespace
