"""Blocks and builder of timm's EfficientNet family generator, shared by MobileNetV1, MnasNet-A1 and EfficientNet-Lite.

Canonical implementation: timm ``timm/models/_efficientnet_blocks.py`` (``DepthwiseSeparableConv``,
``InvertedResidual``), ``timm/models/_efficientnet_builder.py`` (``decode_arch_def``, ``EfficientNetBuilder``,
``round_channels``) and the ``EfficientNet`` model class of ``timm/models/efficientnet.py``. The key layout is
timm's::

    conv_stem, bn1
    blocks.{stage}.{idx}.{conv_dw, bn1, [se.conv_reduce, se.conv_expand], conv_pw, bn2}      (depthwise-separable)
    blocks.{stage}.{idx}.{conv_pw, bn1, conv_dw, bn2, [se.conv_reduce, se.conv_expand], conv_pwl, bn3}  (MBConv)
    [conv_head, bn2]
    classifier

timm fuses BN and activation into ``BatchNormAct2d``, whose keys are those of a plain BN. Here each such BN is an
``nn.BatchNorm2d`` followed by a separate activation attribute (``act1``, ``act2``, ...), which has no keys, so timm
checkpoints load with ``strict=True``.

An architecture is data: a tuple of stages, each a tuple of :class:`Row` (timm's ``arch_def`` strings, decoded).
:func:`build_stages` turns it into ``nn.Sequential`` stages, applying timm's width rounding and depth scaling.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn as nn

from .layers import SqueezeExcite, make_act, make_divisible

__all__ = ["Row", "DepthwiseSeparableConv", "DepthwiseSeparableConvAct", "InvertedResidual", "GenEfficientNet",
           "round_channels", "scale_depth", "build_stages", "init_weights_timm"]


class Row(NamedTuple):
    """One row of a stage table (one timm ``arch_def`` string), repeated ``repeats`` times.

    ``kind``: ``"ds"`` (depthwise-separable, linear projection), ``"dsa"`` (depthwise-separable with an activation
    after the pointwise conv and never a shortcut: MobileNetV1's layer) or ``"ir"`` (inverted residual / MBConv).
    ``stride`` applies to the first repeat only. ``se``: SE ratio relative to the block *input* width (0 = no SE).
    ``skip=False`` is timm's ``noskip``.
    """

    kind: str
    repeats: int
    kernel: int
    stride: int
    out: int
    exp: float = 1.0
    se: float = 0.0
    skip: bool = True


def round_channels(channels: float, multiplier: float = 1.0, divisor: int = 8) -> int:
    """timm's ``round_channels``: widths are only rounded when a multiplier is given (0 means "keep as is")."""
    if not multiplier:
        return int(channels)
    return make_divisible(channels * multiplier, divisor)


def scale_depth(repeats: Sequence[int], multiplier: float) -> list[int]:
    """Repeats of the rows of one stage after depth scaling (timm's ``_scale_stage_depth``, ``ceil`` mode).

    The stage total is scaled and rounded up, then shared out over the rows from the last to the first, so with
    several rows the later ones absorb the rounding.
    """
    remaining = sum(repeats)
    target = int(math.ceil(remaining * multiplier))
    scaled: list[int] = []
    for r in reversed(repeats):
        rs = max(1, round(r / remaining * target))
        scaled.append(rs)
        remaining -= r
        target -= rs
    return scaled[::-1]


class DepthwiseSeparableConv(nn.Module):
    """SepConv: depthwise kxk (+BN, act) -> [SE] -> pointwise 1x1 (+BN, linear), plus identity when shapes match.

    timm's ``DepthwiseSeparableConv``; used where an inverted residual would have expansion 1 (MnasNet's first
    block, EfficientNet-Lite's first stage).
    """

    block_type = "SepConv"

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        act_layer: type[nn.Module] = nn.ReLU,
        se_ratio: float = 0.0,
        pw_act: bool = False,
        skip: bool = True,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.has_skip = stride == 1 and in_chs == out_chs and skip
        self.has_pw_act = pw_act
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel_size, stride, (kernel_size - 1) // 2, groups=in_chs,
                                 bias=False)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act1 = make_act(act_layer)
        # timm derives the SE width from the block input; with no expansion that is the depthwise width.
        self.se = SqueezeExcite(in_chs, round(in_chs * se_ratio), act_layer=act_layer) if se_ratio else None
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = make_act(act_layer) if pw_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_dw(x)))
        if self.se is not None:
            x = self.se(x)
        x = self.bn2(self.conv_pw(x))
        if self.act2 is not None:
            x = self.act2(x)
        if self.has_skip:
            x = x + shortcut
        return x


class DepthwiseSeparableConvAct(DepthwiseSeparableConv):
    """MobileNetV1's depthwise-separable layer (timm ``dsa``): both convs followed by BN + activation, no shortcut."""

    block_type = "dwsep"

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        act_layer: type[nn.Module] = nn.ReLU,
        se_ratio: float = 0.0,
        pw_act: bool = True,
        skip: bool = False,
    ) -> None:
        super().__init__(in_chs, out_chs, kernel_size, stride, act_layer, se_ratio, pw_act=pw_act, skip=skip)


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expand (+BN, act) -> depthwise kxk (+BN, act) -> [SE] -> 1x1 linear projection (+BN), plus identity.

    timm's ``InvertedResidual``. The expanded width is ``make_divisible(in_chs * exp_ratio, 8)``; the SE reduces to
    ``round(in_chs * se_ratio)`` channels (timm computes it as ``mid * se_ratio / exp_ratio``, kept verbatim so
    fractional expansions round the same way) with the block's own activation and a sigmoid gate.
    """

    block_type = "MBConv"

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        exp_ratio: float = 6.0,
        act_layer: type[nn.Module] = nn.ReLU,
        se_ratio: float = 0.0,
        skip: bool = True,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.has_skip = stride == 1 and in_chs == out_chs and skip
        mid_chs = make_divisible(in_chs * exp_ratio)
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs)
        self.act1 = make_act(act_layer)
        self.conv_dw = nn.Conv2d(mid_chs, mid_chs, kernel_size, stride, (kernel_size - 1) // 2, groups=mid_chs,
                                 bias=False)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        self.act2 = make_act(act_layer)
        if se_ratio:
            self.se = SqueezeExcite(mid_chs, round(mid_chs * (se_ratio / exp_ratio)), act_layer=act_layer)
        else:
            self.se = None
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)

    @property
    def hidden_channels(self) -> int:
        """The expanded width."""
        return self.conv_pw.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        if self.se is not None:
            x = self.se(x)
        x = self.bn3(self.conv_pwl(x))
        if self.has_skip:
            x = x + shortcut
        return x


def _make_block(row: Row, in_chs: int, out_chs: int, stride: int, act_layer: type[nn.Module]) -> nn.Module:
    if row.kind == "ir":
        return InvertedResidual(in_chs, out_chs, row.kernel, stride, row.exp, act_layer, row.se, row.skip)
    if row.kind == "ds":
        return DepthwiseSeparableConv(in_chs, out_chs, row.kernel, stride, act_layer, row.se, skip=row.skip)
    if row.kind == "dsa":
        return DepthwiseSeparableConvAct(in_chs, out_chs, row.kernel, stride, act_layer, row.se)
    raise ValueError(f"unknown block kind {row.kind!r} (expected 'ds', 'dsa' or 'ir')")


def build_stages(
    in_chs: int,
    arch: Sequence[Sequence[Row]],
    act_layer: type[nn.Module],
    round_chs: Callable[[float], int] = round_channels,
    depth_multiplier: float = 1.0,
    fix_first_last: bool = False,
) -> tuple[list[nn.Sequential], int]:
    """The stages of ``arch`` as ``nn.Sequential`` s, and the output width of the last one.

    Output widths go through ``round_chs``; repeats through :func:`scale_depth`, except for the first and last
    stage when ``fix_first_last`` (EfficientNet-Lite keeps those at one block at every scale).
    """
    stages: list[nn.Sequential] = []
    chs = in_chs
    for i, stage in enumerate(arch):
        fixed = fix_first_last and i in (0, len(arch) - 1)
        repeats = scale_depth([r.repeats for r in stage], 1.0 if fixed else depth_multiplier)
        blocks: list[nn.Module] = []
        for row, n in zip(stage, repeats):
            out_chs = round_chs(row.out)
            for j in range(n):
                blocks.append(_make_block(row, chs, out_chs, row.stride if j == 0 else 1, act_layer))
                chs = out_chs
        stages.append(nn.Sequential(*blocks))
    return stages, chs


class GenEfficientNet(nn.Module):
    """timm's ``EfficientNet`` model class: stem conv 3x3/2, staged blocks, [1x1 head conv], pool, classifier.

    ``head_chs=0`` leaves out ``conv_head`` / ``bn2`` (MobileNetV1), so the classifier sees the last stage.
    The stem width is rounded with the channel multiplier unless ``fix_stem``; the head width never is (the
    generators pass it already final). Dropout is ``nn.Dropout(drop_rate)`` before the classifier; timm's
    constructors default ``drop_rate`` to 0.
    """

    def __init__(
        self,
        arch: Sequence[Sequence[Row]],
        num_classes: int = 1000,
        *,
        act_layer: type[nn.Module] = nn.ReLU,
        stem_chs: int = 32,
        head_chs: int = 1280,
        channel_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
        fix_stem: bool = False,
        fix_first_last: bool = False,
        drop_rate: float = 0.0,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate

        def round_chs(c: float) -> int:
            return round_channels(c, channel_multiplier)

        if not fix_stem:
            stem_chs = round_chs(stem_chs)
        self.conv_stem = nn.Conv2d(in_chans, stem_chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = make_act(act_layer)

        stages, last_chs = build_stages(stem_chs, arch, act_layer, round_chs, depth_multiplier, fix_first_last)
        self.blocks = nn.Sequential(*stages)

        if head_chs > 0:
            self.conv_head = nn.Conv2d(last_chs, head_chs, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(head_chs)
            self.act2 = make_act(act_layer)
            self.num_features = head_chs
        else:
            self.conv_head = None
            self.bn2 = None
            self.act2 = None
            self.num_features = last_chs

        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes)
        init_weights_timm(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        if self.conv_head is not None:
            x = self.act2(self.bn2(self.conv_head(x)))
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.global_pool(x))
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def init_weights_timm(model: nn.Module) -> None:
    """timm's ``efficientnet_init_weights`` (the TF reference initialisation), so fresh models train alike."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_range = 1.0 / math.sqrt(m.weight.size(0))
            nn.init.uniform_(m.weight, -init_range, init_range)
            nn.init.zeros_(m.bias)
