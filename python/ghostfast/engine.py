"""The native engine: ``compile`` a zoo model (or a model built from zoo blocks), ``run`` it, ``save`` / ``load``.

This module imports numpy and the compiled core only; ``compile`` imports torch when called. A saved engine
loads and runs in a process that never imports torch.

Concurrency: ``Engine.run`` releases the GIL. Calls on one engine from several Python threads are safe and run
one at a time (they share the engine's activation arena); for parallel inference use one engine per thread,
each with its own ``threads`` setting. A child process made by ``fork()`` (multiprocessing's fork start method)
may run engines built before the fork, even if another thread was inside ``run`` at that moment: the child's
first ``run`` gives the engine a fresh lock and thread pool.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import _core
from .program import ModelFileError, Program, load_program, save_program

# Every kernel table a build can have; which of them this CPU and build can run: ``_core.kernels.available()``.
KERNEL_TABLES = ("generic", "avx2", "avx512", "neon")
# The most intra-op threads an engine may have (checked here and in C++, before any thread starts).
MAX_THREADS = _core.MAX_THREADS


KERNEL_CHOICES = ("measure", "fixed")


def _op_isas(kernel_choice, isa, num_ops: int) -> list[str]:
    """The engine core's per-op table list for ``kernel_choice`` (an empty list lets the engine measure)."""
    if isinstance(kernel_choice, str):
        if kernel_choice not in KERNEL_CHOICES:
            raise ValueError(f"kernel_choice must be 'measure', 'fixed' or one table name per op, got {kernel_choice!r}")
        return [] if kernel_choice == "measure" else [isa or ""] * num_ops
    try:
        names = list(kernel_choice)
    except TypeError:
        raise TypeError(f"kernel_choice must be a str or a sequence of table names, "
                        f"got {type(kernel_choice).__name__}") from None
    if len(names) != num_ops or not all(isinstance(n, str) for n in names):
        raise ValueError(f"kernel_choice as a sequence needs one table name (str) per op: {num_ops} ops, "
                         f"got {len(names)} entries")
    for n in names:
        _check_run_args(1, n or None)
    return names


def _check_run_args(threads, isa) -> None:
    """ValueError for a thread count or kernel table that no program could run with."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an int in [1, {MAX_THREADS}], got {threads!r}")
    if isa is not None and isa not in KERNEL_TABLES:
        raise ValueError(f"isa must be None or one of {', '.join(map(repr, KERNEL_TABLES))}, got {isa!r}")
    if isa is not None and isa not in _core.kernels.available():
        raise ValueError(f"kernel table {isa!r} is not available on this CPU or in this build "
                         f"(available: {', '.join(_core.kernels.available())})")


class Engine:
    """A compiled model. ``engine.run(x)`` maps a float32 NCHW batch (numpy or torch) to logits (numpy)."""

    def __init__(self, program: Program, threads: int = 1, isa: str | None = None, kernel_choice="measure") -> None:
        _check_run_args(threads, isa)
        self.program = program
        op_isas = _op_isas(kernel_choice, isa, len(program.ops))
        self._core = _core.Engine(**program.core_args(), threads=threads, isa=isa or "", op_isas=op_isas)

    # ---- running -----------------------------------------------------------------------------------------
    def run(self, x) -> np.ndarray:
        """Logits (N, classes) for ``x``: float32, NCHW, C-contiguous, 1 <= N <= max_batch."""
        return self._core.run(x)

    __call__ = run

    def time(self, x, iters: int, warmup: int = 0) -> np.ndarray:
        """Per-iteration nanoseconds of ``iters`` runs on ``x``, timed in C++ without the GIL."""
        return self._core.time(x, iters, warmup)

    def profile(self, x=None, iters: int = 20) -> dict:
        """Mean time per op and per op type over ``iters`` runs (``x``: random input at max batch 1 if None)."""
        if x is None:
            x = np.random.default_rng(0).standard_normal((1, *self.input_shape), dtype=np.float32)
        rows = [{"op": n, "type": t, "mean_us": ns / 1e3, "isa": isa or None}
                for n, t, ns, isa in self._core.profile_ops(x, iters)]
        by_type: dict[str, float] = defaultdict(float)
        for r in rows:
            # computed inside another row: a Ghost module streaming into it, or a 1x1 reading through a shuffle
            if r["type"] not in ("streamed", "folded"):
                by_type[r["type"]] += r["mean_us"]
        return {"ops": rows, "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
                "total_us": sum(r["mean_us"] for r in rows)}

    # ---- properties --------------------------------------------------------------------------------------
    max_batch = property(lambda self: self._core.max_batch)
    input_shape = property(lambda self: tuple(self._core.input_shape), doc="(C, H, W) of one image")
    classes = property(lambda self: self._core.classes)
    threads = property(lambda self: self._core.threads)
    isa = property(lambda self: self._core.isa, doc="the kernel table in use: generic, avx2, avx512 or neon")
    op_isas = property(lambda self: list(self._core.op_isas),
                       doc="the kernel table of each op: ``isa``, or the half-width table where it measured faster")
    arena_bytes = property(lambda self: self._core.arena_bytes, doc="activation memory, planned at compile time")
    packed_weight_bytes = property(lambda self: self._core.packed_weight_bytes)
    num_ops = property(lambda self: self._core.num_ops)
    parallel_regions = property(lambda self: self._core.parallel_regions,
                                doc="thread-pool jobs (a wake-up and a barrier each) run so far, over all runs")
    model = property(lambda self: self.program.meta.get("model", "?"))

    def save(self, path) -> None:
        """Write a versioned compiled-model file (see :mod:`ghostfast.program`)."""
        save_program(self.program, path)

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (f"Engine({self.model}, input (N<={self.max_batch}, {c}, {h}, {w}) -> {self.classes} classes, "
                f"{self.num_ops} ops, {self.isa}, threads={self.threads}, arena {self.arena_bytes / 2**20:.2f} MiB)")


def compile(model_or_name, input_size=None, batch: int = 1, threads: int = 1, isa: str | None = None,  # noqa: A001
            kernel_choice="measure") -> Engine:
    """Lower an eval-mode zoo model (name or module) to the native engine.

    ``input_size``: H, (H, W) or (C, H, W); the zoo model's own size by default. ``batch``: the largest batch
    ``run`` will accept. ``threads``: 1 runs on the calling thread only. ``isa``: force a kernel table.
    ``kernel_choice``: ``"measure"`` lets an op run on the table of half the vector width (AVX-512 -> AVX2)
    where that timed faster on this machine when the engine was built (``Engine.op_isas`` shows the choice;
    narrow channel counts such as GhostNet's); ``"fixed"`` keeps every op on ``isa``; a sequence gives each
    op's table by name.
    """
    import torch.nn as nn

    from .lower import lower
    from .models import registry
    from .profiler import input_shape

    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 4096:
        raise ValueError(f"batch must be an int in [1, 4096], got {batch!r}")
    if isinstance(model_or_name, str):
        spec = registry.spec(model_or_name)
        model, label, default = registry.create(spec.name), spec.name, spec.input_size
    elif isinstance(model_or_name, nn.Module):
        model = model_or_name
        label = getattr(model, "zoo_name", type(model).__name__)
        default = registry.spec(model.zoo_name).input_size if hasattr(model, "zoo_name") else None
    else:
        raise TypeError(f"expected a model name or torch.nn.Module, got {type(model_or_name).__name__}")
    size = input_size if input_size is not None else default
    if size is None:
        raise ValueError("input_size is required for a module that is not from the zoo")
    shape = input_shape(size)[1:]
    was_training = model.training
    model.eval()
    try:
        program = lower(model, shape, batch)
    finally:
        model.train(was_training)
    program.meta = {"model": label, "input_shape": list(shape)}
    return Engine(program, threads=threads, isa=isa, kernel_choice=kernel_choice)


def load(path, threads: int = 1, isa: str | None = None, kernel_choice="measure") -> Engine:
    """An engine from a file written by :meth:`Engine.save`; needs numpy only.

    A file the engine refuses (an inconsistent program, or one that needs more memory than this machine has)
    raises :class:`~ghostfast.program.ModelFileError` naming the file; bad ``threads`` / ``isa`` / ``kernel_choice``
    stay ValueErrors. ``kernel_choice``: as for :func:`compile`.
    """
    _check_run_args(threads, isa)
    program = load_program(path)
    _op_isas(kernel_choice, isa, len(program.ops))  # a bad kernel_choice is the caller's ValueError, not the file's
    try:
        return Engine(program, threads=threads, isa=isa, kernel_choice=kernel_choice)
    except ModelFileError:
        raise
    except ValueError as e:  # the C++ constructor's validation: the arguments were checked above
        raise ModelFileError(f"{path}: the engine refuses this model file: {e}") from e
