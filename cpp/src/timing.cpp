#include "ghostfast/timing.h"

namespace ghostfast {

std::vector<int64_t> time_empty_loop(int64_t iters) {
    // A compiler barrier keeps the empty body from being hoisted out of the timed region.
    return time_loop([] { asm volatile("" ::: "memory"); }, iters, 0);
}

std::vector<int64_t> steady_clock_reads(int64_t iters) {
    if (iters <= 0) throw std::invalid_argument("iters must be > 0");
    std::vector<int64_t> reads(static_cast<size_t>(iters));
    for (auto& r : reads)
        r = std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::steady_clock::now().time_since_epoch())
                .count();
    return reads;
}

}  // namespace ghostfast
