"""Layers shared by the model families.

Conventions every family follows (profile, structure and the engine's lowering rely on them):

* Activations are torch's own modules (``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardswish``, ``nn.Hardsigmoid``,
  ``nn.SiLU``, ``nn.Sigmoid``), never lambdas or functional calls, so a walk over modules sees them.
* A module that is one row of a paper's stage table carries a class attribute ``block_type`` (the operator
  name the paper prints, e.g. ``"bneck"``, ``"G-bneck"``) and, where it expands channels, a
  ``hidden_channels`` property computed from its own sub-modules.
* Squeeze-and-excitation blocks derive from :class:`SEModule`.
* Attribute names reproduce the canonical implementation's ``state_dict`` keys exactly, so checkpoints of
  the canonical implementation load without renaming.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``v`` to a multiple of ``divisor``, never going below ``round_limit * v``.

    The rule used by MobileNetV2/V3, MnasNet, EfficientNet and GhostNet for their width multipliers.
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + optional activation, as ``Sequential`` indices 0, 1, 2.

    The key layout of torchvision's ``Conv2dNormActivation``.
    """

    block_type = "conv2d"

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act_layer: type[nn.Module] | None = nn.ReLU,
        padding: int | None = None,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_chs),
        ]
        if act_layer is not None:
            layers.append(act_layer(inplace=True) if _takes_inplace(act_layer) else act_layer())
        super().__init__(*layers)


def _takes_inplace(act_layer: type[nn.Module]) -> bool:
    return act_layer in (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU)


def make_act(act_layer: type[nn.Module]) -> nn.Module:
    """An activation module, in-place where torch supports it."""
    return act_layer(inplace=True) if _takes_inplace(act_layer) else act_layer()


class SEModule(nn.Module):
    """Squeeze-and-excitation: ``x * gate(expand(act(reduce(mean_hw(x)))))``.

    Subclasses only choose attribute names (the canonical key layouts differ); the computation is shared.
    """

    reduce: nn.Conv2d
    expand: nn.Conv2d
    act: nn.Module
    gate: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(self.act(self.reduce(s)))
        return x * self.gate(s)


class SqueezeExcite(SEModule):
    """SE with timm's key layout: ``conv_reduce``, ``act1``, ``conv_expand``, ``gate``."""

    def __init__(
        self,
        in_chs: int,
        rd_chs: int,
        act_layer: type[nn.Module] = nn.ReLU,
        gate_layer: type[nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(in_chs, rd_chs, 1, bias=True)
        self.act1 = make_act(act_layer)
        self.conv_expand = nn.Conv2d(rd_chs, in_chs, 1, bias=True)
        self.gate = make_act(gate_layer)

    reduce = property(lambda self: self.conv_reduce)  # type: ignore[assignment]
    expand = property(lambda self: self.conv_expand)  # type: ignore[assignment]
    act = property(lambda self: self.act1)  # type: ignore[assignment]


class SqueezeExcitation(SEModule):
    """SE with torchvision's key layout: ``fc1``, ``activation``, ``fc2``, ``scale_activation``."""

    def __init__(
        self,
        in_chs: int,
        rd_chs: int,
        act_layer: type[nn.Module] = nn.ReLU,
        gate_layer: type[nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(in_chs, rd_chs, 1, bias=True)
        self.fc2 = nn.Conv2d(rd_chs, in_chs, 1, bias=True)
        self.activation = make_act(act_layer)
        self.scale_activation = make_act(gate_layer)

    reduce = property(lambda self: self.fc1)  # type: ignore[assignment]
    expand = property(lambda self: self.fc2)  # type: ignore[assignment]
    act = property(lambda self: self.activation)  # type: ignore[assignment]
    gate = property(lambda self: self.scale_activation)  # type: ignore[assignment]



def init_torchvision(model: nn.Module, linear_init=None) -> None:
    """torchvision's initialisation of its mobile models, so a fresh zoo model trains like the canonical one.

    ``linear_init(layer)`` overrides the classifier's N(0, 0.01) (EfficientNet uses a uniform range).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_init is not None:
                linear_init(m)
            else:
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
