"""``ghostfast.bench``: latency of one model on one backend, timed by the C++ loop."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np

from . import env
from .stats import summarize_ns

# What ``ghostfast.bench`` and ``ghostfast bench`` do without arguments: one constant for both. This module
# imports torch only inside its functions, so the command line reads these without importing torch.
DEFAULT_BACKEND = "native"
DEFAULT_ITERS = 1000
# Every backend in ghostfast.backends' registry, in its order (a test checks they agree): the command line's
# choices, listed without importing torch.
BACKENDS = ("native", "torch", "torch-compiled", "torchscript", "onnxruntime", "torch-cuda", "onnxruntime-cuda",
            "openvino", "litert", "ncnn", "mnn")
# The CPU runtimes the native engine competes with (a deployment would pick one of them instead): the report's
# best-peer table takes the fastest of these per model and thread count. Torch is the reference, not a peer.
PEER_BACKENDS = ("onnxruntime", "openvino", "litert", "ncnn", "mnn")
# A run expected to take longer than this (from the warm-up's time) shows a progress bar; its iterations then run
# as C++ loops of at least CHUNK_S each, so the bar adds no per-iteration cost.
PROGRESS_AFTER_S = 2.0
CHUNK_S = 0.5


@dataclass(frozen=True, repr=False)
class BenchResult:
    """Per-iteration samples of one timed run and their statistics (milliseconds)."""

    model: str
    backend: str
    threads: int
    batch: int
    input_shape: tuple[int, ...]
    iters: int
    warmup: int
    samples_ns: np.ndarray
    env: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_stats", summarize_ns(self.samples_ns))

    median_ms = property(lambda self: self._stats["median_ms"])
    mean_ms = property(lambda self: self._stats["mean_ms"])
    p10_ms = property(lambda self: self._stats["p10_ms"])
    p90_ms = property(lambda self: self._stats["p90_ms"])
    p99_ms = property(lambda self: self._stats["p99_ms"])
    std_ms = property(lambda self: self._stats["std_ms"])
    min_ms = property(lambda self: self._stats["min_ms"])

    def as_dict(self, samples: bool = False) -> dict:
        """JSON-friendly record; ``samples=True`` adds the raw nanosecond samples."""
        d = {"model": self.model, "backend": self.backend, "threads": self.threads, "batch": self.batch,
             "input_shape": list(self.input_shape), "iters": self.iters, "warmup": self.warmup, **self._stats,
             "env": self.env}
        if samples:
            d["samples_ns"] = self.samples_ns.tolist()
        return d

    def __repr__(self) -> str:
        s = self._stats
        return (
            f"BenchResult({self.model} on {self.backend}, threads={self.threads}, batch={self.batch}, "
            f"input {'x'.join(map(str, self.input_shape))}: median {s['median_ms']:.3f} ms, "
            f"mean {s['mean_ms']:.3f}, p10 {s['p10_ms']:.3f}, p90 {s['p90_ms']:.3f}, p99 {s['p99_ms']:.3f}, "
            f"std {s['std_ms']:.3f}; {self.iters} iters after {self.warmup} warm-up; "
            f"{self.env.get('cpu', '?')} [{' '.join(self.env.get('isa', []))}])"
        )


def _positive_int(value, what: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be a positive int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value}")
    return int(value)


def default_warmup(iters: int) -> int:
    """10% of the timed iterations, at least 5 and at most 500."""
    return max(5, min(500, iters // 10))


def prepare_model(model, input_size=None, batch: int = 1):
    """(label, eval-mode module, random input) for a zoo name or a module, with the input checked by a forward."""
    import torch
    import torch.nn as nn

    from .models import registry
    from .profiler import input_shape, run_forward

    batch = _positive_int(batch, "batch")
    if isinstance(model, str):
        s = registry.spec(model)
        label, module = s.name, registry.create(s.name)
        size = input_size if input_size is not None else s.input_size
    elif isinstance(model, nn.Module):
        label, module = getattr(model, "zoo_name", type(model).__name__), model.eval()
        if input_size is None and not hasattr(model, "zoo_name"):
            raise ValueError("input_size is required for a module that is not from the zoo")
        size = input_size if input_size is not None else registry.spec(model.zoo_name).input_size
    else:
        raise TypeError(f"model must be a zoo model name or a torch.nn.Module, got {type(model).__name__}")
    shape = (batch, *input_shape(size)[1:])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    run_forward(module, x, label)  # a wrong input size fails here, with a ValueError naming it
    return label, module, x


def bench(
    model,
    iters: int = DEFAULT_ITERS,
    backend: str = DEFAULT_BACKEND,
    threads: int | None = None,
    batch: int = 1,
    warmup: int | None = None,
    input_size=None,
    progress: bool | None = None,
) -> BenchResult:
    """Time ``iters`` inferences of ``model`` (a zoo name or ``nn.Module``) on ``backend``.

    ``backend``: ``"native"`` (ghostfast's engine, the default), ``"torch"``, ``"onnxruntime"``, ... (see
    :data:`BACKENDS`). ``threads``: intra-op threads for this run (restored afterwards); None keeps the backend's
    default (the native engine: 1). ``warmup``: untimed iterations first (default :func:`default_warmup`).
    ``input_size``: H, (H, W) or (C, H, W); the zoo model's own size by default. ``progress``: a progress bar on
    stderr; None (default) shows one when the warm-up says the run will take more than :data:`PROGRESS_AFTER_S`.
    """
    from .backends import get_backend

    iters = _positive_int(iters, "iters")
    threads = _positive_int(threads, "threads", allow_none=True)
    if warmup is None:
        warmup = default_warmup(iters)
    elif isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    be = get_backend(backend)
    be.check_available()
    label, module, x = prepare_model(model, input_size, batch)
    with be.prepare(module, x, threads) as runner:
        samples = time_runner(runner, iters, int(warmup), progress, desc=f"bench {label} [{be.name}]")
        used_threads = runner.threads
    return BenchResult(label, be.name, used_threads, x.shape[0], tuple(x.shape), iters, int(warmup), samples,
                       env.describe())


def time_runner(runner, iters: int, warmup: int, progress: bool | None = None, desc: str = "bench") -> np.ndarray:
    """``iters`` per-iteration nanosecond samples of ``runner`` after ``warmup`` untimed iterations.

    The warm-up's own times (or, without warm-up, the first timed iteration's) estimate the run's length. A run
    expected to take more than :data:`PROGRESS_AFTER_S` (or any run with ``progress=True``) shows a tqdm bar and
    runs as consecutive C++ loops (``runner.time``) of at least :data:`CHUNK_S` each whose samples are
    concatenated: the per-iteration cost is the C++ loop's, as in one call; the bar moves between loops.
    """
    if warmup:
        estimate = np.asarray(runner.time(warmup, 0))  # warm-up iterations, timed only for the estimate
        parts = []
    else:
        parts = [np.asarray(runner.time(1, 0))]
        estimate = parts[0]
    per_iter_s = float(np.median(estimate)) / 1e9 if estimate.size else 0.0
    done = sum(len(p) for p in parts)
    show = progress if progress is not None else per_iter_s * (iters - done) > PROGRESS_AFTER_S
    if not show:
        if iters > done:
            parts.append(np.asarray(runner.time(iters - done, 0)))
        return np.concatenate(parts)
    from tqdm.auto import tqdm

    chunk = max(1, math.ceil(CHUNK_S / per_iter_s)) if per_iter_s > 0 else iters
    with tqdm(total=iters, initial=done, desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True) as bar:
        while done < iters:
            n = min(chunk, iters - done)
            parts.append(np.asarray(runner.time(n, 0)))
            done += n
            bar.update(n)
    return np.concatenate(parts)
