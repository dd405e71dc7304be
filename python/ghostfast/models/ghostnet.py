"""GhostNet (V1): "GhostNet: More Features from Cheap Operations", Han et al., CVPR 2020 (arXiv:1911.11907).

Canonical implementation: timm ``ghostnet_050`` / ``ghostnet_100`` / ``ghostnet_130``, which reproduces the official
huawei-noah release (Efficient-AI-Backbones ``ghostnet_pytorch``) with the same ``state_dict`` keys, so the released
1.0x checkpoint loads into :func:`ghostnet_100` without renaming.

Structure (paper Table 1)::

    conv_stem 3x3/2 -> bn1 -> act1 (ReLU)
    blocks.0 .. blocks.8   stages of G-bneck (GhostBottleneck), one row of CFGS each
    blocks.9               ConvBnAct 1x1 to 960 * width (ReLU)
    global_pool -> conv_head 1x1 (bias) to 1280 -> act2 (ReLU) -> flatten -> dropout -> classifier

Widths: every expansion / output width and the stem (16) and last-stage (960) widths are scaled by ``width`` and
rounded with ``make_divisible(.., 4)``; ``conv_head`` stays 1280 at every width. At 0.5x this gives a stem of 8 and a
last stage of 480; at 1.3x a stem of 20 and a last stage of 1248.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .layers import SqueezeExcite, make_act, make_divisible
from .registry import register

__all__ = ["GhostModule", "GhostBottleneck", "ConvBnAct", "GhostNet", "CFGS",
           "ghostnet_050", "ghostnet_100", "ghostnet_130"]

# One inner list per stage (= one ``blocks.i``); one row per G-bneck:
# (kernel of the depthwise conv, expansion width, output width, SE ratio (0 = no SE), stride)
CFGS: tuple[tuple[tuple[int, int, int, float, int], ...], ...] = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0.0, 2),),
    ((3, 200, 80, 0.0, 1),
     (3, 184, 80, 0.0, 1),
     (3, 184, 80, 0.0, 1),
     (3, 480, 112, 0.25, 1),
     (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0.0, 1),
     (5, 960, 160, 0.25, 1),
     (5, 960, 160, 0.0, 1),
     (5, 960, 160, 0.25, 1)),
)
STEM_CHANNELS = 16
LAST_STAGE_CHANNELS = 960
HEAD_CHANNELS = 1280
WIDTH_DIVISOR = 4


class GhostModule(nn.Module):
    """Ghost module: ``y = cat([p, cheap(p)], 1)[:, :out_chs]`` with ``p = primary(x)``.

    * ``primary_conv``: ``Sequential(Conv2d 1x1 (kernel_size) in->init, BatchNorm2d, ReLU | Identity)``
    * ``cheap_operation``: ``Sequential(depthwise Conv2d dw_size init->new (groups=init), BatchNorm2d,
      ReLU | Identity)``

    with ``init = ceil(out_chs / ratio)`` and ``new = init * (ratio - 1)``. The third element of both Sequentials
    is always present (``nn.Identity`` when ``relu=False``), so the layout is the same either way.

    For pattern-matching lowerings: :attr:`primary` / :attr:`primary_bn` / :attr:`primary_act` and :attr:`cheap` /
    :attr:`cheap_bn` / :attr:`cheap_act` name the parts; the output's channels ``[0, init)`` are the primary
    branch, ``[init, out_chs)`` the cheap branch (only its first ``out_chs - init`` channels are kept).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        ratio: int = 2,
        dw_size: int = 3,
        stride: int = 1,
        relu: bool = True,
    ) -> None:
        super().__init__()
        if ratio < 2:
            raise ValueError(f"GhostModule ratio must be >= 2, got {ratio}")
        self.in_chs = in_chs
        self.out_chs = out_chs
        self.ratio = ratio
        self.relu = relu
        init_chs = math.ceil(out_chs / ratio)
        new_chs = init_chs * (ratio - 1)
        self.init_chs = init_chs
        self.new_chs = new_chs
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_chs, init_chs, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(init_chs),
            nn.ReLU(inplace=True) if relu else nn.Identity(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, new_chs, dw_size, 1, dw_size // 2, groups=init_chs, bias=False),
            nn.BatchNorm2d(new_chs),
            nn.ReLU(inplace=True) if relu else nn.Identity(),
        )

    # Named views of the parts (no new parameters, so the state_dict layout is unchanged).
    @property
    def primary(self) -> nn.Conv2d:
        return self.primary_conv[0]

    @property
    def primary_bn(self) -> nn.BatchNorm2d:
        return self.primary_conv[1]

    @property
    def primary_act(self) -> nn.Module:
        return self.primary_conv[2]

    @property
    def cheap(self) -> nn.Conv2d:
        return self.cheap_operation[0]

    @property
    def cheap_bn(self) -> nn.BatchNorm2d:
        return self.cheap_operation[1]

    @property
    def cheap_act(self) -> nn.Module:
        return self.cheap_operation[2]

    @property
    def cheap_out_chs(self) -> int:
        """Channels of the cheap branch that survive the final slice."""
        return self.out_chs - self.init_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)
        if self.init_chs + self.new_chs != self.out_chs:  # only when out_chs is not a multiple of ratio
            out = out[:, : self.out_chs]
        return out

    def extra_repr(self) -> str:
        return f"in_chs={self.in_chs}, out_chs={self.out_chs}, init_chs={self.init_chs}, relu={self.relu}"


class GhostBottleneck(nn.Module):
    """G-bneck: ghost1 (ReLU) -> [conv_dw + bn_dw if stride 2] -> [SE] -> ghost2 (linear), plus shortcut.

    The shortcut is the identity when ``in_chs == out_chs`` and ``stride == 1``, otherwise
    ``Sequential(depthwise Conv2d k/stride, BatchNorm2d, Conv2d 1x1, BatchNorm2d)``. SE is timm's ``SqueezeExcite``
    with a ReLU, a hard-sigmoid gate and ``make_divisible(mid_chs * se_ratio, 4)`` reduced channels.
    """

    block_type = "G-bneck"

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        dw_kernel_size: int = 3,
        stride: int = 1,
        act_layer: type[nn.Module] = nn.ReLU,
        se_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_chs = in_chs
        self.out_chs = out_chs
        self.kernel_size = dw_kernel_size
        self.stride = stride
        self.se_ratio = se_ratio
        pad = (dw_kernel_size - 1) // 2

        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride, pad, groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        else:
            self.conv_dw = None
            self.bn_dw = None
        if se_ratio and se_ratio > 0:
            rd_chs = make_divisible(mid_chs * se_ratio, WIDTH_DIVISOR)
            self.se = SqueezeExcite(mid_chs, rd_chs, act_layer=act_layer, gate_layer=nn.Hardsigmoid)
        else:
            self.se = None
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)

        if in_chs == out_chs and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, pad, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    @property
    def hidden_channels(self) -> int:
        """The expansion width: ghost1's output channels."""
        return self.ghost1.out_chs

    @property
    def has_se(self) -> bool:
        return self.se is not None

    @property
    def has_identity_shortcut(self) -> bool:
        return isinstance(self.shortcut, nn.Identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(x)
        x = self.ghost1(x)
        if self.conv_dw is not None:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + residual


class ConvBnAct(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + activation with timm's ``ConvBnAct`` keys (``conv``, ``bn1``).

    GhostNet's last stage (``blocks.9.0``): the 1x1 conv to ``960 * width`` channels.
    """

    block_type = "conv2d"

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.in_chs = in_chs
        self.out_chs = out_chs
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, (kernel_size - 1) // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act = make_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn1(self.conv(x)))


class GhostNet(nn.Module):
    """GhostNet V1 at width multiplier ``width`` (timm ``GhostNet``'s key layout)."""

    def __init__(
        self,
        cfgs=CFGS,
        num_classes: int = 1000,
        width: float = 1.0,
        in_chans: int = 3,
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.cfgs = cfgs
        self.width = width
        self.num_classes = num_classes
        self.drop_rate = drop_rate

        stem_chs = make_divisible(STEM_CHANNELS * width, WIDTH_DIVISOR)
        self.conv_stem = nn.Conv2d(in_chans, stem_chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU(inplace=True)

        prev_chs = stem_chs
        stages: list[nn.Module] = []
        for stage_cfg in cfgs:
            layers = []
            for k, exp, c, se_ratio, s in stage_cfg:
                out_chs = make_divisible(c * width, WIDTH_DIVISOR)
                mid_chs = make_divisible(exp * width, WIDTH_DIVISOR)
                layers.append(GhostBottleneck(prev_chs, mid_chs, out_chs, k, s, se_ratio=se_ratio))
                prev_chs = out_chs
            stages.append(nn.Sequential(*layers))
        last_chs = make_divisible(LAST_STAGE_CHANNELS * width, WIDTH_DIVISOR)
        stages.append(nn.Sequential(ConvBnAct(prev_chs, last_chs, 1)))
        self.blocks = nn.Sequential(*stages)
        self.num_features = last_chs

        self.head_hidden_size = HEAD_CHANNELS
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(last_chs, HEAD_CHANNELS, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.conv_head(self.global_pool(x)))
        return self.classifier(self.dropout(self.flatten(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register("ghostnet_050", family="ghostnet", canonical="timm:ghostnet_050", aliases=("ghostnet_0_5",))
def ghostnet_050(num_classes: int = 1000, **kwargs) -> GhostNet:
    """GhostNet 0.5x."""
    return GhostNet(num_classes=num_classes, width=0.5, **kwargs)


@register("ghostnet_100", family="ghostnet", canonical="timm:ghostnet_100", aliases=("ghostnet", "ghostnet_1_0"))
def ghostnet_100(num_classes: int = 1000, **kwargs) -> GhostNet:
    """GhostNet 1.0x (the released checkpoint's architecture)."""
    return GhostNet(num_classes=num_classes, width=1.0, **kwargs)


@register("ghostnet_130", family="ghostnet", canonical="timm:ghostnet_130", aliases=("ghostnet_1_3",))
def ghostnet_130(num_classes: int = 1000, **kwargs) -> GhostNet:
    """GhostNet 1.3x."""
    return GhostNet(num_classes=num_classes, width=1.3, **kwargs)
