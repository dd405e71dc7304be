// The timing loop shared by every backend: warm-up calls, then one steady-clock sample per iteration.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace ghostfast {

// Runs `body()` `warmup` times untimed, then `iters` times, recording the nanoseconds of each call.
// `body` is a template parameter so a native body is inlined into the loop: the only per-iteration cost the
// loop adds is two steady_clock reads and one store (measured by time_empty_loop()).
template <class Body>
std::vector<int64_t> time_loop(Body&& body, int64_t iters, int64_t warmup) {
    if (iters <= 0) throw std::invalid_argument("iters must be > 0");
    if (warmup < 0) throw std::invalid_argument("warmup must be >= 0");
    using clock = std::chrono::steady_clock;
    for (int64_t i = 0; i < warmup; ++i) body();
    std::vector<int64_t> samples(static_cast<size_t>(iters));
    for (int64_t i = 0; i < iters; ++i) {
        const auto t0 = clock::now();
        body();
        const auto t1 = clock::now();
        samples[static_cast<size_t>(i)] = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
    }
    return samples;
}

// The loop above around an empty body: its own per-iteration overhead.
std::vector<int64_t> time_empty_loop(int64_t iters);

// Start times (steady clock, ns since its epoch) of `iters` consecutive clock reads; used by tests to check that
// the clock the loop uses is monotonic on this machine.
std::vector<int64_t> steady_clock_reads(int64_t iters);

}  // namespace ghostfast
