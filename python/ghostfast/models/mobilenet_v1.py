"""MobileNetV1: "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications", Howard et al.,
2017 (arXiv:1704.04861).

Canonical implementation: timm ``mobilenetv1_100`` (``_gen_mobilenet_v1`` in ``timm/models/efficientnet.py``), built
with timm's EfficientNet generator, so the key layout is the generator's (see :mod:`.efficientnet_blocks`) and
timm's checkpoints load with ``strict=True``.

Structure (paper Table 1; each "Conv dw" + "Conv 1x1" pair is one ``dwsep`` block)::

    conv_stem 3x3/2 to 32 -> bn1 -> ReLU6
    blocks.0 .. blocks.4   dwsep (depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN + ReLU6), one row of ARCH each
    global_pool -> flatten -> dropout -> classifier (1024 -> classes)

There is no head conv: the last block's 1024 channels feed the classifier directly. The activation is ReLU6
(timm's default for this generator; the paper only says ReLU).
"""
from __future__ import annotations

import torch.nn as nn

from .efficientnet_blocks import GenEfficientNet, Row
from .registry import register

__all__ = ["ARCH", "mobilenet_v1"]

# One inner tuple per stage (= one ``blocks.i``): every layer of the paper's Table 1 after the stem, the five
# stride-2 layers starting a stage.
ARCH: tuple[tuple[Row, ...], ...] = (
    (Row("dsa", 1, 3, 1, 64),),
    (Row("dsa", 2, 3, 2, 128),),
    (Row("dsa", 2, 3, 2, 256),),
    (Row("dsa", 6, 3, 2, 512),),
    (Row("dsa", 2, 3, 2, 1024),),
)
STEM_CHANNELS = 32


@register("mobilenet_v1", family="mobilenet_v1", canonical="timm:mobilenetv1_100",
          aliases=("mobilenetv1", "mobilenetv1_100"))
def mobilenet_v1(num_classes: int = 1000, **kwargs) -> GenEfficientNet:
    """MobileNetV1 1.0x at 224x224."""
    return GenEfficientNet(ARCH, num_classes, act_layer=nn.ReLU6, stem_chs=STEM_CHANNELS, head_chs=0, **kwargs)
