// The CPU ops' thread pool (see thread_pool.hpp).
//
// One job at a time. Its state is one 64-bit word: generation (16 bits) | item count (24) |
// next unclaimed item (24). A thread claims item i by moving the word from (g, n, i) to
// (g, n, i + 1) with a compare-and-swap, so a claim can only succeed on a live job, and the
// job's function and context (written before the word was published) are read only after a
// successful claim. The caller publishes the word, claims items itself, then waits until
// the finished count reaches the item count.
#include "kernels/cpu/thread_pool.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CNN_PAUSE() _mm_pause()
#else
#define CNN_PAUSE() ((void)0)
#endif

namespace cnn::ops::cpu {
namespace {

constexpr int kItemBits = 24;
constexpr uint64_t kItemMask = (uint64_t(1) << kItemBits) - 1;
// Pause iterations a helper spins for the next job before sleeping (~50-100 us).
constexpr int kSpin = 2000;

thread_local bool t_in_job = false;

class Pool {
 public:
  ~Pool() { resize(0); }

  // Runs the job with `helpers` helper threads (the caller is one more).
  void run(int64_t items, int helpers, void (*fn)(void*, int64_t), void* ctx) {
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock() || items > int64_t(kItemMask)) {  // another thread's job is running
      for (int64_t i = 0; i < items; ++i) fn(ctx, i);
      return;
    }
    if (helpers != int(workers_.size())) resize(helpers);
    fn_ = fn;
    ctx_ = ctx;
    done_.store(0, std::memory_order_relaxed);
    const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
    state_.store((uint64_t(gen & 0xFFFF) << 48) | (uint64_t(items) << kItemBits), std::memory_order_release);
    generation_.store(gen, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    t_in_job = true;
    const int64_t mine = work();
    t_in_job = false;
    // Wait only for items a helper has claimed and not yet finished.
    int spins = 0;
    while (done_.load(std::memory_order_acquire) + mine < items) {
      if (++spins < kSpin) CNN_PAUSE();
      else std::this_thread::yield();
    }
    // An item that threw (on any thread) is rethrown here, once every item has finished, so
    // no helper still uses the job's function or context when the caller unwinds.
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  // Claims and runs items of the live job until none is left; returns how many it ran.
  int64_t work() {
    int64_t ran = 0;
    uint64_t cur = state_.load(std::memory_order_acquire);
    for (;;) {
      const uint64_t items = (cur >> kItemBits) & kItemMask, next = cur & kItemMask;
      if (next >= items) return ran;
      if (!state_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      try {
        fn_(ctx_, int64_t(next));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
      ++ran;
      cur = state_.load(std::memory_order_acquire);
    }
  }

  void helper_loop() {
    t_in_job = true;  // a helper never starts a nested job
    uint32_t seen = generation_.load(std::memory_order_acquire);
    for (;;) {
      uint32_t g = seen;
      for (int i = 0; i < kSpin && g == seen && !stop_.load(std::memory_order_relaxed); ++i) {
        CNN_PAUSE();
        g = generation_.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] {
          g = generation_.load(std::memory_order_seq_cst);
          return g != seen || stop_.load(std::memory_order_relaxed);
        });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      if (stop_.load(std::memory_order_relaxed)) return;
      seen = g;
      const int64_t ran = work();
      if (ran) done_.fetch_add(ran, std::memory_order_release);
    }
  }

  void resize(int helpers) {
    if (!workers_.empty()) {
      {
        std::lock_guard<std::mutex> lock(sleep_mutex_);
        stop_.store(true);
        wake_.notify_all();
      }
      for (auto& t : workers_) t.join();
      workers_.clear();
      stop_.store(false);
    }
    for (int i = 0; i < helpers; ++i) workers_.emplace_back([this] { helper_loop(); });
  }

  std::mutex run_mutex_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> state_{0};
  std::atomic<uint32_t> generation_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  void (*fn_)(void*, int64_t) = nullptr;
  void* ctx_ = nullptr;
  std::mutex error_mutex_;
  std::exception_ptr error_;  // the first exception an item threw
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

int pool_threads() { return t_in_job ? 1 : std::max(1, omp_get_max_threads()); }

void run_parallel(int64_t items, int threads, void (*fn)(void*, int64_t), void* ctx) {
  threads = std::min<int64_t>(threads, items);
  if (threads <= 1 || t_in_job) {
    for (int64_t i = 0; i < items; ++i) fn(ctx, i);
    return;
  }
  pool().run(items, threads - 1, fn, ctx);
}

int threads_for(int64_t items, double work_per_item) {
  constexpr double kMinWorkPerThread = 4e4;
  const double total = double(items) * work_per_item;
  const int t = int(std::min<double>(pool_threads(), std::max(1.0, total / kMinWorkPerThread)));
  return int(std::max<int64_t>(1, std::min<int64_t>(t, items)));
}

}  // namespace cnn::ops::cpu
