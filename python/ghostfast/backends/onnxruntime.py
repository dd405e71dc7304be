"""ONNX Runtime on the CPU, running an ONNX graph that ghostfast exports from the zoo model itself.

Session settings are the ones peer benchmarks use for batch-1 latency (../shared/research/runtime_latency.md):
``intra_op_num_threads`` = the requested threads, ``inter_op_num_threads`` = 1, all graph optimizations
(``ORT_ENABLE_ALL``: BN folding, conv+activation fusion, NCHWc layout), sequential execution. Input and output
are bound once (IOBinding) so an iteration is one ``run_with_iobinding`` call, with no per-call allocation.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn as nn

from .base import Backend, BackendUnavailable, Runner, register_backend
# The export lives in onnx_export (OpenVINO, ncnn and MNN convert from it too); these names stay importable here.
from .onnx_export import OPSET, _EXPORTS, export_onnx  # noqa: F401
from .onnx_export import fingerprint as _fingerprint  # noqa: F401

INSTALL_HINT = "pip install 'ghostfast[onnx]' (or: pip install onnx onnxruntime)"


def import_onnxruntime():
    """The onnxruntime module, or BackendUnavailable saying how to install it."""
    try:
        import onnx  # noqa: F401  (the exporter's graph format; checked here so the error names it)
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable(f"onnxruntime backends need the '{e.name or 'onnxruntime'}' package, which is "
                                 f"not installed: {INSTALL_HINT}") from None
    return onnxruntime


def session_options(ort, threads: int | None):
    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only: ORT warns about unused initializers after BN folding
    return so


class OrtCpuRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        ort = import_onnxruntime()
        self.session = ort.InferenceSession(export_onnx(model, x), session_options(ort, threads),
                                            providers=["CPUExecutionProvider"])
        # Without a thread count ORT uses one thread per physical core; report the logical count as an upper bound.
        self.threads = threads if threads is not None else (os.cpu_count() or 1)
        self.x = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        out = self.session.get_outputs()[0]
        self.y = np.empty([int(d) for d in out.shape], dtype=np.float32)
        self.binding = self.session.io_binding()
        self.binding.bind_cpu_input(self.session.get_inputs()[0].name, self.x)
        self.binding.bind_output(out.name, "cpu", 0, np.float32, list(self.y.shape), self.y.ctypes.data)

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def output(self) -> np.ndarray:
        self()
        return self.y.copy()

    def close(self) -> None:
        self.binding = self.session = None


class OnnxRuntimeCpu(Backend):
    name = "onnxruntime"
    description = "ONNX Runtime CPU (ORT_ENABLE_ALL, sequential, intra-op threads = threads)"

    def check_available(self) -> None:
        import_onnxruntime()

    def prepare(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        return OrtCpuRunner(model, x, threads)


register_backend(OnnxRuntimeCpu())
