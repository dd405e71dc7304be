// A persistent pool for batch-1 latency: hundreds of sub-100-microsecond ops per inference, so waking threads
// must cost far less than an op. Workers spin on a generation counter for a while before sleeping; the
// calling thread always takes part. With one thread there are no workers and run() is a plain loop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ghostfast {

// The most threads an engine (and so a pool) may have: the one bound that the engine's constructor, the Python
// front end (ghostfast._core.MAX_THREADS) and ghostfast-bench check, before any thread starts.
constexpr int kMaxThreads = 256;

// `threads` if it is in [1, kMaxThreads], else std::invalid_argument naming the range.
int checked_thread_count(int threads);

class ThreadPool {
public:
    // fn(context, task) is called once for every task in [0, tasks).
    using TaskFn = void (*)(void* context, int64_t task);

    // Starts threads - 1 workers (checked_thread_count first: nothing starts for a count out of range). If
    // one cannot start, the ones already started are stopped and joined, and std::runtime_error says how many
    // were asked for: a partial start never leaves workers waiting on a condition variable being destroyed.
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int threads() const { return threads_; }
    // Jobs handed to the workers so far (runs with one task, or with one thread, run inline and do not count):
    // the parallel regions, each a wake-up and a barrier. Safe to read from any thread.
    uint64_t jobs() const { return job_.load(std::memory_order_relaxed); }

    // Runs all tasks and returns when every one has finished. Thread i (the caller is 0) owns the i-th
    // contiguous share of the tasks and claims them one at a time; a thread that runs out takes what is left
    // of the others' shares, so the split adapts to a thread that starts late or runs slow. Not reentrant:
    // one caller at a time (the engine serializes runs).
    void run(int64_t tasks, TaskFn fn, void* context);

private:
    void worker_loop(int self);
    void work_on(uint64_t job, int self);
    void finish(int64_t done);
    void stop_workers();

    const int threads_;
    std::vector<std::thread> workers_;
    std::atomic<uint64_t> job_{0};  // the caller's job counter (atomic only so that jobs() may read it)
    // Job j's description lives in slots_[j & 1], written before j is published (see work_on).
    struct Slot {
        std::atomic<int64_t> tasks{0};
        std::atomic<TaskFn> fn{nullptr};
        std::atomic<void*> context{nullptr};
    };
    // What a waking worker reads, in one cache line that only the caller writes: one transfer per job.
    struct alignas(64) Published {
        std::atomic<uint64_t> generation{0};  // the latest published job (what spinning and sleeping workers wait on)
        Slot slots[2];
    };
    Published published_;
    struct alignas(64) Range {          // one cache line each: the threads claim concurrently
        std::atomic<uint64_t> next{0};  // (job number low 32 bits) << 32 | next unclaimed task index
    };
    struct alignas(64) Finished {       // its own line: workers add to it while the caller polls it
        std::atomic<int64_t> count{0};  // tasks of the current job that have completed
    };
    Finished finished_;
    std::atomic<int> sleepers_{0};  // workers waiting on wake_ (run() notifies only when there are any)
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::unique_ptr<Range[]> ranges_;      // per thread
};

}  // namespace ghostfast
