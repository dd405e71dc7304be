"""Batch-1 latency of zoo models per backend x threads (pytest-benchmark), one group per model and threads.

    pytest benchmarks --benchmark-only                                   # ghostnet_100, mobilenet_v3_large
    pytest benchmarks --benchmark-only --models all --backends all --threads 1,2
    pytest benchmarks --benchmark-only --benchmark-autosave              # save a run, then later ...
    pytest benchmarks --benchmark-only --benchmark-compare               # ... compare against the last one

Each table compares the backends on one model at one thread count. Before a backend is timed, its output is
checked against torch eager (BN statistics randomized so the check means something); the check goes into the
saved JSON (``extra_info``). pytest-benchmark times the calls itself, one inference per round, and runs one
test after another: for ratios on a noisy machine use ``ghostfast compare``, which interleaves backends.
"""
import functools

import pytest
import torch

import ghostfast
from ghostfast.backends import BackendUnavailable, get_backend
from ghostfast.benchmark import prepare_model
from ghostfast.parity import check_output, randomize_batchnorm


@functools.lru_cache(maxsize=None)
def _model(model_name):
    """One model (randomized BN), input and torch reference per model name, shared by every backend."""
    _, module, x = prepare_model(model_name)
    randomize_batchnorm(module)
    with torch.inference_mode():
        reference = module(x).numpy()
    return module, x, reference


@pytest.fixture
def runner(model_name, threads, backend):
    module, x, reference = _model(model_name)
    be = get_backend(backend)
    try:
        be.check_available()
        r = be.prepare(module, x, threads)
    except BackendUnavailable as e:
        pytest.skip(f"{backend}: {e}")
    with r:
        check = check_output(r.output(), reference)
        assert check["check_ok"], f"{backend} output differs from torch: {check}"
        yield r, check


def test_latency(benchmark, runner, model_name, threads, backend):
    r, check = runner
    benchmark.group = f"{model_name} threads={threads}"
    benchmark.extra_info.update(model=model_name, backend=backend, threads=threads,
                                macs=ghostfast.profile(model_name).macs, **check)
    benchmark.pedantic(r, rounds=30, warmup_rounds=5, iterations=1)
