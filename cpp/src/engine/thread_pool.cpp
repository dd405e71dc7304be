#include "ghostfast/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GF_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define GF_PAUSE() __asm__ __volatile__("yield")
#else
#define GF_PAUSE() ((void)0)
#endif

namespace ghostfast {
namespace {
// About 50-100 microseconds of spinning: longer than the gap between two ops of one inference, much shorter
// than the gap between two inferences of a caller that is doing something else.
constexpr int kSpinIterations = 20000;
}  // namespace

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_.store(true, std::memory_order_release);
        generation_.fetch_add(1, std::memory_order_acq_rel);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunk(int index) {
    const int64_t begin = tasks_ * index / threads_;
    const int64_t end = tasks_ * (index + 1) / threads_;
    for (int64_t t = begin; t < end; ++t) fn_(context_, t);
}

void ThreadPool::run(int64_t tasks, TaskFn fn, void* context) {
    if (tasks <= 0) return;
    if (threads_ == 1 || tasks == 1) {
        for (int64_t t = 0; t < tasks; ++t) fn(context, t);
        return;
    }
    tasks_ = tasks;
    fn_ = fn;
    context_ = context;
    pending_.store(threads_ - 1, std::memory_order_relaxed);
    {
        // Taking the lock orders the bump against a worker that is about to sleep, so no wake-up is lost.
        std::lock_guard<std::mutex> lock(mutex_);
        generation_.fetch_add(1, std::memory_order_acq_rel);
    }
    wake_.notify_all();
    run_chunk(0);
    while (pending_.load(std::memory_order_acquire) != 0) GF_PAUSE();
}

void ThreadPool::worker_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = generation_.load(std::memory_order_acquire);
        for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
            GF_PAUSE();
            gen = generation_.load(std::memory_order_acquire);
        }
        if (gen == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            gen = generation_.load(std::memory_order_acquire);
        }
        seen = gen;
        if (stop_.load(std::memory_order_acquire)) return;
        run_chunk(index);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

}  // namespace ghostfast
