"""ghostfast.bench(): result contents and clear errors on bad input."""
import numpy as np
import pytest
import torch

import ghostfast


def test_bench_result():
    r = ghostfast.bench("ghostnet_050", iters=5, warmup=1, threads=1, backend="torch")
    assert isinstance(r, ghostfast.BenchResult)
    assert (r.model, r.backend, r.threads, r.batch, r.iters, r.warmup) == ("ghostnet_050", "torch", 1, 1, 5, 1)
    assert r.samples_ns.shape == (5,)
    ms = r.samples_ns / 1e6
    assert r.median_ms == pytest.approx(np.median(ms)) and r.mean_ms == pytest.approx(ms.mean())
    assert r.p10_ms <= r.median_ms <= r.p90_ms <= r.p99_ms
    assert r.env["cpu"] and "torch" in r.env["versions"] and isinstance(r.env["isa"], list)
    text = repr(r)
    assert "ghostnet_050" in text and "median" in text and "torch" in text
    assert r.as_dict()["median_ms"] == r.median_ms


def test_bench_batch_and_size():
    r = ghostfast.bench("mobilenet_v3_small", iters=2, warmup=0, batch=3, input_size=160)
    assert r.input_shape == (3, 3, 160, 160) and r.batch == 3


def test_threads_are_set_for_the_run_and_restored():
    before = torch.get_num_threads()
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x

    r = ghostfast.bench(Probe(), iters=2, warmup=0, threads=1, input_size=8, backend="torch")
    # The first forward checks the input size before the run; the two timed ones run on one thread.
    assert r.threads == 1 and seen[1:] == [1, 1]
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("kwargs,exc", [
    ({"iters": 0}, ValueError), ({"iters": -5}, ValueError), ({"iters": 2.5}, TypeError),
    ({"threads": 0}, ValueError), ({"threads": -1}, ValueError), ({"batch": 0}, ValueError),
    ({"warmup": -1}, ValueError), ({"backend": "tensorrt"}, ValueError),
    ({"input_size": (4, 224, 224)}, ValueError), ({"input_size": 0}, ValueError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        ghostfast.bench("ghostnet_050", **{"iters": 2, **kwargs})


def test_unknown_model_suggests():
    with pytest.raises(ValueError, match="Did you mean.*ghostnet"):
        ghostfast.bench("ghostnet_1000", iters=2)
