"""ncnn on the CPU, with the model converted by pnnx (ncnn's converter) from the ONNX graph ghostfast exports.

pnnx runs as its bundled executable with ``fp16=0``: by default it stores ncnn weights as fp16. The Python
``Option`` defaults to fp16 storage and arithmetic too, so the runner turns fp16 / bf16 storage, packing and
arithmetic off before loading and reads the options back afterwards; the converted weights must take 4 bytes
each. ``opt.num_threads`` is the thread count (the Python Extractor has no set_num_threads).

An ncnn Extractor caches every blob it computed, so each iteration is a fresh extractor, the input (a Mat over
the runner's numpy buffer, made once) and one extract: the shortest call sequence the API has.
"""
from __future__ import annotations

import os
import subprocess

import numpy as np
import torch
import torch.nn as nn

from ._peers import PeerBackend, ConversionCache, ConversionError, check_fp32_weights, import_module, require_onnx
from .base import Runner, register_backend
from .onnx_export import export_onnx

NAME = "ncnn"
PACKAGES = "onnx ncnn pnnx"
FP16_OPTIONS = ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage")
CONVERT_TIMEOUT_S = 600

_CACHE = ConversionCache(NAME)


def import_ncnn():
    """The ncnn module, or BackendUnavailable saying how to install it (pnnx, the converter, is checked too)."""
    require_onnx(NAME, PACKAGES)
    import_module(NAME, "pnnx", "pnnx", PACKAGES)
    return import_module(NAME, "ncnn", "ncnn", PACKAGES)


def pnnx_executable() -> str:
    """The pnnx binary shipped in the pnnx wheel."""
    pnnx = import_module(NAME, "pnnx", "pnnx", PACKAGES)
    path = getattr(pnnx, "EXEC_PATH", None)
    if not path or not os.access(path, os.X_OK):
        raise ConversionError(f"the pnnx package has no runnable converter binary (looked for {path!r})")
    return path


def convert(model: nn.Module, x: torch.Tensor, folder) -> dict:
    """ONNX -> pnnx -> ncnn .param / .bin (fp32 weights) in ``folder``; every pnnx by-product stays there too."""
    onnx_path = folder / "model.onnx"
    onnx_path.write_bytes(export_onnx(model, x))
    files = {"param": folder / "model.ncnn.param", "bin": folder / "model.ncnn.bin"}
    shape = ",".join(str(d) for d in x.shape)
    # pnnx writes its own graph, Python and ONNX by-products beside the input unless told where.
    cmd = [pnnx_executable(), str(onnx_path), f"inputshape=[{shape}]", "fp16=0",
           f"ncnnparam={files['param']}", f"ncnnbin={files['bin']}", f"ncnnpy={folder / 'model_ncnn.py'}",
           f"pnnxparam={folder / 'model.pnnx.param'}", f"pnnxbin={folder / 'model.pnnx.bin'}",
           f"pnnxpy={folder / 'model_pnnx.py'}", f"pnnxonnx={folder / 'model.pnnx.onnx'}"]
    try:
        done = subprocess.run(cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"pnnx did not finish converting within {CONVERT_TIMEOUT_S} s") from None
    log = done.stdout.decode("utf-8", errors="replace").strip().splitlines()
    if done.returncode != 0 or not all(p.is_file() and p.stat().st_size for p in files.values()):
        raise ConversionError(f"pnnx failed to convert the model to ncnn (exit {done.returncode}): "
                              + " | ".join(log[-15:]))
    return files


class NcnnRunner(Runner):
    backend = NAME

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        ncnn = import_ncnn()
        if x.shape[0] != 1:
            raise ValueError(f"ncnn runs one image per extraction; batch {x.shape[0]} is not supported")
        files = _CACHE.get(model, x, lambda folder: convert(model, x, folder))
        self.bytes_per_weight = check_fp32_weights(NAME, [files["bin"]], model)
        self.net = ncnn.Net()
        opt = self.net.opt
        # The options must be set before load_param: ncnn picks each layer's storage and kernels while loading.
        for name in FP16_OPTIONS:
            if hasattr(opt, name):
                setattr(opt, name, False)
        if threads is not None:
            opt.num_threads = threads
        if self.net.load_param(str(files["param"])) != 0 or self.net.load_model(str(files["bin"])) != 0:
            raise ConversionError(f"ncnn could not load the converted model ({files['param'].name})")
        eff = self.effective()
        if any(eff[name] for name in FP16_OPTIONS if name in eff):
            raise RuntimeError(f"ncnn kept a reduced-precision option on: {eff}")
        if threads is not None and eff["threads"] != threads:
            raise RuntimeError(f"ncnn runs {eff['threads']} threads, not the {threads} asked for")
        self.threads = eff["threads"]
        self.in_name, self.out_name = self.net.input_names()[0], self.net.output_names()[0]
        self.x = np.ascontiguousarray(x.numpy()[0], dtype=np.float32)
        self.mat = ncnn.Mat(self.x)
        self._batch = x.shape[0]
        self._out = None

    def effective(self) -> dict:
        """The network's options as ncnn holds them after loading."""
        opt = self.net.opt
        return {"threads": int(opt.num_threads), "bytes_per_weight": self.bytes_per_weight,
                **{name: bool(getattr(opt, name)) for name in FP16_OPTIONS if hasattr(opt, name)}}

    def __call__(self) -> None:
        ex = self.net.create_extractor()
        ex.input(self.in_name, self.mat)
        self._ret, self._out = ex.extract(self.out_name)

    def output(self) -> np.ndarray:
        self()
        if self._ret != 0:
            raise RuntimeError(f"ncnn extract failed with code {self._ret}")
        return np.array(self._out, dtype=np.float32).reshape(self._batch, -1)

    def close(self) -> None:
        self._out = self.mat = None
        if self.net is not None:
            self.net.clear()
            self.net = None


DESCRIPTION = ("ncnn from pnnx (fp16=0: fp32 weights), use_fp16_storage/packed/arithmetic and "
               "use_bf16_storage off, opt.num_threads = threads")
register_backend(PeerBackend(NAME, DESCRIPTION, NcnnRunner, import_ncnn))
