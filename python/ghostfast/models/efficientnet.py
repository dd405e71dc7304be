"""EfficientNet: "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", Tan & Le, ICML 2019
(arXiv:1905.11946), and its EfficientNet-Lite variants (tensorflow/tpu ``models/official/efficientnet/lite``).

Canonical implementations:

* EfficientNet-B0: torchvision ``efficientnet_b0`` (``torchvision/models/efficientnet.py``)::

      features.0        Conv2dNormActivation 3x3/2 to 32 (SiLU)
      features.1 .. 7  stages of MBConv (``.block`` Sequential: [1x1 expand], depthwise, SqueezeExcitation,
                        1x1 project), one row of B0_STAGES each
      features.8        Conv2dNormActivation 1x1 to 1280 (SiLU)
      avgpool -> flatten -> classifier (Dropout 0.2, Linear)

  SE reduces to ``max(1, block input width // 4)`` channels with SiLU and a sigmoid gate. Stochastic depth
  (linearly rising to 0.2 over the blocks) drops whole residual branches in training only.

* EfficientNet-Lite0/1/2: timm ``efficientnet_lite0`` / ``lite1`` / ``lite2`` (``_gen_efficientnet_lite``), timm's
  EfficientNet generator (key layout in :mod:`.efficientnet_blocks`). Lite removes SE, uses ReLU6, keeps the stem
  at 32 and the head at 1280 at every scale, and never scales the depth of the first and last stage. Other widths
  are ``round_channels(c * width)``; repeats are ``ceil(n * depth)``. Padding is symmetric (these are not the
  ``tf_`` ports with TF "SAME" padding).

The B0 rows are the paper's Table 1; Lite reuses them (its first stage, expansion 1, is timm's depthwise-separable
block, ``SepConv``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .efficientnet_blocks import GenEfficientNet, Row
from .layers import ConvNormAct, SqueezeExcitation, init_torchvision, make_divisible
from .registry import register

__all__ = ["B0_STAGES", "LITE_ARCH", "MBConv", "StochasticDepth", "EfficientNet", "efficientnet_b0",
           "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]

# Paper Table 1, stages 2-8 (the MBConv stages), one row per ``features.i``:
# (expansion ratio, kernel, stride of the first block, output width, repeats)
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def _lite_arch(stages=B0_STAGES) -> tuple[tuple[Row, ...], ...]:
    # timm spells expansion-1 stages as depthwise-separable blocks ("ds"), the rest as inverted residuals.
    return tuple(
        (Row("ds", n, k, s, c),) if e == 1 else (Row("ir", n, k, s, c, exp=e),)
        for e, k, s, c, n in stages
    )


LITE_ARCH: tuple[tuple[Row, ...], ...] = _lite_arch()

# (width multiplier, depth multiplier, input resolution) of each Lite variant, from the TF lite builder.
LITE_SCALES: dict[str, tuple[float, float, int]] = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}


class StochasticDepth(nn.Module):
    """Drops the whole residual branch of a random subset of samples in training (torchvision ``"row"`` mode).

    Survivors are scaled by ``1 / (1 - p)``; in eval (and at ``p == 0``) it returns its input. No parameters, so
    it adds no keys.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        noise.bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MBConv(nn.Module):
    """MBConv (torchvision ``MBConv``): [1x1 expand] -> depthwise kxk -> SE -> 1x1 project, plus identity.

    ``block`` = ``Sequential([ConvNormAct expand (SiLU),] ConvNormAct depthwise (SiLU), SqueezeExcitation,
    ConvNormAct project (linear))``; the expand conv is left out at expansion 1, shifting the indices by one.
    """

    block_type = "MBConv"

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, expand_ratio: float,
                 stochastic_depth_prob: float = 0.0) -> None:
        super().__init__()
        if not 1 <= stride <= 2:
            raise ValueError("illegal stride value")
        self.use_res_connect = stride == 1 and in_chs == out_chs
        expanded = make_divisible(in_chs * expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded != in_chs:
            layers.append(ConvNormAct(in_chs, expanded, kernel_size=1, act_layer=nn.SiLU))
        layers += [
            ConvNormAct(expanded, expanded, kernel_size=kernel_size, stride=stride, groups=expanded,
                        act_layer=nn.SiLU),
            # torchvision sizes the squeeze from the block input, not from the expanded width.
            SqueezeExcitation(expanded, max(1, in_chs // 4), act_layer=nn.SiLU),
            ConvNormAct(expanded, out_chs, kernel_size=1, act_layer=None),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.out_channels = out_chs

    @property
    def hidden_channels(self) -> int:
        """The expanded width: the depthwise conv's channels."""
        return self.block[-3][0].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result


class EfficientNet(nn.Module):
    """EfficientNet (V1) at width / depth multipliers (torchvision ``EfficientNet``'s key layout)."""

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        stages=B0_STAGES,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes

        def width(c: int) -> int:
            return make_divisible(c * width_mult, 8)

        stem = width(STEM_CHANNELS)
        layers: list[nn.Module] = [ConvNormAct(3, stem, kernel_size=3, stride=2, act_layer=nn.SiLU)]
        depths = [int(math.ceil(n * depth_mult)) for *_, n in stages]
        total_blocks = sum(depths)
        block_id = 0
        chs = stem
        for (e, k, s, c, _), n in zip(stages, depths):
            out = width(c)
            stage: list[nn.Module] = []
            for i in range(n):
                # the drop probability rises linearly with the block's position in the network
                sd_prob = stochastic_depth_prob * float(block_id) / total_blocks
                stage.append(MBConv(chs, out, k, s if i == 0 else 1, e, sd_prob))
                chs = out
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last = 4 * chs  # torchvision's V1 head width: 4x the last stage (1280 at B0)
        layers.append(ConvNormAct(chs, last, kernel_size=1, act_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last, num_classes))
        init_torchvision(self, linear_init=_uniform_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.flatten(self.avgpool(x))
        return self.classifier(x)


def _uniform_linear(m: nn.Linear) -> None:
    # torchvision EfficientNet's classifier init: U(-1/sqrt(out), 1/sqrt(out)), zero bias.
    r = 1.0 / math.sqrt(m.out_features)
    nn.init.uniform_(m.weight, -r, r)
    nn.init.zeros_(m.bias)


def _efficientnet_lite(variant: str, num_classes: int, **kwargs) -> GenEfficientNet:
    width, depth, _ = LITE_SCALES[variant]
    return GenEfficientNet(LITE_ARCH, num_classes, act_layer=nn.ReLU6, stem_chs=STEM_CHANNELS,
                           head_chs=HEAD_CHANNELS, channel_multiplier=width, depth_multiplier=depth,
                           fix_stem=True, fix_first_last=True, **kwargs)


@register("efficientnet_b0", family="efficientnet", canonical="torchvision:efficientnet_b0",
          aliases=("efficientnet", "effnet_b0"))
def efficientnet_b0(num_classes: int = 1000, **kwargs) -> EfficientNet:
    """EfficientNet-B0 at 224x224, torchvision's key layout."""
    return EfficientNet(num_classes=num_classes, width_mult=1.0, depth_mult=1.0, **kwargs)


@register("efficientnet_lite0", family="efficientnet", canonical="timm:efficientnet_lite0",
          aliases=("efficientnet_lite", "lite0"))
def efficientnet_lite0(num_classes: int = 1000, **kwargs) -> GenEfficientNet:
    """EfficientNet-Lite0 (1.0 width, 1.0 depth) at 224x224, timm's key layout."""
    return _efficientnet_lite("efficientnet_lite0", num_classes, **kwargs)


@register("efficientnet_lite1", family="efficientnet", canonical="timm:efficientnet_lite1", input_size=(240, 240))
def efficientnet_lite1(num_classes: int = 1000, **kwargs) -> GenEfficientNet:
    """EfficientNet-Lite1 (1.0 width, 1.1 depth) at 240x240, timm's key layout."""
    return _efficientnet_lite("efficientnet_lite1", num_classes, **kwargs)


@register("efficientnet_lite2", family="efficientnet", canonical="timm:efficientnet_lite2", input_size=(260, 260))
def efficientnet_lite2(num_classes: int = 1000, **kwargs) -> GenEfficientNet:
    """EfficientNet-Lite2 (1.1 width, 1.2 depth) at 260x260, timm's key layout."""
    return _efficientnet_lite("efficientnet_lite2", num_classes, **kwargs)
