"""The backend interface: every runtime prepares a model for one input, then the C++ loop times it.

A :class:`Backend` turns an eval-mode ``nn.Module`` and an example input into a :class:`Runner`. A runner owns
everything one timed inference needs (session, compiled graph, thread settings), so the timing loop measures
only inference. Runners whose inference is native code override :meth:`Runner.time` to run the C++ loop
without the GIL; the default times the runner's Python call.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn as nn

from .. import _core


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (missing package, no GPU); the message says what is missing."""


class Runner(ABC):
    """A model prepared on one backend for one input. ``runner()`` runs one inference."""

    backend: str
    threads: int

    @abstractmethod
    def __call__(self) -> None: ...

    @abstractmethod
    def output(self) -> np.ndarray:
        """The logits of one inference on the prepared input (for checks against torch)."""

    def time(self, iters: int, warmup: int) -> np.ndarray:
        """Per-iteration nanoseconds of ``iters`` inferences after ``warmup`` untimed ones."""
        return _core.time_callable(self, iters, warmup)

    def close(self) -> None:
        """Release the backend's resources and restore any global setting it changed."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Backend(ABC):
    name: str = ""
    description: str = ""

    def check_available(self) -> None:
        """Raise :class:`BackendUnavailable` if this backend cannot run on this machine."""

    @abstractmethod
    def prepare(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        """A runner for ``model`` on input ``x`` with ``threads`` intra-op threads (None: backend default)."""


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    _BACKENDS[backend.name] = backend
    return backend


def backend_names() -> list[str]:
    return list(_BACKENDS)


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a ValueError lists the known ones otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, got {type(name).__name__}")
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(_BACKENDS)}") from None
