"""MnasNet: "MnasNet: Platform-Aware Neural Architecture Search for Mobile", Tan et al., CVPR 2019 (arXiv:1807.11626).

Two canonical implementations, one per searched model:

* MnasNet-A1 (with SE): timm ``semnasnet_100`` (``_gen_mnasnet_a1`` in ``timm/models/efficientnet.py``), built with
  timm's EfficientNet generator (key layout in :mod:`.efficientnet_blocks`).
* MnasNet-B1 (no SE): torchvision ``mnasnet1_0`` / ``mnasnet0_5`` (``torchvision/models/mnasnet.py``, ``_version``
  2, where the stem also scales with ``alpha``). Its key layout is one flat ``layers`` Sequential::

      layers.0-2    conv 3x3/2 to 32 + BN + ReLU                      (stem)
      layers.3-7    depthwise 3x3 + BN + ReLU, 1x1 to 16 + BN         (SepConv, no shortcut)
      layers.8-13   stacks of MBConv (_InvertedResidual with ``.layers``), one row of MNASNET_B1 each
      layers.14-16  conv 1x1 to 1280 + BN + ReLU
      mean over H, W -> classifier (Dropout, Linear)

  torchvision keeps the SepConv as five loose layers of ``layers``, so it cannot be one module (that would move
  its keys); the structure table shows it as two conv rows.

Both use ReLU throughout. A1's SE blocks (timm ``SqueezeExcite``, ReLU, sigmoid gate) reduce to a quarter of the
block's input width.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .efficientnet_blocks import GenEfficientNet, Row
from .registry import register

__all__ = ["MNASNET_A1", "MNASNET_B1", "MnasInvertedResidual", "MNASNet", "mnasnet_a1", "mnasnet_b1",
           "mnasnet_b1_050"]

# MnasNet-A1 (paper Figure 7(a)) as timm's arch_def: one inner tuple per stage (= one ``blocks.i``).
MNASNET_A1: tuple[tuple[Row, ...], ...] = (
    (Row("ds", 1, 3, 1, 16, skip=False),),
    (Row("ir", 2, 3, 2, 24, exp=6),),
    (Row("ir", 3, 5, 2, 40, exp=3, se=0.25),),
    (Row("ir", 4, 3, 2, 80, exp=6),),
    (Row("ir", 2, 3, 1, 112, exp=6, se=0.25),),
    (Row("ir", 3, 5, 2, 160, exp=6, se=0.25),),
    (Row("ir", 1, 3, 1, 320, exp=6),),
)

# MnasNet-B1 after the SepConv, one row per ``layers.8`` .. ``layers.13`` stack:
# (expansion factor, kernel, stride of the first block, output width at alpha 1, repeats)
MNASNET_B1: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 3, 2, 24, 3),
    (3, 5, 2, 40, 3),
    (6, 5, 2, 80, 3),
    (6, 3, 1, 96, 2),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
B1_STEM_CHANNELS = 32
B1_SEPCONV_CHANNELS = 16
B1_HEAD_CHANNELS = 1280
# torchvision's port of the TF BN decay 0.9997; only matters when training.
_BN_MOMENTUM = 1 - 0.9997


def _round_to_multiple_of(val: float, divisor: int = 8, round_up_bias: float = 0.9) -> int:
    """torchvision's width rounding: nearest multiple of ``divisor``, bumped up if that loses more than 10%."""
    new_val = max(divisor, int(val + divisor / 2) // divisor * divisor)
    return new_val if new_val >= round_up_bias * val else new_val + divisor


def _b1_width(chs: int, alpha: float) -> int:
    return _round_to_multiple_of(chs * alpha, 8)


class MnasInvertedResidual(nn.Module):
    """MBConv (torchvision ``_InvertedResidual``): ``layers`` = 1x1 expand, BN, ReLU, depthwise kxk, BN, ReLU, 1x1, BN.

    The expanded width is exactly ``in_ch * expansion_factor`` (no rounding); identity shortcut when the shapes
    match.
    """

    block_type = "MBConv"

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion_factor: int,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        if kernel_size not in (3, 5):
            raise ValueError(f"kernel_size should be 3 or 5, got {kernel_size}")
        mid_ch = in_ch * expansion_factor
        self.apply_residual = in_ch == out_ch and stride == 1
        self.layers = nn.Sequential(
            nn.Conv2d(in_ch, mid_ch, 1, bias=False),
            nn.BatchNorm2d(mid_ch, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_ch, mid_ch, kernel_size, stride, kernel_size // 2, groups=mid_ch, bias=False),
            nn.BatchNorm2d(mid_ch, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        )

    @property
    def hidden_channels(self) -> int:
        """The expanded width."""
        return self.layers[0].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.apply_residual:
            return self.layers(x) + x
        return self.layers(x)


class MNASNet(nn.Module):
    """MnasNet-B1 at depth multiplier ``alpha`` (torchvision ``MNASNet``'s key layout, ``_version`` 2)."""

    def __init__(self, alpha: float = 1.0, num_classes: int = 1000, dropout: float = 0.2,
                 settings=MNASNET_B1) -> None:
        super().__init__()
        if alpha <= 0.0:
            raise ValueError(f"alpha should be greater than 0.0 instead of {alpha}")
        self.alpha = alpha
        self.num_classes = num_classes
        stem = _b1_width(B1_STEM_CHANNELS, alpha)
        sep = _b1_width(B1_SEPCONV_CHANNELS, alpha)
        layers: list[nn.Module] = [
            nn.Conv2d(3, stem, 3, 2, 1, bias=False),
            nn.BatchNorm2d(stem, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            # SepConv, flattened into ``layers`` as torchvision has it.
            nn.Conv2d(stem, stem, 3, 1, 1, groups=stem, bias=False),
            nn.BatchNorm2d(stem, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, sep, 1, bias=False),
            nn.BatchNorm2d(sep, momentum=_BN_MOMENTUM),
        ]
        chs = sep
        for exp, k, s, c, n in settings:
            out = _b1_width(c, alpha)
            stack = [MnasInvertedResidual(chs if i == 0 else out, out, k, s if i == 0 else 1, exp, _BN_MOMENTUM)
                     for i in range(n)]
            layers.append(nn.Sequential(*stack))
            chs = out
        layers += [
            nn.Conv2d(chs, B1_HEAD_CHANNELS, 1, bias=False),
            nn.BatchNorm2d(B1_HEAD_CHANNELS, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(B1_HEAD_CHANNELS, num_classes))
        _init_weights_torchvision(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)
        # torchvision pools with a plain mean over H and W (any input size).
        x = x.mean([2, 3])
        return self.classifier(x)


def _init_weights_torchvision(model: nn.Module) -> None:
    # torchvision MNASNet's initialisation, so a fresh model trains like the canonical one.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="sigmoid")
            nn.init.zeros_(m.bias)


@register("mnasnet_a1", family="mnasnet", canonical="timm:semnasnet_100",
          aliases=("semnasnet_100", "mnasnet_a1_100"))
def mnasnet_a1(num_classes: int = 1000, **kwargs) -> GenEfficientNet:
    """MnasNet-A1 1.0x (with SE), timm's key layout."""
    return GenEfficientNet(MNASNET_A1, num_classes, act_layer=nn.ReLU, stem_chs=32, head_chs=1280, **kwargs)


@register("mnasnet_b1", family="mnasnet", canonical="torchvision:mnasnet1_0",
          aliases=("mnasnet", "mnasnet1_0", "mnasnet_100"))
def mnasnet_b1(num_classes: int = 1000, **kwargs) -> MNASNet:
    """MnasNet-B1 1.0x (no SE), torchvision's key layout."""
    return MNASNet(1.0, num_classes=num_classes, **kwargs)


@register("mnasnet_b1_050", family="mnasnet", canonical="torchvision:mnasnet0_5",
          aliases=("mnasnet0_5", "mnasnet_050"))
def mnasnet_b1_050(num_classes: int = 1000, **kwargs) -> MNASNet:
    """MnasNet-B1 0.5x (no SE), torchvision's key layout."""
    return MNASNet(0.5, num_classes=num_classes, **kwargs)
