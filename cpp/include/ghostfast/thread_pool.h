// A persistent pool for batch-1 latency: hundreds of sub-100-microsecond ops per inference, so waking threads
// must cost far less than an op. Workers spin on a generation counter for a while before sleeping; the
// calling thread always takes part. With one thread there are no workers and run() is a plain loop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace ghostfast {

class ThreadPool {
public:
    // fn(context, task) is called once for every task in [0, tasks).
    using TaskFn = void (*)(void* context, int64_t task);

    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int threads() const { return threads_; }

    // Runs all tasks and returns when every one has finished. Tasks are split into `threads` contiguous,
    // near-equal chunks (chunk i to thread i; the caller is thread 0), so a thread touches neighbouring rows.
    void run(int64_t tasks, TaskFn fn, void* context);

private:
    void worker_loop(int index);
    void run_chunk(int index);

    const int threads_;
    std::vector<std::thread> workers_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    // The current job, published before generation_ is bumped.
    int64_t tasks_ = 0;
    TaskFn fn_ = nullptr;
    void* context_ = nullptr;
};

}  // namespace ghostfast
