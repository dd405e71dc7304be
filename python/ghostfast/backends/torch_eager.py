"""PyTorch eager mode on the CPU: the reference every other backend is checked against."""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn as nn

from .. import _core
from .base import Backend, Runner, register_backend


class TorchEagerRunner(Runner):
    backend = "torch"

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        self._saved_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.model = model.eval()
        self.x = x.contiguous()
        self._call = functools.partial(self.model, self.x)

    def __call__(self) -> None:
        with torch.inference_mode():
            self._call()

    def output(self) -> np.ndarray:
        with torch.inference_mode():
            return self._call().numpy()

    def time(self, iters: int, warmup: int) -> np.ndarray:
        # One inference_mode scope around the whole loop, so the per-call cost is the forward alone.
        with torch.inference_mode():
            return _core.time_callable(self._call, iters, warmup)

    def close(self) -> None:
        torch.set_num_threads(self._saved_threads)


class TorchEager(Backend):
    name = "torch"
    description = "PyTorch eager, CPU, inference_mode"

    def prepare(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        return TorchEagerRunner(model, x, threads)


register_backend(TorchEager())
