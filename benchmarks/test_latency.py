"""Batch-1 latency of zoo models on PyTorch eager, per model x threads (pytest-benchmark).

``pytest benchmarks/test_latency_torch.py --benchmark-only --models all``; groups are models, so each table
compares thread counts (and, with later backends, runtimes) for one model.
"""
import pytest

import ghostfast
from ghostfast.backends import get_backend
from ghostfast.benchmark import prepare_model


@pytest.fixture
def runner(model_name, threads):
    _, module, x = prepare_model(model_name)
    with get_backend("torch").prepare(module, x, threads) as r:
        yield r


def test_torch_eager(benchmark, runner, model_name, threads):
    benchmark.group = model_name
    benchmark.extra_info.update(model=model_name, backend="torch", threads=threads,
                                macs=ghostfast.profile(model_name).macs)
    benchmark.pedantic(runner, rounds=30, warmup_rounds=5, iterations=1)
