"""MobileNetV3: "Searching for MobileNetV3", Howard et al., ICCV 2019 (arXiv:1905.02244).

Canonical implementation: torchvision ``mobilenet_v3_large`` / ``mobilenet_v3_small``
(``torchvision/models/mobilenetv3.py``). The module nesting and attribute names equal torchvision's, so its
checkpoints load with ``strict=True``.

Structure (paper Tables 1 and 2)::

    features.0             Conv2dNormActivation 3x3/2 to 16 (Hardswish)
    features.1 .. N        bneck (InvertedResidual), one row of the config table each
    features.N+1           Conv2dNormActivation 1x1 to 6 x the last bneck width (Hardswish)
    avgpool -> flatten -> classifier (Linear to 1280 / 1024, Hardswish, Dropout, Linear)

Every BatchNorm uses ``eps=1e-3, momentum=0.01`` (torchvision's choice for this family, unlike MobileNetV2), which
changes what eval mode computes. SE is torchvision's ``SqueezeExcitation`` with
``make_divisible(expanded // 4, 8)`` squeeze channels, ReLU inside and a hard-sigmoid gate, after the depthwise conv.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from .layers import ConvNormAct, SqueezeExcitation, make_divisible, init_torchvision
from .registry import register

__all__ = ["InvertedResidualConfig", "InvertedResidual", "MobileNetV3", "LARGE", "SMALL",
           "mobilenet_v3_large", "mobilenet_v3_small"]

BN_EPS = 1e-3
BN_MOMENTUM = 0.01
ROUND_NEAREST = 8


class InvertedResidualConfig(NamedTuple):
    """One bneck row at width 1.0: torchvision's ``InvertedResidualConfig`` fields, widths not yet scaled."""

    input_c: int
    kernel: int
    expanded_c: int
    out_c: int
    use_se: bool
    activation: str  # "RE" (ReLU) or "HS" (hard-swish)
    stride: int
    dilation: int = 1

    def scaled(self, width_mult: float) -> "InvertedResidualConfig":
        return self._replace(
            input_c=adjust_channels(self.input_c, width_mult),
            expanded_c=adjust_channels(self.expanded_c, width_mult),
            out_c=adjust_channels(self.out_c, width_mult),
        )


def adjust_channels(channels: int, width_mult: float) -> int:
    return make_divisible(channels * width_mult, ROUND_NEAREST)


_C = InvertedResidualConfig
# Paper Table 1 (MobileNetV3-Large): input, kernel, exp size, #out, SE, NL, stride, dilation.
LARGE: tuple[InvertedResidualConfig, ...] = (
    _C(16, 3, 16, 16, False, "RE", 1),
    _C(16, 3, 64, 24, False, "RE", 2),
    _C(24, 3, 72, 24, False, "RE", 1),
    _C(24, 5, 72, 40, True, "RE", 2),
    _C(40, 5, 120, 40, True, "RE", 1),
    _C(40, 5, 120, 40, True, "RE", 1),
    _C(40, 3, 240, 80, False, "HS", 2),
    _C(80, 3, 200, 80, False, "HS", 1),
    _C(80, 3, 184, 80, False, "HS", 1),
    _C(80, 3, 184, 80, False, "HS", 1),
    _C(80, 3, 480, 112, True, "HS", 1),
    _C(112, 3, 672, 112, True, "HS", 1),
    _C(112, 5, 672, 160, True, "HS", 2),
    _C(160, 5, 960, 160, True, "HS", 1),
    _C(160, 5, 960, 160, True, "HS", 1),
)
LARGE_LAST_CHANNEL = 1280

# Paper Table 2 (MobileNetV3-Small).
SMALL: tuple[InvertedResidualConfig, ...] = (
    _C(16, 3, 16, 16, True, "RE", 2),
    _C(16, 3, 72, 24, False, "RE", 2),
    _C(24, 3, 88, 24, False, "RE", 1),
    _C(24, 5, 96, 40, True, "HS", 2),
    _C(40, 5, 240, 40, True, "HS", 1),
    _C(40, 5, 240, 40, True, "HS", 1),
    _C(40, 5, 120, 48, True, "HS", 1),
    _C(48, 5, 144, 48, True, "HS", 1),
    _C(48, 5, 288, 96, True, "HS", 2),
    _C(96, 5, 576, 96, True, "HS", 1),
    _C(96, 5, 576, 96, True, "HS", 1),
)
SMALL_LAST_CHANNEL = 1024
del _C

_ACTIVATIONS: dict[str, type[nn.Module]] = {"RE": nn.ReLU, "HS": nn.Hardswish}


def _conv_bn_act(
    in_chs: int,
    out_chs: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    dilation: int = 1,
    act_layer: type[nn.Module] | None = None,
) -> ConvNormAct:
    """A ``ConvNormAct`` with this family's BatchNorm settings and torchvision's dilated padding."""
    m = ConvNormAct(in_chs, out_chs, kernel_size, stride, groups=groups, act_layer=act_layer,
                    padding=(kernel_size - 1) // 2 * dilation)
    # ConvNormAct has no dilation argument; Conv2d reads the attribute at forward time, so setting it is enough.
    m[0].dilation = (dilation, dilation)
    m[1].eps = BN_EPS
    m[1].momentum = BN_MOMENTUM
    return m


class InvertedResidual(nn.Module):
    """bneck: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 linear projection, plus identity.

    ``block`` is ``Sequential`` of ``ConvNormAct`` (and ``SqueezeExcitation``); the expand conv is left out when the
    expanded width equals the input width. Expand and depthwise use the row's activation (ReLU or hard-swish); the
    identity shortcut is taken when ``stride == 1`` and the widths match.
    """

    block_type = "bneck"

    def __init__(self, cnf: InvertedResidualConfig) -> None:
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError(f"illegal stride value {cnf.stride}")
        self.use_res_connect = cnf.stride == 1 and cnf.input_c == cnf.out_c
        act = _ACTIVATIONS[cnf.activation]
        layers: list[nn.Module] = []
        if cnf.expanded_c != cnf.input_c:
            layers.append(_conv_bn_act(cnf.input_c, cnf.expanded_c, 1, act_layer=act))
        # A dilated block keeps its resolution instead of striding (torchvision's dilated=True variant).
        stride = 1 if cnf.dilation > 1 else cnf.stride
        layers.append(_conv_bn_act(cnf.expanded_c, cnf.expanded_c, cnf.kernel, stride, groups=cnf.expanded_c,
                                   dilation=cnf.dilation, act_layer=act))
        if cnf.use_se:
            squeeze = make_divisible(cnf.expanded_c // 4, ROUND_NEAREST)
            layers.append(SqueezeExcitation(cnf.expanded_c, squeeze, act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid))
        layers.append(_conv_bn_act(cnf.expanded_c, cnf.out_c, 1, act_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_c
        self._is_cn = cnf.stride > 1  # torchvision's flag, kept for code that inspects it

    @property
    def hidden_channels(self) -> int:
        """The expanded width: the depthwise conv's channels."""
        return self.block[-3 if self.has_se else -2][0].out_channels

    @property
    def has_se(self) -> bool:
        return any(isinstance(m, SqueezeExcitation) for m in self.block)

    @property
    def in_channels(self) -> int:
        return self.block[0][0].in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = out + x
        return out


class MobileNetV3(nn.Module):
    """MobileNetV3 from a table of bneck rows (torchvision ``MobileNetV3``'s key layout)."""

    def __init__(
        self,
        setting=LARGE,
        last_channel: int = LARGE_LAST_CHANNEL,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        cfgs = [c.scaled(width_mult) for c in setting]
        last_channel = adjust_channels(last_channel, width_mult)
        self.width_mult = width_mult
        self.num_classes = num_classes

        features: list[nn.Module] = [
            _conv_bn_act(3, cfgs[0].input_c, 3, stride=2, act_layer=nn.Hardswish)
        ]
        features += [InvertedResidual(c) for c in cfgs]
        last_in = cfgs[-1].out_c
        last_out = 6 * last_in
        features.append(_conv_bn_act(last_in, last_out, 1, act_layer=nn.Hardswish))
        self.features = nn.Sequential(*features)

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_out, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        init_torchvision(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.flatten(self.avgpool(x))
        return self.classifier(x)




@register("mobilenet_v3_large", family="mobilenet_v3", canonical="torchvision:mobilenet_v3_large",
          aliases=("mobilenetv3", "mobilenet_v3", "mobilenetv3_large", "mobilenetv3_large_100"))
def mobilenet_v3_large(num_classes: int = 1000, **kwargs) -> MobileNetV3:
    """MobileNetV3-Large 1.0x."""
    return MobileNetV3(LARGE, LARGE_LAST_CHANNEL, num_classes=num_classes, **kwargs)


@register("mobilenet_v3_small", family="mobilenet_v3", canonical="torchvision:mobilenet_v3_small",
          aliases=("mobilenetv3_small", "mobilenetv3_small_100"))
def mobilenet_v3_small(num_classes: int = 1000, **kwargs) -> MobileNetV3:
    """MobileNetV3-Small 1.0x."""
    return MobileNetV3(SMALL, SMALL_LAST_CHANNEL, num_classes=num_classes, **kwargs)
