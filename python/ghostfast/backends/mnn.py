"""MNN on the CPU: the ONNX graph ghostfast exports, converted to ``.mnn`` by MNN's converter core.

The converter is the wheel's ``_tools.mnnconvert``, called directly (it is what ``MNNConvert`` runs). The Python
entry points around it (``MNN.tools.mnnconvert``, the ``mnnconvert`` script) import ``MNN.tools.utils.log``,
which runs ``pip install -U aliyun-log-python-sdk`` through the system pip and sends telemetry, so nothing here
imports ``MNN.tools``. Weights stay fp32 (no ``--fp16``, no weight quantization) and are checked to take 4 bytes
each. The session runs on the CPU backend with ``precision: normal`` (fp32 on x86) and ``numThread`` = the
requested threads, read back with ``getSessionInfo``.

An iteration copies the input into the session's input tensor and runs the session: MNN's memory plan reuses
the input tensor's memory for intermediate results, so after one run it no longer holds the input. The host
tensor the copy reads is made once.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ._peers import (PeerBackend, ConversionCache, ConversionError, check_fp32_weights, import_module, native_output,
                     require_onnx)
from .base import Runner, register_backend
from .onnx_export import export_onnx

NAME = "mnn"
PACKAGES = "onnx mnn"
# Interpreter::SessionInfoCode::THREAD_NUMBER in MNN's C++ API.
SESSION_INFO_THREADS = 4

_CACHE = ConversionCache(NAME)


def import_mnn():
    """The MNN module (PyPI: mnn), or BackendUnavailable saying how to install it."""
    require_onnx(NAME, PACKAGES)
    with native_output():  # MNN prints the CPU's fp16 / dot-product support when it loads
        return import_module(NAME, "MNN", "mnn", PACKAGES)


def _converter():
    """The converter core: the wheel's top-level ``_tools`` extension, never ``MNN.tools`` (see the docstring)."""
    import_mnn()
    with native_output():
        return import_module(NAME, "_tools", "mnn", PACKAGES)


def convert(model: nn.Module, x: torch.Tensor, folder) -> dict:
    """ONNX -> .mnn with fp32 weights in ``folder``."""
    tools = _converter()
    onnx_path, mnn_path = folder / "model.onnx", folder / "model.mnn"
    onnx_path.write_bytes(export_onnx(model, x))
    args = ["mnnconvert", "-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(mnn_path),
            "--bizCode", "ghostfast"]
    # The converter prints its progress from C++; it also returns True on failure, so the file decides.
    with native_output() as log:
        tools.mnnconvert(args)
    if not (mnn_path.is_file() and mnn_path.stat().st_size):
        raise ConversionError("MNN's converter did not write the model: " + " | ".join(log.tail(15).splitlines()))
    return {"mnn": mnn_path}


def session_threads(interpreter, session) -> int:
    """The session's thread count as MNN reports it. The binding returns the C++ int through a float, so a
    value that is not a whole number is that int's bit pattern read as a float."""
    value = interpreter.getSessionInfo(session, SESSION_INFO_THREADS)
    if float(value).is_integer() and value >= 1:
        return int(value)
    return int(np.array(value, dtype=np.float32).view(np.int32))


class MnnRunner(Runner):
    backend = NAME

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        MNN = import_mnn()
        files = _CACHE.get(model, x, lambda folder: convert(model, x, folder))
        self.bytes_per_weight = check_fp32_weights(NAME, [files["mnn"]], model)
        self.config = {"backend": "CPU", "precision": "normal"}
        if threads is not None:
            self.config["numThread"] = threads
        with native_output() as log:
            self.interpreter = MNN.Interpreter(str(files["mnn"]))
            self.session = self.interpreter.createSession(self.config)
        if self.session is None:
            raise ConversionError("MNN could not create a session: " + log.tail(5))
        eff = self.effective()
        if threads is not None and eff["threads"] != threads:
            raise RuntimeError(f"MNN runs {eff['threads']} threads, not the {threads} asked for")
        self.threads = eff["threads"]
        self.x = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        self.input = self.interpreter.getSessionInput(self.session)
        if tuple(self.input.getShape()) != self.x.shape:
            raise RuntimeError(f"MNN's input is {tuple(self.input.getShape())}, not {self.x.shape}")
        self.host_in = MNN.Tensor(list(self.x.shape), MNN.Halide_Type_Float, self.x, MNN.Tensor_DimensionType_Caffe)
        out = self.interpreter.getSessionOutput(self.session)
        self.out_shape = [int(d) for d in out.getShape()]
        self.y = np.zeros(self.out_shape, dtype=np.float32)
        self.host_out = MNN.Tensor(self.out_shape, MNN.Halide_Type_Float, self.y, MNN.Tensor_DimensionType_Caffe)
        self._copy_in, self._run = self.input.copyFromHostTensor, self.interpreter.runSession

    def effective(self) -> dict:
        """Threads as the session reports them; MNN's Python API cannot report the arithmetic precision, so the
        precision asked for and the weights' bytes per element (4: fp32) stand in for it."""
        return {"threads": session_threads(self.interpreter, self.session), "precision": self.config["precision"],
                "bytes_per_weight": self.bytes_per_weight}

    def __call__(self) -> None:
        self._copy_in(self.host_in)
        self._run(self.session)

    def output(self) -> np.ndarray:
        self._copy_in(self.host_in)
        code = self._run(self.session)
        if code not in (0, None):
            raise RuntimeError(f"MNN runSession failed with code {code}")
        self.interpreter.getSessionOutput(self.session).copyToHostTensor(self.host_out)
        return np.array(self.host_out.getNumpyData(), dtype=np.float32).reshape(self.out_shape)

    def close(self) -> None:
        self._copy_in = self._run = self.input = self.host_in = self.host_out = self.session = self.interpreter = None


DESCRIPTION = ("MNN CPU session from the ONNX export (converter core, fp32 weights), precision normal, "
               "numThread = threads")
register_backend(PeerBackend(NAME, DESCRIPTION, MnnRunner, import_mnn))
