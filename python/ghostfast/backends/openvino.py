"""OpenVINO's CPU plugin on the ONNX graph ghostfast exports (``Core.read_model`` reads ONNX directly).

Settings, as OpenVINO documents them for batch-1 latency: ``PERFORMANCE_HINT: LATENCY``, ``NUM_STREAMS: 1``,
``INFERENCE_NUM_THREADS`` = the requested threads, and ``INFERENCE_PRECISION_HINT: f32``: without it the plugin
runs bf16 on CPUs with AVX-512 BF16 or AMX (outputs ~1e-3 off). The compiled model's properties and the runtime
precision of every executed node are read back, and a model that would not run in fp32 fails at prepare.
Input and output are bound once as tensors sharing the runner's numpy buffers, so an iteration is one ``infer``.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn as nn

from ._peers import PeerBackend, ConversionCache, import_module, require_onnx
from .base import Runner, register_backend
from .onnx_export import export_onnx

NAME = "openvino"
PACKAGES = "onnx openvino"
# Node precisions that are not fp32 arithmetic; integer ones (i32 shape arithmetic) are fine.
REDUCED = ("bf16", "f16", "fp16", "bfloat16", "float16", "f8", "u8", "i8")

_CACHE = ConversionCache(NAME)


def import_openvino():
    """The openvino module, or BackendUnavailable saying how to install it."""
    require_onnx(NAME, PACKAGES)
    return import_module(NAME, "openvino", "openvino", PACKAGES)


@functools.lru_cache(maxsize=None)
def _core():
    # One Core per process: it holds the plugin and its caches; each compiled model has its own settings.
    return import_openvino().Core()


def _read_model(model: nn.Module, x: torch.Tensor):
    def convert(folder):
        path = folder / "model.onnx"
        path.write_bytes(export_onnx(model, x))
        return {"onnx": path, "model": _core().read_model(str(path))}

    return _CACHE.get(model, x, convert)["model"]


def runtime_precisions(compiled) -> dict[str, int]:
    """How many executed nodes run at each precision (the plugin's ``runtimePrecision``), e.g. {'f32': 481}."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "runtimePrecision" in info:
            p = info["runtimePrecision"].astype(str)
            counts[p] = counts.get(p, 0) + 1
    return counts


class OpenVinoRunner(Runner):
    backend = NAME

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        ov = import_openvino()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = _core().compile_model(_read_model(model, x), "CPU", config)
        eff = self.effective()
        if eff["precision"] != "f32" or any(p in REDUCED for p in eff["runtime_precisions"]):
            raise RuntimeError(f"OpenVINO would not run this model in fp32: precision hint {eff['precision']}, "
                               f"node precisions {eff['runtime_precisions']}")
        if threads is not None and eff["threads"] != threads:
            raise RuntimeError(f"OpenVINO set INFERENCE_NUM_THREADS {eff['threads']}, not the {threads} asked for")
        self.threads = eff["threads"]
        self.x = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        self.y = np.empty([int(d) for d in self.compiled.output(0).get_shape()], dtype=np.float32)
        self.request = self.compiled.create_infer_request()
        self.request.set_input_tensor(ov.Tensor(self.x, shared_memory=True))
        self.request.set_output_tensor(ov.Tensor(self.y, shared_memory=True))
        # No inputs to dispatch and outputs left in place: the call is the inference and little else.
        self._infer = functools.partial(self.request.infer, None, share_inputs=True, share_outputs=True)

    def effective(self) -> dict:
        """The compiled model's settings as OpenVINO reports them."""
        c = self.compiled
        return {"threads": int(c.get_property("INFERENCE_NUM_THREADS")),
                "precision": c.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                "runtime_precisions": runtime_precisions(c),
                "performance_hint": str(c.get_property("PERFORMANCE_HINT")),
                "num_streams": int(c.get_property("NUM_STREAMS"))}

    def __call__(self) -> None:
        self._infer()

    def output(self) -> np.ndarray:
        self()
        return self.y.copy()

    def close(self) -> None:
        self._infer = self.request = self.compiled = None


DESCRIPTION = ("OpenVINO CPU on the ONNX export (INFERENCE_PRECISION_HINT f32, checked per node; "
               "INFERENCE_NUM_THREADS = threads, LATENCY hint, 1 stream)")
register_backend(PeerBackend(NAME, DESCRIPTION, OpenVinoRunner, import_openvino))
