"""Size and cost of a model, counted from one eager forward pass at batch 1.

Every aten op the forward runs is seen through a ``TorchDispatchMode`` and attributed to the innermost module
executing at that moment, so functional ops (residual adds, SE gates, concat, channel shuffles) count as well
as layers do.

Conventions (the papers' and canonical.json's):

* ``macs``: multiply-accumulates of every convolution and linear layer (bias adds not counted). This is the
  figure the papers call "FLOPs".
* ``total_ops``: ``macs`` plus the other arithmetic, labeled separately: batch norm 2 per output element,
  activations 1 per element (hard-swish and friends included), elementwise add / mul 1 per output element,
  pooling and mean 1 per input element read (a k x k window reads k*k inputs per output).
* weight bytes: parameter count x 4 / 2 / 1 bytes (fp32 / fp16 / int8; quantization scales not included).
* ``peak_activation_bytes``: the most bytes of activation tensors (input included, weights excluded) alive at
  once during an eager PyTorch forward at batch 1, tracked per storage as tensors are created and freed.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from .models import registry

_ACTIVATION_OPS = {
    "relu", "relu_", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_",
    "silu", "silu_", "sigmoid", "sigmoid_", "clamp", "clamp_", "clamp_min", "clamp_min_", "tanh", "gelu",
}
_ELEMENTWISE_OPS = {"add", "add_", "mul", "mul_", "sub", "div", "div_"}
_POOL_OPS = {"max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "mean", "adaptive_avg_pool2d", "_adaptive_avg_pool2d"}
_BN_OPS = {"_native_batch_norm_legit_no_training", "native_batch_norm", "batch_norm", "_native_batch_norm_legit"}
_CONV_OPS = {"conv2d", "convolution", "_convolution"}
_MATMUL_OPS = {"addmm", "mm", "bmm"}
_STRUCTURAL_OPS = {"cat"}  # no arithmetic, but the structure table needs to see them


@dataclass
class LayerRow:
    """One row of the per-layer table: a leaf module, or a functional op inside a composite module."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    ops: int  # macs + other arithmetic, by the conventions in this module's docstring

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "output_shape": list(self.output_shape),
                "params": self.params, "macs": self.macs, "ops": self.ops}


@dataclass
class Profile:
    """The result of :func:`profile`."""

    model: str
    input_shape: tuple[int, ...]
    params: int
    macs: int
    total_ops: int
    peak_activation_bytes: int
    layers: list[LayerRow] = field(repr=False)

    @property
    def weight_bytes_fp32(self) -> int:
        return self.params * 4

    @property
    def weight_bytes_fp16(self) -> int:
        return self.params * 2

    @property
    def weight_bytes_int8(self) -> int:
        return self.params

    def summary(self) -> dict:
        """The headline figures as a flat dict (JSON-friendly)."""
        return {
            "model": self.model, "input_shape": list(self.input_shape), "params": self.params,
            "macs": self.macs, "total_ops": self.total_ops,
            "weight_bytes_fp32": self.weight_bytes_fp32, "weight_bytes_fp16": self.weight_bytes_fp16,
            "weight_bytes_int8": self.weight_bytes_int8, "peak_activation_bytes": self.peak_activation_bytes,
        }

    def table(self, fmt: str = "simple") -> str:
        """The per-layer table, formatted by ``tabulate`` (``fmt``: any tabulate format, e.g. "github")."""
        from tabulate import tabulate

        rows = [(r.name, r.type, "x".join(map(str, r.output_shape)), r.params, r.macs) for r in self.layers]
        return tabulate(rows, headers=["layer", "type", "output", "params", "MACs"], tablefmt=fmt,
                        intfmt=",")

    def __str__(self) -> str:
        s = self.summary()
        return (
            f"{self.model} @ {'x'.join(map(str, self.input_shape))}: params {s['params']:,}, "
            f"MACs {s['macs']:,} (conv+linear), total ops {s['total_ops']:,} (incl. BN/act/pool/elementwise), "
            f"weights {_mib(s['weight_bytes_fp32'])} fp32 / {_mib(s['weight_bytes_fp16'])} fp16 / "
            f"{_mib(s['weight_bytes_int8'])} int8, peak activations {_mib(s['peak_activation_bytes'])}"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _numel(shape) -> int:
    return int(math.prod(shape))


def _op_cost(op: str, args, out) -> tuple[int, int]:
    """(MACs, other ops) of one aten op."""
    if op in _CONV_OPS:
        weight = args[1]
        macs = out.numel() * _numel(weight.shape[1:])
        return macs, 0
    if op == "linear":
        return out.numel() * args[1].shape[1], 0
    if op in _MATMUL_OPS:
        a = args[1] if op == "addmm" else args[0]
        macs = out.numel() * a.shape[-1]
        return macs, 0
    if op in _BN_OPS:
        return 0, 2 * (out[0] if isinstance(out, (tuple, list)) else out).numel()
    if op in _ACTIVATION_OPS or op in _ELEMENTWISE_OPS:
        return 0, out.numel()
    if op in _POOL_OPS:
        if op in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d"):
            k = args[1]
            k = (k, k) if isinstance(k, int) else tuple(k) * (2 // len(k))
            first = out[0] if isinstance(out, (tuple, list)) else out
            return 0, first.numel() * k[0] * k[1]
        return 0, args[0].numel()
    return 0, 0


class _StorageTracker:
    """Live activation bytes, per storage, following tensors as they are created and garbage-collected."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self._refs: dict[int, list] = {}  # storage ptr -> [bytes, live tensor count]

    def track(self, t: torch.Tensor) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
            return
        st = t.untyped_storage()
        ptr = st.data_ptr()
        entry = self._refs.get(ptr)
        if entry is None:
            entry = self._refs[ptr] = [st.nbytes(), 0]
            self.live += entry[0]
            self.peak = max(self.peak, self.live)
        entry[1] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr: int) -> None:
        entry = self._refs.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._refs[ptr]


class _Counter(TorchDispatchMode):
    def __init__(self, stack: list[str], params: set[int]) -> None:
        super().__init__()
        self.stack = stack
        self.params = params
        self.tracker = _StorageTracker()
        self.events: list[tuple[str, str, tuple[int, ...], int, int]] = []  # (module, op, shape, macs, ops)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = func.overloadpacket.__name__
        macs, other = _op_cost(op, args, out)
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        shape = tuple(first.shape) if isinstance(first, torch.Tensor) else ()
        self.events.append((self.stack[-1], op, shape, macs, macs + other))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.params:
                self.tracker.track(t)
        return out


def _resolve_model(name_or_module, input_size) -> tuple[str, nn.Module, tuple[int, int, int, int]]:
    if isinstance(name_or_module, str):
        s = registry.spec(name_or_module)
        model, label, default = registry.create(s.name), s.name, s.input_size
    elif isinstance(name_or_module, nn.Module):
        model = name_or_module
        label = getattr(model, "zoo_name", type(model).__name__)
        default = registry.spec(label).input_size if hasattr(model, "zoo_name") else None
    else:
        raise TypeError(f"expected a model name or torch.nn.Module, got {type(name_or_module).__name__}")
    size = input_size if input_size is not None else default
    if size is None:
        raise ValueError(f"input_size is required for a module that is not from the zoo ({label})")
    return label, model, input_shape(size)


def input_shape(size) -> tuple[int, int, int, int]:
    """NCHW batch-1 shape from an int (square), an (H, W) pair or a full (N, C, H, W) / (C, H, W) shape."""
    if isinstance(size, bool) or not isinstance(size, (int, tuple, list)):
        raise TypeError(f"input_size must be an int or a tuple of ints, got {type(size).__name__}")
    dims = (size, size) if isinstance(size, int) else tuple(size)
    if len(dims) == 2:
        dims = (1, 3, *dims)
    elif len(dims) == 3:
        dims = (1, *dims)
    if len(dims) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ValueError(f"input_size must be H, (H, W), (C, H, W) or (N, C, H, W) positive ints, got {size!r}")
    return dims  # type: ignore[return-value]


def run_forward(model: nn.Module, x: torch.Tensor, label: str) -> torch.Tensor:
    """Forward with input-shape errors turned into a ValueError that names the model and the shape."""
    try:
        with torch.inference_mode():
            return model(x)
    except RuntimeError as e:
        raise ValueError(f"{label} cannot run on an input of shape {tuple(x.shape)}: {e}") from e


def profile(name_or_module, input_size=None) -> Profile:
    """Parameters, MACs, bytes and a per-layer table of a zoo model (by name) or any ``nn.Module``.

    ``input_size``: H, (H, W), (C, H, W) or (N, C, H, W); defaults to the zoo model's own input size.
    """
    label, model, shape = _resolve_model(name_or_module, input_size)
    model = model.eval()
    names = {m: n for n, m in model.named_modules()}
    stack = ["(input)"]
    handles = []
    for m, n in names.items():
        handles.append(m.register_forward_pre_hook(lambda mod, inp, n=n: stack.append(n or "(model)")))
        handles.append(m.register_forward_hook(lambda mod, inp, out: stack.pop() and None))
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    param_ptrs |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    counter = _Counter(stack, param_ptrs)
    try:
        with counter:
            x = torch.randn(shape)  # created inside the mode, so it is tracked as a live activation
            out = run_forward(model, x, label)
            del out, x
    finally:
        for h in handles:
            h.remove()
    modules = dict(model.named_modules())
    rows = _layer_rows(counter.events, modules)
    params = sum(p.numel() for p in model.parameters())
    return Profile(
        model=label, input_shape=shape, params=params, macs=sum(r.macs for r in rows),
        total_ops=sum(r.ops for r in rows), peak_activation_bytes=counter.tracker.peak, layers=rows,
    )


def _layer_rows(events, modules: dict[str, nn.Module]) -> list[LayerRow]:
    """Group dispatch events into rows: one per leaf-module call, one per costly functional op elsewhere."""
    rows: list[LayerRow] = []
    current: LayerRow | None = None
    for mod_name, op, shape, macs, ops in events:
        key = "" if mod_name == "(model)" else mod_name
        mod = modules.get(key)
        is_leaf = mod is not None and not any(True for _ in mod.children())
        if is_leaf:
            if current is None or current.name != mod_name:
                params = sum(p.numel() for p in mod.parameters(recurse=False))
                current = LayerRow(mod_name, type(mod).__name__, shape, params, 0, 0)
                rows.append(current)
            current.output_shape = shape or current.output_shape
            current.macs += macs
            current.ops += ops
        elif ops or op in _STRUCTURAL_OPS:
            current = None
            rows.append(LayerRow(f"{mod_name}[{op}]", op, shape, 0, macs, ops))
    return rows
