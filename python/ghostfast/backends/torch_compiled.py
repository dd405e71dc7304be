"""PyTorch with a compiled graph on the CPU: "torch-compiled" (torch.compile) and "torchscript".

"torch-compiled" is ``torch.compile`` with the Inductor backend and ``freezing=True`` (weights become
constants: BN folds into the convolutions, convolution weights are pre-packed for oneDNN, elementwise tails are
fused into generated C++ loops). It is the faster of the two CPU inference paths torch offers, which is why it
is the one called "torch-compiled". Measured here with ``ghostfast compare`` (torch 2.13 CPU, 2-vCPU AMD EPYC,
batch 1, 60 iterations in 6 interleaved rounds, 1 and 2 threads), its median over the frozen TorchScript
graph's was 0.70-0.81x on GhostNet 1.0x, 0.86-0.88x on MobileNetV3-Large, 0.57-0.62x on EfficientNet-B0
(SiLU and SE fused), 0.94-1.01x on ShuffleNetV2 1.0x and 0.95-1.08x on MobileNetV2: 0.83x as a geometric
mean. TorchScript is also deprecated as of torch 2.13.

The price is preparation: Inductor needs a C++ compiler and took 30-85 s per model and thread count on 2
cores with a cold cache (about 10 s when its on-disk FX-graph cache is warm), against 1-8 s for TorchScript.
So it is not in the default comparison; ask for it by name. Inductor bakes the thread count into the generated
loops, so each thread count compiles its own graph; ``torch._dynamo.reset()`` runs before each compile so that
many models of one class never hit Dynamo's recompile limit (past it, Dynamo silently falls back to eager).

"torchscript" (``torch.jit.trace`` -> ``freeze`` -> ``optimize_for_inference``) stays as the quick compiled
path: seconds to prepare, no compiler needed.
"""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import torch
import torch.nn as nn

from .. import _core
from .base import Backend, BackendUnavailable, Runner, register_backend


def _torchscript(model: nn.Module, x: torch.Tensor):
    with warnings.catch_warnings():
        # torch 2.13 marks torch.jit deprecated; the path still works and is what "torchscript" measures.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad():
            traced = torch.jit.trace(model.eval(), x, check_trace=False)
            module = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            for _ in range(2):  # the profiling executor specializes the graph on its first runs
                module(x)
    return module


def _inductor(model: nn.Module, x: torch.Tensor):
    import torch._dynamo
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    compiled = torch.compile(model.eval(), dynamic=False)
    # Compilation happens on the first call; freezing is patched for this compilation only.
    with inductor_config.patch(freezing=True), torch.inference_mode():
        compiled(x)
    return compiled


class TorchCompiledRunner(Runner):
    def __init__(self, backend: str, build, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        self.backend = backend
        self._saved_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)  # before compiling: Inductor generates code for this thread count
        self.threads = torch.get_num_threads()
        self.x = x.contiguous()
        try:
            self.module = build(model, self.x)
        except BaseException:
            self.close()
            raise

    def _forward(self):
        return self.module(self.x)

    def __call__(self) -> None:
        with torch.inference_mode():
            self._forward()

    def output(self) -> np.ndarray:
        with torch.inference_mode():
            return self._forward().numpy()

    def time(self, iters: int, warmup: int) -> np.ndarray:
        with torch.inference_mode():
            return _core.time_callable(self._forward, iters, warmup)

    def close(self) -> None:
        torch.set_num_threads(self._saved_threads)


class TorchInductor(Backend):
    name = "torch-compiled"
    description = "PyTorch torch.compile (Inductor, freezing); slow to prepare, needs a C++ compiler"

    def check_available(self) -> None:
        if not any(shutil.which(c) for c in ("g++", "clang++", "c++")):
            raise BackendUnavailable("torch.compile (Inductor) on the CPU needs a C++ compiler (g++ or clang++) "
                                     "on PATH")

    def prepare(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        self.check_available()
        return TorchCompiledRunner(self.name, _inductor, model, x, threads)


class TorchScript(Backend):
    name = "torchscript"
    description = "PyTorch TorchScript: trace + freeze + optimize_for_inference"

    def prepare(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        return TorchCompiledRunner(self.name, _torchscript, model, x, threads)


register_backend(TorchInductor())
register_backend(TorchScript())
