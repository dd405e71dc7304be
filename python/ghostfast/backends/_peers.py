"""What the peer-runtime backends (openvino, litert, ncnn, mnn) share: the install hint, imports that turn a
missing package into BackendUnavailable, a per-model cache of converted files, C-level output capture, and the
fp32 weight check.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .base import Backend, BackendUnavailable, Runner
from .onnx_export import fingerprint

# Like onnxruntime's INSTALL_HINT: the extra first (with the CPU torch constraint of a checkout), then the bare packages.
PEERS_EXTRA = "pip install -c constraints-cpu.txt '.[peers]'"


def import_module(backend: str, module: str, dist: str, alternatives: str):
    """``module``, or BackendUnavailable naming the ``dist`` package and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        # A missing dependency of the package itself (e.name) is named too, since that is what pip must fix.
        missing = dist if (e.name or module).split(".")[0] == module.split(".")[0] else e.name
        raise BackendUnavailable(f"the {backend} backend needs the '{missing}' package, which is not installed: "
                                 f"{PEERS_EXTRA} (or: pip install {alternatives})") from None


def require_onnx(backend: str, alternatives: str) -> None:
    """The ONNX exporter's graph format, checked up front so the skip names it rather than failing in export."""
    import_module(backend, "onnx", "onnx", alternatives)


class Captured:
    """Text a native library printed while :func:`native_output` redirected it (``text`` once the block ends)."""

    text = ""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.text.strip().splitlines()[-lines:])


def _flush_c_stdio() -> None:
    # C libraries buffer stdout when it is not a terminal: flush before the descriptors move back, or their
    # text would surface later on the real stdout.
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no process-wide libc handle (Windows)
        pass


@contextlib.contextmanager
def native_output():
    """Send file descriptors 1 and 2 (where C++ libraries print progress and logs) to a temporary file for the
    block; yields a :class:`Captured` whose ``text`` holds what was printed, for error messages."""
    captured = Captured()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile() as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            _flush_c_stdio()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")


class ConversionError(RuntimeError):
    """A converter failed on a model; the message carries the converter's own last lines."""


class ConversionCache:
    """Converted model files per model instance and input shape, in a temporary directory per entry.

    compare() prepares one model at several thread counts: the conversion (seconds to tens of seconds) runs
    once. An entry is keyed by the weights' fingerprint, so an in-place edit reconverts; its directory is removed
    when the entry is replaced, when the model is garbage-collected, or at interpreter exit.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.conversions = 0  # how many conversions ran (tests check that a second prepare reuses the first)
        self._entries: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()

    def get(self, model: nn.Module, x: torch.Tensor, convert: Callable[[Path], dict]) -> dict:
        """``convert(folder)``'s result for ``model`` and inputs shaped like ``x``, converting only when needed."""
        key = fingerprint(model, x)
        per_shape = self._entries.setdefault(model, {})
        weights = key[1]
        for shape, entry in list(per_shape.items()):
            if entry["key"][1] != weights:  # the weights changed in place: every shape's files are stale
                entry["dir"].cleanup()
                del per_shape[shape]
        entry = per_shape.get(key[0])
        if entry is not None:
            return entry["files"]
        folder = tempfile.TemporaryDirectory(prefix=f"ghostfast-{self.backend}-")
        try:
            files = convert(Path(folder.name))
        except BaseException:
            folder.cleanup()
            raise
        per_shape[key[0]] = {"key": key, "dir": folder, "files": files}
        self.conversions += 1
        return files

    def folders(self) -> list[Path]:
        """The folders of every live entry (for tests and debugging)."""
        return [Path(e["dir"].name) for per_shape in self._entries.values() for e in per_shape.values()]

    def clear(self) -> None:
        for per_shape in list(self._entries.values()):
            for entry in per_shape.values():
                entry["dir"].cleanup()
        self._entries.clear()


# fp16 weights take 2 bytes each, fp32 4; a converted file below this many bytes per weight holds reduced
# precision weights (the remainder is graph structure and biases, which only add bytes).
FP32_BYTES_PER_WEIGHT = 3.5


def weight_count(model: nn.Module) -> int:
    """Elements of the conv and linear weights (every parameter of 2 or more dimensions): what a converter stores
    once BN is folded."""
    return sum(p.numel() for p in model.parameters() if p.dim() >= 2)


def check_fp32_weights(backend: str, files: list[Path], model: nn.Module) -> float:
    """Bytes per weight of the converted ``files``; raises if that says the weights were stored below fp32."""
    size = sum(Path(f).stat().st_size for f in files)
    per_weight = size / max(1, weight_count(model))
    if per_weight < FP32_BYTES_PER_WEIGHT:
        raise ConversionError(f"{backend}: the converted model holds {per_weight:.2f} bytes per weight, so its "
                              f"weights are not fp32 (fp16 would be ~2)")
    return per_weight


class PeerBackend(Backend):
    """A peer runtime's backend: ``check`` imports the runtime (BackendUnavailable when it is missing) and
    ``runner(model, x, threads)`` converts, checks the settings and binds the buffers."""

    def __init__(self, name: str, description: str, runner: Callable[..., Runner], check: Callable[[], object]):
        self.name, self.description = name, description
        self._runner, self._check = runner, check

    def check_available(self) -> None:
        self._check()

    def prepare(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        return self._runner(model, x, threads)
