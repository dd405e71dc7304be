"""The ghostfast native engine, timed inside the C++ loop with no Python per iteration (GIL released)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..engine import compile as compile_engine
from .base import Backend, Runner, register_backend


class NativeRunner(Runner):
    backend = "native"

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        self.engine = compile_engine(model, input_size=tuple(x.shape[1:]), batch=x.shape[0], threads=threads or 1)
        self.threads = self.engine.threads
        self.x = np.ascontiguousarray(x.numpy(), dtype=np.float32)

    def __call__(self) -> None:
        self.engine.run(self.x)

    def output(self) -> np.ndarray:
        return self.engine.run(self.x)

    def time(self, iters: int, warmup: int) -> np.ndarray:
        return self.engine.time(self.x, iters, warmup)


class Native(Backend):
    name = "native"
    description = "ghostfast native engine (fused kernels, NHWC, BN folded)"

    def prepare(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        return NativeRunner(model, x, threads)


register_backend(Native())
