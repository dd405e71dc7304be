"""``ghostfast.compare``: size and latency of many models on many backends, as records (list of dicts)."""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from .backends import get_backend
from .benchmark import _positive_int, bench, default_warmup
from .models import registry
from .profiler import profile
from .published import published


def _as_tuple(value, what: str) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (str, int)):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(value)
    raise TypeError(f"{what} must be a value or a sequence of values, got {type(value).__name__}")


def compare(
    models: Sequence[str] | str | None = None,
    backends: Sequence[str] | str = ("torch",),
    threads: Sequence[int] | int = (1, 2),
    batch: Sequence[int] | int = (1,),
    iters: int = 100,
    warmup: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Profile and time every model on every backend / thread count / batch; one record per combination.

    Records hold params, MACs, weight bytes, peak activation bytes, latency statistics, ms per GMAC and the
    published top-1 with its source. Ctrl-C stops the run and returns what was measured so far (each record
    of an interrupted run has ``"interrupted": True``).
    """
    names = [registry.resolve(m) for m in (_as_tuple(models, "models") or registry.names())]
    backend_list = [get_backend(b).name for b in _as_tuple(backends, "backends")]
    thread_list = [_positive_int(t, "threads") for t in _as_tuple(threads, "threads")]
    batch_list = [_positive_int(b, "batch") for b in _as_tuple(batch, "batch")]
    iters = _positive_int(iters, "iters")
    if not (names and backend_list and thread_list and batch_list):
        raise ValueError("models, backends, threads and batch must each name at least one value")
    for b in backend_list:
        get_backend(b).check_available()
    warmup = default_warmup(iters) if warmup is None else warmup

    from tqdm.auto import tqdm

    records: list[dict] = []
    bar = tqdm(names, desc="compare", unit="model", disable=not progress)
    try:
        for name in bar:
            bar.set_postfix_str(name)
            model = registry.create(name)  # one instance: every backend runs the same weights
            prof = profile(model)
            pub = published(name)
            # Backends innermost, so the runs being compared are adjacent in time on a noisy machine.
            for t, bs, be in itertools.product(thread_list, batch_list, backend_list):
                r = bench(model, iters=iters, backend=be, threads=t, batch=bs, warmup=warmup)
                records.append({
                    "model": name, "backend": be, "threads": r.threads, "batch": bs,
                    "input_size": "x".join(map(str, r.input_shape[2:])),
                    "params": prof.params, "macs": prof.macs,
                    "weight_bytes_fp32": prof.weight_bytes_fp32, "weight_bytes_fp16": prof.weight_bytes_fp16,
                    "weight_bytes_int8": prof.weight_bytes_int8,
                    "peak_activation_bytes": prof.peak_activation_bytes,
                    "median_ms": r.median_ms, "p10_ms": r.p10_ms, "p90_ms": r.p90_ms, "mean_ms": r.mean_ms,
                    "iters": iters,
                    "ms_per_gmac": r.median_ms / (prof.macs * bs / 1e9),
                    "top1": pub.get("top1"), "top1_source": "published: " + pub.get("source", ""),
                })
    except KeyboardInterrupt:
        for rec in records:
            rec["interrupted"] = True
    finally:
        bar.close()
    return records
