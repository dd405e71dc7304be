"""What the paired benchmarks share: the median of a batch of runs, timed right after another engine ran."""
from __future__ import annotations

import statistics
import time


def batch_median(fn, runs: int) -> float:
    """Median seconds of ``runs`` calls of ``fn``, after one untimed call (another engine ran last)."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
