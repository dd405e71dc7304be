"""MobileNetV2: "MobileNetV2: Inverted Residuals and Linear Bottlenecks", Sandler et al., CVPR 2018
(arXiv:1801.04381).

Canonical implementation: torchvision ``mobilenet_v2`` (``torchvision/models/mobilenetv2.py``). The module nesting and
attribute names equal torchvision's, so its ``IMAGENET1K_V1`` / ``V2`` checkpoints load with ``strict=True``.

Structure (paper Table 2)::

    features.0             Conv2dNormActivation 3x3/2 to 32 (ReLU6)
    features.1 .. 17       bottleneck (InvertedResidual), ``n`` per row of SETTINGS
    features.18            Conv2dNormActivation 1x1 to 1280 (ReLU6)
    avgpool -> flatten -> classifier (Dropout, Linear)

Widths: every width is scaled by ``width_mult`` and rounded with ``make_divisible(.., 8)``; the last conv never
shrinks below 1280 (torchvision scales it only when ``width_mult > 1``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import ConvNormAct, make_divisible, init_torchvision
from .registry import register

__all__ = ["InvertedResidual", "MobileNetV2", "SETTINGS", "mobilenet_v2"]

# One row per stage of the paper's Table 2:
# (expansion factor t, output width c, repeats n, stride s of the first block)
SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
ROUND_NEAREST = 8


class InvertedResidual(nn.Module):
    """bottleneck: [1x1 expand (ReLU6)] -> 3x3 depthwise (ReLU6) -> 1x1 linear projection + BN, plus identity.

    ``conv`` is ``Sequential([ConvNormAct expand,] ConvNormAct depthwise, Conv2d, BatchNorm2d)``; the expand conv is
    left out when ``expand_ratio == 1`` (torchvision's layout, so the indices shift by one in ``features.1``).
    The identity shortcut is taken when ``stride == 1`` and the widths match.
    """

    block_type = "bottleneck"

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        self.stride = stride
        # torchvision rounds (not make_divisible) the expanded width; at width 1.0 they agree.
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(inp, hidden, kernel_size=1, act_layer=nn.ReLU6))
        layers += [
            ConvNormAct(hidden, hidden, kernel_size=3, stride=stride, groups=hidden, act_layer=nn.ReLU6),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1  # torchvision's flag, kept for code that inspects it

    @property
    def hidden_channels(self) -> int:
        """The expanded width: the depthwise conv's channels."""
        return self.conv[-3][0].out_channels

    @property
    def in_channels(self) -> int:
        return self.conv[0][0].in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 at width multiplier ``width_mult`` (torchvision ``MobileNetV2``'s key layout)."""

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        settings=SETTINGS,
        round_nearest: int = ROUND_NEAREST,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.width_mult = width_mult
        self.num_classes = num_classes
        input_channel = make_divisible(STEM_CHANNELS * width_mult, round_nearest)
        self.last_channel = make_divisible(LAST_CHANNELS * max(1.0, width_mult), round_nearest)

        features: list[nn.Module] = [ConvNormAct(3, input_channel, kernel_size=3, stride=2, act_layer=nn.ReLU6)]
        for t, c, n, s in settings:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(ConvNormAct(input_channel, self.last_channel, kernel_size=1, act_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        init_torchvision(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.flatten(self.avgpool(x))
        return self.classifier(x)




@register("mobilenet_v2", family="mobilenet_v2", canonical="torchvision:mobilenet_v2",
          aliases=("mobilenetv2", "mobilenetv2_100"))
def mobilenet_v2(num_classes: int = 1000, **kwargs) -> MobileNetV2:
    """MobileNetV2 1.0x."""
    return MobileNetV2(num_classes=num_classes, width_mult=1.0, **kwargs)
