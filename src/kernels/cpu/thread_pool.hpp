#pragma once
// The CPU ops' threads: a small pool where the calling thread works too and helpers claim
// work items one at a time.
//
// Why not `#pragma omp parallel for`: an OpenMP region ends at a barrier that waits for
// every thread of the team, so when another process holds a core (a shared or busy
// machine) each region waits for the descheduled helper to be scheduled again, a whole
// scheduler time slice (milliseconds, measured in docs/PERFORMANCE.md) per op, dozens of
// times per training step. Here the caller claims items too and only waits for items a
// helper has actually started; a helper that wakes late finds nothing left and goes back
// to sleep. Helpers spin briefly between jobs (the ops of a step follow each other within
// microseconds), then sleep.
//
// Determinism: items may run on any thread in any order, so callers make each item's
// result independent of which thread runs it (every output written by exactly one item,
// partial sums per item added in item order afterwards). Results then do not depend on the
// thread count or the timing at all.
//
// The thread count is OpenMP's (omp_get_max_threads(): $OMP_NUM_THREADS, omp_set_num_threads),
// so the usual controls keep working.
#include <cstdint>
#include <type_traits>
#include <utility>

namespace cnn::ops::cpu {

// Threads a parallel op may use now (1 inside a pool job: jobs do not nest).
int pool_threads();

// Runs fn(ctx, item) for every item in [0, items) on up to `threads` threads, the caller
// included; returns when all have finished. If items throw, the first exception is rethrown
// in the caller after all items have finished (the others still run).
void run_parallel(int64_t items, int threads, void (*fn)(void*, int64_t), void* ctx);

// The same for any callable body(int64_t item).
template <class Body>
void parallel_for(int64_t items, int threads, Body&& body) {
  if (items <= 0) return;
  if (threads <= 1 || items == 1) {
    for (int64_t i = 0; i < items; ++i) body(i);
    return;
  }
  using B = std::remove_reference_t<Body>;
  run_parallel(items, threads, [](void* ctx, int64_t i) { (*static_cast<B*>(ctx))(i); },
               const_cast<void*>(static_cast<const void*>(&body)));
}

// Threads worth using for `items` units of about `work` multiply-adds each: one when the
// whole job is too small to pay for waking a helper (~40k multiply-adds per thread).
int threads_for(int64_t items, double work_per_item);

}  // namespace cnn::ops::cpu
