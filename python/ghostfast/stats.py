"""Summary statistics of per-iteration timing samples."""
from __future__ import annotations

import numpy as np


def summarize_ns(samples_ns: np.ndarray) -> dict[str, float]:
    """Median, mean, p10/p90/p99, std, min and max of nanosecond samples, in milliseconds."""
    s = np.asarray(samples_ns, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("samples must be a non-empty 1-D array")
    ms = s / 1e6
    p10, p50, p90, p99 = np.percentile(ms, [10, 50, 90, 99])
    return {
        "median_ms": float(p50), "mean_ms": float(ms.mean()), "p10_ms": float(p10), "p90_ms": float(p90),
        "p99_ms": float(p99), "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min_ms": float(ms.min()), "max_ms": float(ms.max()),
    }
