#include "ghostfast/thread_pool.h"

#include <stdexcept>
#include <string>
#include <system_error>

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

constexpr uint64_t kIndexMask = 0xffffffffull;
uint64_t pack(uint64_t job, uint64_t index) { return (job << 32) | index; }
}  // namespace

int checked_thread_count(int threads) {
    if (threads < 1 || threads > kMaxThreads)
        throw std::invalid_argument("threads must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                                    std::to_string(threads));
    return threads;
}

ThreadPool::ThreadPool(int threads) : threads_(checked_thread_count(threads)), ranges_(new Range[threads_]) {
    try {
        workers_.reserve(static_cast<size_t>(threads_ - 1));
        for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    } catch (const std::system_error& e) {
        // The destructor does not run for a constructor that throws, and the members' destructors would destroy
        // the condition variable under waiting workers (a hang) and joinable std::threads (std::terminate).
        const size_t started = workers_.size();
        stop_workers();
        throw std::runtime_error("could not start " + std::to_string(threads_ - 1) + " worker threads (threads=" +
                                 std::to_string(threads_) + ", " + std::to_string(started) +
                                 " had started and were stopped): " + e.what());
    } catch (...) {
        stop_workers();
        throw;
    }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_.store(true, std::memory_order_release);
        published_.generation.fetch_add(1, std::memory_order_acq_rel);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
}

// Thread `self` claims and runs tasks of job `job`: first its own range (the same contiguous share of every
// op, so a thread keeps working on the rows it produced in the previous op, from its own cache), then what is
// left of the others' ranges. A claim is a CAS on a range's (job, next index): it succeeds only while `job` is
// the current job, and then the job's slot (written before the job was published, rewritten only two jobs
// later) holds this job's function. A worker that woke late therefore never runs a task of a newer job with an
// older job's function: its CAS fails instead.
void ThreadPool::work_on(uint64_t job, int self) {
    const Slot& slot = published_.slots[job & 1];
    const TaskFn fn = slot.fn.load(std::memory_order_acquire);
    void* const context = slot.context.load(std::memory_order_acquire);
    const int64_t tasks = slot.tasks.load(std::memory_order_acquire);
    int64_t done = 0;
    for (int r = 0; r < threads_; ++r) {
        const int owner = (self + r) % threads_;
        std::atomic<uint64_t>& next = ranges_[owner].next;
        const int64_t end = tasks * (owner + 1) / threads_;
        uint64_t cur = next.load(std::memory_order_acquire);
        for (;;) {
            if ((cur >> 32) != (job & kIndexMask)) return finish(done);  // a newer job: this one is complete
            const int64_t index = static_cast<int64_t>(cur & kIndexMask);
            if (index >= end) break;
            if (!next.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_acquire))
                continue;
            fn(context, index);
            ++done;
            cur = next.load(std::memory_order_acquire);
        }
        // Its own share done, a thread reports it before looking at the others' shares: the caller is often
        // waiting for just that, and the look at the caller's range (a cache line the caller holds) would
        // otherwise delay the report by one transfer (a chain of two-task jobs: 0.94x and 1 / 1.064 per job).
        if (r == 0) finish(done), done = 0;
    }
    finish(done);
}

void ThreadPool::finish(int64_t done) {
    if (done) finished_.count.fetch_add(done, std::memory_order_acq_rel);
}

void ThreadPool::run(int64_t tasks, TaskFn fn, void* context) {
    if (tasks <= 0) return;
    if (threads_ == 1 || tasks == 1) {
        for (int64_t t = 0; t < tasks; ++t) fn(context, t);
        return;
    }
    const uint64_t job = job_.load(std::memory_order_relaxed) + 1;  // only this thread writes it
    job_.store(job, std::memory_order_relaxed);
    Slot& slot = published_.slots[job & 1];
    slot.fn.store(fn, std::memory_order_relaxed);
    slot.context.store(context, std::memory_order_relaxed);
    slot.tasks.store(tasks, std::memory_order_relaxed);
    finished_.count.store(0, std::memory_order_relaxed);
    for (int i = 0; i < threads_; ++i)
        ranges_[i].next.store(pack(job & kIndexMask, static_cast<uint64_t>(tasks * i / threads_)),
                              std::memory_order_release);
    // Publishing costs one store while every worker is spinning; the lock and the notify only when one sleeps.
    // No wake-up is lost: a worker registers in sleepers_ before it checks the generation under the lock, and
    // both sides use sequentially consistent operations, so either the worker sees this job and does not
    // sleep, or this thread sees the worker registered and notifies it under the lock (after it is waiting).
    published_.generation.store(job, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        wake_.notify_all();
    }
    // The caller works through its share, then takes what is left of the workers' shares: a worker that is
    // slow to wake (or descheduled by a busy machine) holds up at most the task it is running.
    work_on(job, 0);
    while (finished_.count.load(std::memory_order_acquire) != tasks) GF_PAUSE();
}

void ThreadPool::worker_loop(int self) {
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = published_.generation.load(std::memory_order_acquire);
        for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
            GF_PAUSE();
            gen = published_.generation.load(std::memory_order_acquire);
        }
        if (gen == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            sleepers_.fetch_add(1, std::memory_order_seq_cst);
            wake_.wait(lock, [&] { return published_.generation.load(std::memory_order_seq_cst) != seen; });
            sleepers_.fetch_sub(1, std::memory_order_relaxed);
            gen = published_.generation.load(std::memory_order_acquire);
        }
        seen = gen;
        if (stop_.load(std::memory_order_acquire)) return;
        work_on(gen, self);
    }
}

}  // namespace ghostfast
