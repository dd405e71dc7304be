"""Stage tables like the papers print, derived from the module objects and one forward pass.

A row is a *unit*: a module with a ``block_type`` attribute (a block of the paper's table), or a loose layer
outside any block (a stem / head conv with its BN and activation, a pooling layer, the classifier). Columns:
input (H x W x C), operator, kernel, expansion width, output channels, SE, activation, stride. Nothing is typed
by hand: kernels come from the convolutions inside the unit, widths from ``hidden_channels`` and the output
shape, activations from the activation modules inside (those of SE gates excluded), strides from the shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .models import registry
from .models.layers import SEModule
from .profiler import Profile, input_shape, profile

_ACT_NAMES = {
    nn.ReLU: "RE", nn.ReLU6: "RE6", nn.Hardswish: "HS", nn.SiLU: "Swish", nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "h-sigmoid", nn.GELU: "GELU", nn.Tanh: "tanh",
}
_POOL_NAMES = {nn.MaxPool2d: "maxpool", nn.AvgPool2d: "avgpool", nn.AdaptiveAvgPool2d: "avgpool"}
_SKIP = (nn.Flatten, nn.Dropout, nn.Identity)
_COLUMNS = ["input", "operator", "kernel", "exp", "out", "SE", "NL", "stride"]


@dataclass
class Unit:
    name: str
    operator: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    kernel: int | None
    exp: int | None
    se: bool
    activations: list[str]
    stride: int | None
    residual: str  # "add", "concat" or "" (how the block merges its branches)

    def as_dict(self) -> dict:
        c, h, w = _chw(self.input_shape)
        return {
            "name": self.name,
            "input": f"{h}x{w}x{c}" if h else str(c),
            "operator": self.operator,
            "kernel": self.kernel,
            "exp": self.exp,
            "out": self.output_shape[1] if len(self.output_shape) > 1 else None,
            "SE": self.se,
            "NL": "/".join(self.activations) or "-",
            "stride": self.stride,
            "residual": self.residual,
        }


def _chw(shape: tuple[int, ...]) -> tuple[int, int | None, int | None]:
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    return shape[-1], None, None


class Structure:
    """The stage table of one model (``.rows``: list of dicts); ``str()`` prints it."""

    def __init__(self, model: str, units: list[Unit], prof: Profile) -> None:
        self.model = model
        self.units = units
        self.profile = prof

    @property
    def rows(self) -> list[dict]:
        return [u.as_dict() for u in self.units]

    @property
    def blocks(self) -> list[Unit]:
        """The units that are blocks of the architecture (not loose stem / head layers)."""
        return [u for u in self.units if u.operator not in ("conv2d", "maxpool", "avgpool", "fc")]

    def summary(self) -> dict:
        """One line of the side-by-side comparison of architectures."""
        blocks = self.blocks
        acts: list[str] = []
        for u in self.units:
            acts += [a for a in u.activations if a not in acts]
        kinds = {}
        for u in blocks:
            if u.residual:
                kinds[u.residual] = kinds.get(u.residual, 0) + 1
        return {
            "model": self.model,
            "block types": ", ".join(dict.fromkeys(u.operator for u in blocks)),
            "blocks": len(blocks),
            "SE blocks": sum(u.se for u in blocks),
            "activations": "/".join(acts),
            "shortcuts": ", ".join(f"{k} x{n}" for k, n in kinds.items()) or "-",
            "params": self.profile.params,
            "MACs": self.profile.macs,
        }

    def table(self, fmt: str = "simple") -> str:
        from tabulate import tabulate

        rows = [[r[c] if r[c] is not None else "-" for c in _COLUMNS] for r in self.rows]
        for r in rows:
            r[5] = "yes" if r[5] is True else "-"
        return tabulate(rows, headers=_COLUMNS, tablefmt=fmt)

    def __str__(self) -> str:
        return f"{self.model}\n{self.table()}"


def _conv_kernel(mod: nn.Module) -> int | None:
    """Largest depthwise kernel inside ``mod`` (the one the papers list), else the largest conv kernel."""
    convs = [m for m in _outside_se(mod) if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    dw = [c for c in convs if c.groups > 1 and c.groups == c.in_channels]
    return max(c.kernel_size[0] for c in (dw or convs))


def _outside_se(mod: nn.Module):
    """Sub-modules of ``mod`` that are not inside a squeeze-and-excitation block."""
    stack = [mod]
    while stack:
        m = stack.pop()
        yield m
        stack.extend(c for c in reversed(list(m.children())) if not isinstance(c, SEModule))


def _activations(mods) -> list[str]:
    names: list[str] = []
    for m in mods:
        n = _ACT_NAMES.get(type(m))
        if n and n not in names:
            names.append(n)
    return names


def structure(name_or_module, input_size=None) -> Structure:
    """The stage table of a zoo model (by name) or of any module built from zoo blocks."""
    if isinstance(name_or_module, str):
        model = registry.create(name_or_module)
    elif isinstance(name_or_module, nn.Module):
        model = name_or_module
    else:
        raise TypeError(f"expected a model name or torch.nn.Module, got {type(name_or_module).__name__}")
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(name):
        def hook(mod, inp, out):
            if name not in shapes and inp and isinstance(inp[0], torch.Tensor) and isinstance(out, torch.Tensor):
                shapes[name] = (tuple(inp[0].shape), tuple(out.shape))
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in modules.items()]
    try:
        prof = profile(model, input_size)
    finally:
        for h in handles:
            h.remove()
    label = prof.model

    def block_of(layer_name: str) -> str | None:
        parts = layer_name.split(".")
        for i in range(1, len(parts) + 1):  # outermost block wins: a block nested in a block is one row
            cand = ".".join(parts[:i])
            if hasattr(modules.get(cand), "block_type"):
                return cand
        return None

    units: list[Unit] = []
    by_name: dict[str, Unit] = {}
    for row in prof.layers:
        base = row.name.split("[", 1)[0]
        blk = block_of(base) if base in modules or "[" in row.name else None
        if blk is not None:
            unit = by_name.get(blk)
            if unit is None:
                mod = modules[blk]
                ins, outs = shapes.get(blk, ((), ()))
                unit = Unit(blk, mod.block_type, ins, outs, _conv_kernel(mod), getattr(mod, "hidden_channels", None),
                            any(isinstance(m, SEModule) for m in mod.modules()),
                            _activations(_outside_se(mod)), _stride(ins, outs), "")
                units.append(unit)
                by_name[blk] = unit
            if "[" in row.name and base == blk and row.type in ("add", "add_"):
                unit.residual = "add"
            elif "[" in row.name and base == blk and row.type == "cat":
                unit.residual = "concat"
            continue
        mod = modules.get(row.name)
        if mod is None:  # a functional op outside any block (e.g. a global mean in the forward)
            if row.type in ("mean", "adaptive_avg_pool2d"):
                prev = units[-1].output_shape if units else ()
                units.append(Unit(row.name, "avgpool", prev, row.output_shape, None, None, False, [], None, ""))
            continue
        ins, outs = shapes.get(row.name, ((), row.output_shape))
        if isinstance(mod, nn.Conv2d):
            units.append(Unit(row.name, "conv2d", ins, outs, mod.kernel_size[0], None, False, [], mod.stride[0], ""))
        elif isinstance(mod, nn.Linear):
            units.append(Unit(row.name, "fc", ins, outs, None, None, False, [], None, ""))
        elif type(mod) in _POOL_NAMES:
            units.append(Unit(row.name, _POOL_NAMES[type(mod)], ins, outs, _pool_kernel(mod, ins, outs), None,
                              False, [], _stride(ins, outs), ""))
        elif type(mod) in _ACT_NAMES and units and units[-1].operator in ("conv2d", "fc"):
            units[-1].activations += [a for a in _activations([mod]) if a not in units[-1].activations]
    return Structure(label, units, prof)


def _stride(ins: tuple[int, ...], outs: tuple[int, ...]) -> int | None:
    if len(ins) == 4 and len(outs) == 4 and outs[2]:
        return max(1, round(ins[2] / outs[2]))
    return None


def _pool_kernel(mod: nn.Module, ins, outs) -> int | None:
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        return ins[2] if len(ins) == 4 else None  # global pooling: the window is the whole map
    k = mod.kernel_size
    return k if isinstance(k, int) else k[0]


def structure_summary(names: list[str] | None = None) -> list[dict]:
    """Side-by-side architecture summary (one dict per model) of ``names`` (default: the whole zoo)."""
    return [structure(n).summary() for n in (names or registry.names())]


def summary_table(rows: list[dict], fmt: str = "simple") -> str:
    from tabulate import tabulate

    return tabulate(rows, headers="keys", tablefmt=fmt, intfmt=",")


__all__ = ["Structure", "structure", "structure_summary", "summary_table", "input_shape"]
