"""The ONNX graph ghostfast exports from a zoo model: what ONNX Runtime runs and what OpenVINO, ncnn (via pnnx)
and MNN convert from, so every ONNX-fed runtime starts from the same graph of the same weights.

Exports are cached per model instance: a compare() run prepares one model for several backends and thread
counts, and an export takes seconds. A fingerprint of every tensor's storage and version counter makes an
in-place edit (new weights, randomized BN) invalidate the entry.
"""
from __future__ import annotations

import io
import warnings
import weakref

import torch
import torch.nn as nn

from .base import BackendUnavailable

OPSET = 17

_EXPORTS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def fingerprint(model: nn.Module, x: torch.Tensor) -> tuple:
    """What a conversion of ``model`` for inputs shaped like ``x`` depends on: the input shape and, per tensor,
    its storage and version counter (an in-place edit bumps the counter)."""
    tensors = [*model.parameters(), *model.buffers()]
    return (tuple(x.shape), tuple((t.data_ptr(), t._version) for t in tensors))


def export_onnx(model: nn.Module, x: torch.Tensor) -> bytes:
    """The serialized ONNX graph of eval-mode ``model`` for inputs shaped like ``x`` (static shape)."""
    key = fingerprint(model, x)
    cached = _EXPORTS.get(model)
    if cached is not None and cached["key"] == key:
        return cached["onnx"]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # torch >= 2.9 marks the TorchScript-based exporter deprecated; it needs no extra package and gives
        # ORT a plain Conv/BN graph, so it stays the first choice while torch ships it.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad():
            try:
                torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=OPSET, input_names=["input"],
                                  output_names=["logits"], do_constant_folding=True)
                data = buf.getvalue()
            except TypeError:  # a torch without the TorchScript exporter: use torch.export's
                data = _export_dynamo(model, x)
    _EXPORTS[model] = {"key": key, "onnx": data}
    return data


def _export_dynamo(model: nn.Module, x: torch.Tensor) -> bytes:
    try:
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=OPSET, input_names=["input"],
                                    output_names=["logits"])
    except ModuleNotFoundError as e:
        raise BackendUnavailable(f"this torch exports ONNX through torch.export, which needs '{e.name}': "
                                 f"pip install {e.name}") from None
    return program.model_proto.SerializeToString()
