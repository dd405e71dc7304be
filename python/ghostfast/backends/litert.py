"""LiteRT (formerly TensorFlow Lite) on the CPU with its default XNNPACK delegate, running a ``.tflite`` that
litert-torch (the converter LiteRT documents for PyTorch models) makes from the module itself.

Conversion: the module is captured with ``torch.export`` here and converted by ``litert_torch.convert(...).
export(path)`` in a child Python process. The child keeps litert-torch's imports (JAX, torchao, TensorFlow's
MLIR passes: seconds, and global state a timed process should not carry) and its progress lines and absl logs
out of this process; its output is shown only when it fails. The model stays fp32 (no quantization config) and
NCHW, as the module takes it; every tensor of the loaded model is checked to be fp32 (or an integer shape
tensor).

Run: ``Interpreter(model_path, num_threads=T)``: XNNPACK is applied when tensors are allocated and starts T - 1
worker threads then (counted, as the Python API cannot report its thread count). The input is written into the
interpreter's own input tensor once; an iteration is one ``invoke``.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import torch
import torch.nn as nn

from ._peers import PeerBackend, PEERS_EXTRA, ConversionCache, ConversionError, import_module, native_output
from .base import BackendUnavailable, Runner, register_backend

NAME = "litert"
PACKAGES = "litert-torch"
CONVERT_TIMEOUT_S = 900
# Tensor types that mean reduced precision (fp16 / bf16 weights or activations, quantized tensors); an fp32 model
# holds float32 tensors and integer shape / index tensors (int32, int64).
REDUCED_TENSOR_TYPES = ("float16", "bfloat16", "int4", "int8", "uint8", "int16")

_CACHE = ConversionCache(NAME)

_CHILD = textwrap.dedent("""
    import sys
    import torch
    import litert_torch

    program, example, out = sys.argv[1:4]
    module = torch.export.load(program).module()
    x = torch.load(example)
    litert_torch.convert(module, (x,)).export(out)
""")


def import_interpreter():
    """LiteRT's Interpreter class, or BackendUnavailable saying how to install it (litert-torch brings it)."""
    if _converter_missing():
        raise BackendUnavailable(f"the {NAME} backend needs the 'litert-torch' package (its converter), which is "
                                 f"not installed: {PEERS_EXTRA} (or: pip install {PACKAGES})")
    return import_module(NAME, "ai_edge_litert.interpreter", "ai-edge-litert", PACKAGES).Interpreter


def _converter_missing() -> bool:
    # Finding the converter is enough here: importing it would pull JAX and torchao into the timing process.
    try:
        return importlib.util.find_spec("litert_torch") is None
    except (ImportError, ValueError):
        return True


def convert(model: nn.Module, x: torch.Tensor, folder) -> dict:
    """The module -> ``folder/model.tflite`` (fp32) through litert-torch in a child process."""
    program, example, out = folder / "model.pt2", folder / "input.pt", folder / "model.tflite"
    with torch.no_grad():
        torch.export.save(torch.export.export(model.eval(), (x,)), str(program))
    torch.save(x, str(example))
    # The child inherits this interpreter and environment, so it sees the same torch and litert-torch; absl and
    # TensorFlow log only errors, which is what a failure needs.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-c", _CHILD, str(program), str(example), str(out)]
    try:
        done = subprocess.run(cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=env, timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"litert-torch did not finish converting within {CONVERT_TIMEOUT_S} s") from None
    if done.returncode != 0 or not (out.is_file() and out.stat().st_size):
        log = [line for line in done.stdout.decode("utf-8", errors="replace").splitlines() if line.strip()]
        raise ConversionError(f"litert-torch failed to convert the model (exit {done.returncode}): "
                              + " | ".join(log[-15:]))
    for path in (program, example):  # only the .tflite is needed from here on
        path.unlink()
    return {"tflite": out}


def _thread_ids() -> set[str] | None:
    # Thread ids rather than a count: a thread of another library ending meanwhile must not hide a new worker.
    try:
        return set(os.listdir("/proc/self/task"))
    except OSError:  # not Linux
        return None


class LiteRtRunner(Runner):
    backend = NAME

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        Interpreter = import_interpreter()
        files = _CACHE.get(model, x, lambda folder: convert(model, x, folder))
        before = _thread_ids()
        # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" from C++ once per process.
        with native_output():
            self.interpreter = Interpreter(model_path=str(files["tflite"]), num_threads=threads)
            self.interpreter.allocate_tensors()
        after = _thread_ids()
        # XNNPACK's pool starts T - 1 workers while tensors are allocated (the caller is the T-th thread).
        self.pool_threads = None if before is None or after is None else len(after - before) + 1
        self.threads = threads if threads is not None else 1  # LiteRT's default when num_threads is not given
        eff = self.effective()
        if eff["reduced_precision_tensors"]:
            raise RuntimeError(f"LiteRT model is not fp32: tensors of type {eff['reduced_precision_tensors']}")
        inp = self.interpreter.get_input_details()[0]
        if tuple(inp["shape"]) != tuple(x.shape):
            raise RuntimeError(f"LiteRT's input is {tuple(inp['shape'])}, not {tuple(x.shape)}")
        self.interpreter.set_tensor(inp["index"], np.ascontiguousarray(x.numpy(), dtype=np.float32))
        self.out_index = self.interpreter.get_output_details()[0]["index"]
        self._invoke = self.interpreter.invoke

    def effective(self) -> dict:
        """Threads XNNPACK started (counted) and the tensor types the model holds."""
        types = {np.dtype(d["dtype"]).name for d in self.interpreter.get_tensor_details()}
        return {"threads": self.pool_threads, "tensor_types": sorted(types),
                "reduced_precision_tensors": sorted(types & set(REDUCED_TENSOR_TYPES))}

    def __call__(self) -> None:
        self._invoke()

    def output(self) -> np.ndarray:
        self()
        return self.interpreter.get_tensor(self.out_index).astype(np.float32, copy=True)

    def close(self) -> None:
        self._invoke = self.interpreter = None


DESCRIPTION = ("LiteRT interpreter, default XNNPACK delegate, fp32 .tflite from litert-torch "
               "(num_threads = threads)")
register_backend(PeerBackend(NAME, DESCRIPTION, LiteRtRunner, import_interpreter))
