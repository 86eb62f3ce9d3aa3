// Loops of the runtime's kernels over rows (or ranges of values): across OpenMP threads when
// more than one is allowed and the loop is worth a parallel region, else a plain loop in the
// calling thread. An OpenMP region costs microseconds even with one thread; at batch 1, with
// some sixty regions per forward, that was a tenth of the time.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstddef>

namespace qtx::rt {

// Below this many elementary steps (values written) a loop runs in one thread.
constexpr size_t kMinParallelWork = size_t{1} << 14;

inline bool worth_parallel(size_t work) {
  return work >= kMinParallelWork && omp_get_max_threads() > 1 && !omp_in_parallel();
}

// body(i) for i in [0, n); `work` is the whole loop's size in values.
template <typename Body>
void parallel_for(int n, size_t work, const Body& body) {
  if (!worth_parallel(work)) {
    for (int i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) body(i);
}

// body(begin, end) over contiguous pieces of [0, n), one per thread.
template <typename Body>
void parallel_range(size_t n, const Body& body) {
  if (!worth_parallel(n)) {
    body(size_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num()), nt = static_cast<size_t>(omp_get_num_threads());
    const size_t per = (n + nt - 1) / nt, begin = std::min(n, t * per), end = std::min(n, begin + per);
    body(begin, end);
  }
}

}  // namespace qtx::rt
