"""The timing loop's own per-iteration overhead, next to a plain Python ``time.perf_counter`` loop.

Each benchmark runs a loop of N = 1000 iterations around an empty body; divide its time by N for the
per-iteration overhead. Run: ``pytest benchmarks/test_timing_overhead.py --benchmark-only``.
"""
import time

import pytest

from ghostfast import _core

N = 1000


def _noop():
    pass


def _python_perf_counter_loop(fn, n=N):
    samples = [0] * n
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples[i] = time.perf_counter_ns() - t0
    return samples


@pytest.mark.benchmark(group="timing-loop-overhead (1000 iterations)")
def test_cpp_loop_empty_native_body(benchmark):
    benchmark(_core.time_empty_loop, N)


@pytest.mark.benchmark(group="timing-loop-overhead (1000 iterations)")
def test_cpp_loop_python_noop(benchmark):
    benchmark(_core.time_callable, _noop, N, 0)


@pytest.mark.benchmark(group="timing-loop-overhead (1000 iterations)")
def test_python_perf_counter_loop_python_noop(benchmark):
    benchmark(_python_perf_counter_loop, _noop)
