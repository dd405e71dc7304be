"""ShuffleNet (V1): pointwise group convolutions and channel shuffle.

Paper: Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile
Devices", CVPR 2018 (Table 1, complexity 1x, g = 3 and g = 8).

Canonical implementation: the official release, megvii-model/ShuffleNet-Series, ``ShuffleNetV1/network.py`` +
``blocks.py`` at model size 1.0x. Neither torchvision nor timm ships ShuffleNetV1, so there is no key json to
check against; the module names here are the release's (``first_conv``, ``maxpool``, ``features``,
``globalpool``, ``classifier.0``; per unit ``branch_main_1``, ``branch_main_2``, ``branch_proj``), so the
release's checkpoints load with ``strict=True``.

Differences from the release, none of which changes the 224x224 result:

* ``globalpool`` is ``AdaptiveAvgPool2d(1)`` where the release has a fixed ``AvgPool2d(7)``; equal at 224
  (7x7 final map), but this one also works at other resolutions.
* The release applies ``F.relu`` functionally; here it is an ``nn.ReLU`` module (``act``) so module walks see
  it. The release's unit shuffle is a method; here it is a :class:`ChannelShuffle` module (see below).

Channel shuffle. The paper shuffles g groups by viewing channels as (g, C/g) and transposing. The release's
``channel_shuffle`` instead views them as (C/g, g) and transposes, which is the inverse permutation, i.e. the
paper's shuffle with C/g groups. Either mixes information across groups equally well; we reproduce the
release's permutation (``ChannelShuffle(mid // g)``) because its checkpoints were trained with it.

Architecture (input 224x224; stages 2-4 each start with a stride-2 unit)::

    stage      output   g=3 out  g=8 out  repeats
    conv1      112x112     24       24        1   3x3 s2 + BN + ReLU
    maxpool     56x56      24       24        1   3x3 s2 p1
    stage2      28x28     240      384        4
    stage3      14x14     480      768        8
    stage4       7x7      960     1536        4
    pool+fc      1x1     1000     1000        1   Linear without bias

Unit with input ``cin``, output ``cout``, bottleneck ``m = cout / 4``: 1x1 conv cin->m with g groups (1 group
for stage 2's first unit, whose 24 input channels are too few to split) + BN + ReLU, shuffle (g > 1), 3x3
depthwise (stride s) + BN, 1x1 conv m->o with g groups + BN. Stride 1: ``o = cout``, out = ReLU(x + main).
Stride 2: ``o = cout - cin``, out = concat(AvgPool3x3s2(x), ReLU(main)).

Per-stage arithmetic. Params = conv weights + 2 per BN channel; MACs = conv weights x output pixels. The
first 1x1 of a stride-2 unit runs at the stage's input resolution (56^2, 28^2, 14^2), everything after it at
the output resolution (28^2, 14^2, 7^2). Per unit: "first" is the stride-2 unit, "rest" each stride-1 unit.

g = 3 (m = 60 / 120 / 240)::

    stem    3x3 3->24: 648 w + 48 BN = 696 params;  648 x 112^2 = 8,128,512 MACs
    stage2  first 24->60 (1 group) 1,440 @56^2, dw 540 + 60->216/3 4,320 @28^2, BN 672
              = 6,972 params, 8,326,080 MACs
            rest 240->60/3 4,800, dw 540, 60->240/3 4,800 @28^2, BN 720 = 10,860 p, 7,949,760 M (x3)
            stage: 39,552 params, 32,175,360 MACs
    stage3  first 240->120/3 9,600 @28^2, dw 1,080 + 120->240/3 9,600 @14^2, BN 960 = 21,240 p, 9,619,680 M
            rest 480->120/3 19,200, dw 1,080, 120->480/3 19,200, BN 1,440 = 40,920 p, 7,738,080 M (x7)
            stage: 307,680 params, 63,786,240 MACs
    stage4  first 480->240/3 38,400 @14^2, dw 2,160 + 240->480/3 38,400 @7^2, BN 1,920 = 80,880 p, 9,513,840 M
            rest 960->240/3 76,800, dw 2,160, 240->960/3 76,800, BN 2,880 = 158,640 p, 7,632,240 M (x3)
            stage: 556,800 params, 32,410,560 MACs
    fc      960 x 1000 = 960,000 params and MACs
    total   1,864,728 params, 137,460,672 MACs   (paper 137M; release README 1.9M params, 138M FLOPs)

g = 8 (m = 96 / 192 / 384)::

    stem    696 params, 8,128,512 MACs
    stage2  first 24->96 (1 group) 2,304 @56^2, dw 864 + 96->360/8 4,320 @28^2, BN 1,104
              = 8,592 params, 11,289,600 MACs
            rest 384->96/8 4,608, dw 864, 96->384/8 4,608 @28^2, BN 1,152 = 11,232 p, 7,902,720 M (x3)
            stage: 42,288 params, 34,997,760 MACs
    stage3  first 384->192/8 9,216 @28^2, dw 1,728 + 192->384/8 9,216 @14^2, BN 1,536 = 21,696 p, 9,370,368 M
            rest 768->192/8 18,432, dw 1,728, 192->768/8 18,432, BN 2,304 = 40,896 p, 7,564,032 M (x7)
            stage: 307,968 params, 62,318,592 MACs
    stage4  first 768->384/8 36,864 @14^2, dw 3,456 + 384->768/8 36,864 @7^2, BN 3,072 = 80,256 p, 9,201,024 M
            rest 1536->384/8 73,728, dw 3,456, 384->1536/8 73,728, BN 4,608 = 155,520 p, 7,394,688 M (x3)
            stage: 546,816 params, 31,385,088 MACs
    fc      1536 x 1000 = 1,536,000 params and MACs
    total   2,433,768 params, 138,365,952 MACs   (paper 137M; release README 2.4M params, 138M FLOPs)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .layers import ConvNormAct, make_act
from .registry import register


class ChannelShuffle(nn.Module):
    """Channel shuffle: view channels as ``(groups, C / groups)``, transpose, flatten back.

    ``groups`` has the paper's meaning: after the shuffle, each run of ``groups`` consecutive channels holds
    one channel from each of the input groups. Also used by :mod:`.shufflenet_v2`.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleUnit(nn.Module):
    """One ShuffleNet unit (paper Fig. 2 b/c); the release's ``ShuffleV1Block``."""

    block_type = "ShuffleNet unit"

    def __init__(self, in_chs: int, out_chs: int, groups: int, stride: int, group_first_pw: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if stride == 1 and in_chs != out_chs:
            raise ValueError(f"a stride-1 unit needs in_chs == out_chs, got {in_chs} -> {out_chs}")
        self.stride = stride
        # The bottleneck is a quarter of the unit's full output, also in stride-2 units whose main branch
        # only produces the channels the pooled shortcut does not.
        mid = out_chs // 4
        main_out = out_chs - in_chs if stride == 2 else out_chs
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(in_chs, mid, 1, bias=False, groups=groups if group_first_pw else 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
        )
        # The release's reshape is (C/g, g)-major; see the module docstring.
        self.shuffle = ChannelShuffle(mid // groups) if groups > 1 else nn.Identity()
        self.branch_main_2 = nn.Sequential(
            nn.Conv2d(mid, main_out, 1, bias=False, groups=groups),
            nn.BatchNorm2d(main_out),
        )
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(3, stride=2, padding=1)
        self.act = make_act(nn.ReLU)

    @property
    def hidden_channels(self) -> int:
        return self.branch_main_1[0].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.branch_main_2(self.shuffle(self.branch_main_1(x)))
        if self.stride == 1:
            return self.act(main + x)
        return torch.cat((self.branch_proj(x), self.act(main)), 1)


@dataclass(frozen=True)
class StageCfg:
    """One row of the paper's Table 1: a stage of ``repeats`` units, the first with stride 2."""

    out_chs: int
    repeats: int


# Table 1 at complexity 1x: per group count, the stem width and the three stages.
SHUFFLENET_V1_CFGS: dict[int, tuple[int, tuple[StageCfg, ...]]] = {
    3: (24, (StageCfg(240, 4), StageCfg(480, 8), StageCfg(960, 4))),
    8: (24, (StageCfg(384, 4), StageCfg(768, 8), StageCfg(1536, 4))),
}


class ShuffleNetV1(nn.Module):
    """ShuffleNet with ``groups`` groups in its pointwise convolutions."""

    def __init__(self, groups: int, num_classes: int = 1000) -> None:
        super().__init__()
        stem_chs, stages = SHUFFLENET_V1_CFGS[groups]
        self.first_conv = ConvNormAct(3, stem_chs, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        units: list[nn.Module] = []
        in_chs = stem_chs
        for si, stage in enumerate(stages):
            for i in range(stage.repeats):
                units.append(ShuffleUnit(in_chs, stage.out_chs, groups, stride=2 if i == 0 else 1,
                                         group_first_pw=not (si == 0 and i == 0)))
                in_chs = stage.out_chs
        self.features = nn.Sequential(*units)
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(in_chs, num_classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.maxpool(self.first_conv(x)))
        x = torch.flatten(self.globalpool(x), 1)
        return self.classifier(x)


_CANONICAL = "official:megvii-model/ShuffleNet-Series ShuffleNetV1 1.0x"


@register("shufflenet_v1_g3", family="shufflenet_v1", canonical=_CANONICAL,
          aliases=("shufflenet", "shufflenetv1", "shufflenet_v1"))
def shufflenet_v1_g3(num_classes: int = 1000) -> nn.Module:
    return ShuffleNetV1(3, num_classes)


@register("shufflenet_v1_g8", family="shufflenet_v1", canonical=_CANONICAL, aliases=("shufflenetv1_g8",))
def shufflenet_v1_g8(num_classes: int = 1000) -> nn.Module:
    return ShuffleNetV1(8, num_classes)
