"""The C++ timing loop and the statistics on its samples."""
import numpy as np
import pytest

from ghostfast import _core
from ghostfast.stats import summarize_ns


def test_calls_warmup_plus_iters_and_returns_one_sample_each():
    calls = []
    samples = _core.time_callable(lambda: calls.append(1), 50, 7)
    assert len(calls) == 57
    assert samples.dtype == np.int64 and samples.shape == (50,)
    assert (samples >= 0).all()


def test_samples_measure_the_body():
    import time

    samples = _core.time_callable(lambda: time.sleep(0.002), 5, 0)
    assert (samples >= 2_000_000).all()  # every sample covers at least the 2 ms sleep


def test_steady_clock_is_monotonic():
    reads = _core.steady_clock_reads(100_000)
    assert (np.diff(reads) >= 0).all()


def test_empty_loop_returns_one_sample_per_iteration():
    # Its size is a benchmark (benchmarks/test_timing_overhead.py), not a test: tests never assert wall times.
    s = _core.time_empty_loop(10_000)
    assert s.shape == (10_000,) and s.dtype == np.int64 and (s >= 0).all()


def test_exception_in_body_propagates():
    def boom():
        raise KeyError("stop")

    with pytest.raises(KeyError):
        _core.time_callable(boom, 10, 0)


@pytest.mark.parametrize("iters,warmup", [(0, 0), (-1, 0), (5, -1)])
def test_bad_counts(iters, warmup):
    with pytest.raises(ValueError):
        _core.time_callable(lambda: None, iters, warmup)


def test_statistics():
    ns = np.arange(1, 101, dtype=np.int64) * 1_000_000  # 1..100 ms
    s = summarize_ns(ns)
    assert s["median_ms"] == pytest.approx(50.5)
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["p10_ms"] == pytest.approx(np.percentile(np.arange(1, 101), 10))
    assert s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["std_ms"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert (s["min_ms"], s["max_ms"]) == (1.0, 100.0)
    with pytest.raises(ValueError):
        summarize_ns(np.array([], dtype=np.int64))
