"""ShuffleNetV2: channel split, equal-width branches and a two-group channel shuffle.

Paper: Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
ECCV 2018 (Table 5, widths 0.5x / 1x / 1.5x / 2x).

Canonical implementation: torchvision ``torchvision/models/shufflenetv2.py`` (``shufflenet_v2_x0_5`` ...
``shufflenet_v2_x2_0``). Same key layout (``conv1``, ``stage2``-``stage4`` of ``InvertedResidual`` with
``branch1`` / ``branch2``, ``conv5``, ``fc``) and the same forward: stride-1 units split the channels with
``chunk(2)``, pass the first half through and concat it with ``branch2`` of the second half; stride-2 units
concat ``branch1(x)`` and ``branch2(x)``; every unit ends with a 2-group channel shuffle; the head is a mean
over H, W and a biased Linear.

Differences from torchvision that do not change the state_dict or the result: the shuffle is a
:class:`~.shufflenet_v1.ChannelShuffle` module (``shuffle``) instead of a function call, so a module walk sees
it, and stride-1 units have no (empty) ``branch1``. torchvision's ``x2_0`` widens ``conv5`` to 2048, as the
paper does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .layers import ConvNormAct
from .registry import register
from .shufflenet_v1 import ChannelShuffle


class InvertedResidual(nn.Module):
    """One ShuffleNetV2 unit (paper Fig. 3 c/d); torchvision's ``InvertedResidual``."""

    block_type = "shuffle unit"

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        branch_chs = out_chs // 2
        if stride == 1 and in_chs != 2 * branch_chs:
            raise ValueError(f"a stride-1 unit needs in_chs == out_chs (even), got {in_chs} -> {out_chs}")
        self.stride = stride
        if stride == 2:
            # Without a channel split the shortcut half needs its own downsampling branch.
            self.branch1 = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, 3, stride, 1, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, branch_chs, 1, bias=False),
                nn.BatchNorm2d(branch_chs),
                nn.ReLU(inplace=True),
            )
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_chs if stride == 2 else branch_chs, branch_chs, 1, bias=False),
            nn.BatchNorm2d(branch_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(branch_chs, branch_chs, 3, stride, 1, groups=branch_chs, bias=False),
            nn.BatchNorm2d(branch_chs),
            nn.Conv2d(branch_chs, branch_chs, 1, bias=False),
            nn.BatchNorm2d(branch_chs),
            nn.ReLU(inplace=True),
        )
        self.shuffle = ChannelShuffle(2)

    @property
    def hidden_channels(self) -> int:
        return self.branch2[0].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return self.shuffle(out)


@dataclass(frozen=True)
class ShuffleNetV2Cfg:
    """One column of the paper's Table 5: stem width, per-stage output widths, conv5 width."""

    stem_chs: int
    stage_chs: tuple[int, int, int]
    head_chs: int
    stage_repeats: tuple[int, int, int] = (4, 8, 4)


SHUFFLENET_V2_CFGS: dict[str, ShuffleNetV2Cfg] = {
    "x0_5": ShuffleNetV2Cfg(24, (48, 96, 192), 1024),
    "x1_0": ShuffleNetV2Cfg(24, (116, 232, 464), 1024),
    "x1_5": ShuffleNetV2Cfg(24, (176, 352, 704), 1024),
    "x2_0": ShuffleNetV2Cfg(24, (244, 488, 976), 2048),
}


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 built from a :class:`ShuffleNetV2Cfg`; torchvision's module names."""

    def __init__(self, cfg: ShuffleNetV2Cfg, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(3, cfg.stem_chs, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_chs = cfg.stem_chs
        # Attribute names stage2..stage4 follow the paper's stage numbering (stage1 is conv1 + maxpool).
        for idx, (out_chs, repeats) in enumerate(zip(cfg.stage_chs, cfg.stage_repeats), start=2):
            units = [InvertedResidual(in_chs, out_chs, 2)]
            units += [InvertedResidual(out_chs, out_chs, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{idx}", nn.Sequential(*units))
            in_chs = out_chs
        self.conv5 = ConvNormAct(in_chs, cfg.head_chs, 1)
        self.fc = nn.Linear(cfg.head_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x)
        return self.fc(x.mean((2, 3)))


def _shufflenet_v2(width: str, num_classes: int) -> nn.Module:
    return ShuffleNetV2(SHUFFLENET_V2_CFGS[width], num_classes)


@register("shufflenet_v2_x0_5", family="shufflenet_v2", canonical="torchvision:shufflenet_v2_x0_5")
def shufflenet_v2_x0_5(num_classes: int = 1000) -> nn.Module:
    return _shufflenet_v2("x0_5", num_classes)


@register("shufflenet_v2_x1_0", family="shufflenet_v2", canonical="torchvision:shufflenet_v2_x1_0",
          aliases=("shufflenetv2", "shufflenet_v2"))
def shufflenet_v2_x1_0(num_classes: int = 1000) -> nn.Module:
    return _shufflenet_v2("x1_0", num_classes)


@register("shufflenet_v2_x1_5", family="shufflenet_v2", canonical="torchvision:shufflenet_v2_x1_5")
def shufflenet_v2_x1_5(num_classes: int = 1000) -> nn.Module:
    return _shufflenet_v2("x1_5", num_classes)


@register("shufflenet_v2_x2_0", family="shufflenet_v2", canonical="torchvision:shufflenet_v2_x2_0")
def shufflenet_v2_x2_0(num_classes: int = 1000) -> nn.Module:
    return _shufflenet_v2("x2_0", num_classes)
