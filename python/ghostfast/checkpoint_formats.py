"""The checkpoint formats ghostfast loads: which zoo model each fits, how its keys map, how it was evaluated.

A :class:`CheckpointFormat` is one published ``state_dict`` layout (its key names and shapes are in
``data/checkpoint_keys/``). Most equal a zoo model's own layout and load unchanged. Five timm layouts describe the
same networks as the zoo's torchvision-layout models and are renamed onto them by :func:`timm_to_torchvision`
(rules written per block, checked key by key against the zoo model's ``state_dict``):

==============================  ==================  ==========================================================
timm                            zoo model           differences besides the names
==============================  ==================  ==========================================================
mobilenetv2_100                 mobilenet_v2        none
mobilenetv3_large_100 / small   mobilenet_v3_*      ``conv_head`` is a 1x1 conv with bias *after* pooling, no BN:
                                                    on a 1x1 map that is torchvision's ``classifier.0`` Linear
                                                    (weight reshaped). timm's BatchNorm eps is 1e-5,
                                                    torchvision's 1e-3: the model's BN eps is set to 1e-5.
mnasnet_100                     mnasnet_b1          none
efficientnet_b0                 efficientnet_b0     none
==============================  ==================  ==========================================================

timm's ``tf_efficientnet_lite0/1/2`` (the TensorFlow ports, the only published Lite1/Lite2 weights) have the key
layout of ``efficientnet_lite*`` but compute differently: TensorFlow "SAME" padding (asymmetric on stride-2
convolutions) and BatchNorm eps 1e-3. Loading one converts the zoo model's stride-2 convolutions to
:class:`TFSamePadConv2d` and sets the eps, so the model computes what timm's ``tf_`` model computes. Their keys equal
the non-TF ones, so the format cannot be told from the weights: see :func:`ghostfast.checkpoints.detect_format`.

Preprocessing per format (``Preprocess`` values and where they come from):

* torchvision: each weight enum's ``transforms`` -- ``ImageClassification(crop_size=224, resize_size=256)``,
  bilinear, ImageNet mean/std (``IMAGENET1K_V1`` of mobilenet_v2, mobilenet_v3_*, mnasnet*, shufflenet_v2_x0_5 /
  x1_0); ``resize_size=232`` for shufflenet_v2_x1_5 / x2_0 (new-recipe weights); ``resize_size=256, BICUBIC`` for
  efficientnet_b0.
* timm: the model's default ``pretrained_cfg`` (timm/models/{ghostnet,efficientnet,mobilenetv3}.py): input 224,
  ``crop_pct`` 0.875, bicubic, ImageNet mean/std, except ``mobilenetv1_100.ra4_e3600_r224_in1k`` (mean/std 0.5) and
  the ``tf_efficientnet_lite*.in1k`` ports (mean/std 0.5; lite1 240 px, crop_pct 0.882; lite2 260 px, 0.890).
  ``efficientnet_lite1/2`` (no timm weights) use their cfg's 240/0.882 and 260/0.890 with ImageNet mean/std.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources

import torch
import torch.nn as nn
import torch.nn.functional as F

from .preprocess import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, Preprocess

_TIMM_CFG = "timm default pretrained_cfg"


@dataclass(frozen=True)
class CheckpointFormat:
    """One published checkpoint layout and how it becomes a zoo model."""

    name: str  # "library:architecture", e.g. "timm:ghostnet_100"
    model: str  # the zoo model it loads into
    keys_file: str  # data/checkpoint_keys/<file>: the layout's key names and shapes
    preprocess: Preprocess
    remap: bool = False  # keys are renamed by timm_to_torchvision
    bn_eps: float | None = None  # the source's BatchNorm eps where it differs from the zoo model's
    tf_same_padding: bool = False
    published_top1: float | None = None  # the publisher's ImageNet top-1 for its released weights
    note: str = ""
    aliases: tuple[str, ...] = field(default=())


def _tv(arch: str, model: str, top1: float | None, resize: int = 256, interpolation: str = "bilinear",
        weights: str = "IMAGENET1K_V1") -> CheckpointFormat:
    pre = Preprocess.torchvision(224, resize, interpolation,
                                 source=f"torchvision {arch} {weights} transforms: resize {resize} {interpolation}, "
                                        "center crop 224, ImageNet mean/std")
    return CheckpointFormat(f"torchvision:{arch}", model, f"torchvision__{arch}.json", pre, published_top1=top1)


def _timm(arch: str, model: str, *, tag: str, size: int = 224, crop_pct: float = 0.875, tf: bool = False,
          inception_norm: bool = False, keys: str | None = None, **kw) -> CheckpointFormat:
    half = tf or inception_norm  # timm's IMAGENET_INCEPTION_MEAN / _STD
    mean, std = (INCEPTION_MEAN, INCEPTION_STD) if half else (IMAGENET_MEAN, IMAGENET_STD)
    norm = "mean/std 0.5" if half else "ImageNet mean/std"
    pre = Preprocess.timm(size, crop_pct, "bicubic", mean, std,
                          source=f"{_TIMM_CFG} of {arch}.{tag}: {size} px, crop_pct {crop_pct}, bicubic, {norm}")
    extra = dict(bn_eps=1e-3, tf_same_padding=True) if tf else {}
    return CheckpointFormat(f"timm:{arch}", model, keys or f"timm__{arch}.json", pre, **extra, **kw)


FORMATS: tuple[CheckpointFormat, ...] = (
    _timm("ghostnet_050", "ghostnet_050", tag="untrained"),
    _timm("ghostnet_100", "ghostnet_100", tag="in1k", published_top1=73.958,
          note="also the official huawei-noah GhostNet 1.0x release (state_dict_73.98.pth: same keys, "
               "published 73.98)", aliases=("official:ghostnet_100", "huawei:ghostnet_100", "ghostnet_official")),
    _timm("ghostnet_130", "ghostnet_130", tag="untrained"),
    _timm("mobilenetv1_100", "mobilenet_v1", tag="ra4_e3600_r224_in1k", inception_norm=True),
    _timm("mobilenetv2_100", "mobilenet_v2", tag="ra_in1k", remap=True),
    _timm("mobilenetv3_large_100", "mobilenet_v3_large", tag="ra_in1k", remap=True, bn_eps=1e-5),
    _timm("mobilenetv3_small_100", "mobilenet_v3_small", tag="lamb_in1k", remap=True, bn_eps=1e-5),
    _timm("mnasnet_100", "mnasnet_b1", tag="rmsp_in1k", remap=True, published_top1=74.672),
    _timm("semnasnet_100", "mnasnet_a1", tag="rmsp_in1k", published_top1=75.452),
    _timm("efficientnet_b0", "efficientnet_b0", tag="ra_in1k", remap=True,
          note="timm's later efficientnet_b0.ra4_e3600_r224_in1k weights were evaluated with mean/std 0.5 and "
               "crop_pct 0.9: pass preprocess overrides for those"),
    _timm("efficientnet_lite0", "efficientnet_lite0", tag="ra_in1k"),
    _timm("efficientnet_lite1", "efficientnet_lite1", tag="untrained", size=240, crop_pct=0.882),
    _timm("efficientnet_lite2", "efficientnet_lite2", tag="untrained", size=260, crop_pct=0.890),
    _timm("tf_efficientnet_lite0", "efficientnet_lite0", tag="in1k", tf=True, published_top1=74.846),
    _timm("tf_efficientnet_lite1", "efficientnet_lite1", tag="in1k", tf=True, size=240, crop_pct=0.882,
          keys="timm__efficientnet_lite1.json", published_top1=76.674),
    _timm("tf_efficientnet_lite2", "efficientnet_lite2", tag="in1k", tf=True, size=260, crop_pct=0.890,
          keys="timm__efficientnet_lite2.json", published_top1=77.470),
    _tv("mobilenet_v2", "mobilenet_v2", 71.878),
    _tv("mobilenet_v3_large", "mobilenet_v3_large", 74.042),
    _tv("mobilenet_v3_small", "mobilenet_v3_small", 67.668),
    _tv("mnasnet0_5", "mnasnet_b1_050", 67.734),
    _tv("mnasnet1_0", "mnasnet_b1", 73.456),
    _tv("shufflenet_v2_x0_5", "shufflenet_v2_x0_5", 60.552),
    _tv("shufflenet_v2_x1_0", "shufflenet_v2_x1_0", 69.362),
    _tv("shufflenet_v2_x1_5", "shufflenet_v2_x1_5", 72.996, resize=232),
    _tv("shufflenet_v2_x2_0", "shufflenet_v2_x2_0", 76.230, resize=232),
    _tv("efficientnet_b0", "efficientnet_b0", 77.692, interpolation="bicubic"),
)

# Layouts in data/checkpoint_keys/ that no zoo model implements: named in errors instead of "unknown layout".
UNSUPPORTED_LAYOUTS = {
    "timm__ghostnetv2_100.json": "timm ghostnetv2_100 (GhostNetV2 is not in the zoo)",
    "timm__ghostnetv2_130.json": "timm ghostnetv2_130 (GhostNetV2 is not in the zoo)",
    "timm__ghostnetv2_160.json": "timm ghostnetv2_160 (GhostNetV2 is not in the zoo)",
}


def get_format(name: str) -> CheckpointFormat:
    """The format called ``name`` ("timm:ghostnet_100", "torchvision:mobilenet_v2", or an alias)."""
    if not isinstance(name, str):
        raise TypeError(f"format must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    for f in FORMATS:
        if key == f.name or key in f.aliases:
            return f
    raise ValueError(f"unknown checkpoint format {name!r}; known formats: {', '.join(f.name for f in FORMATS)}")


def default_format(model: str) -> CheckpointFormat | None:
    """The format of the zoo model's canonical implementation (whose preprocessing is its default), if any."""
    from .published import canonical

    ref = canonical()[model]["canonical"]
    keys_file = (ref.get("checkpoint_keys_file") or "").split("/")[-1]
    for f in FORMATS:
        if f.model == model and f.keys_file == keys_file and not f.tf_same_padding:
            return f
    return None


@functools.lru_cache(maxsize=None)
def layout(keys_file: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of one reference layout (``data/checkpoint_keys/<keys_file>``)."""
    text = resources.files("ghostfast").joinpath("data", "checkpoint_keys", keys_file).read_text()
    return {k: tuple(v) for k, v in json.loads(text).items()}


def layout_files() -> list[str]:
    return sorted(p.name for p in resources.files("ghostfast").joinpath("data", "checkpoint_keys").iterdir()
                  if p.name.endswith(".json"))


# ---- timm -> torchvision key mapping --------------------------------------------------------------------------------
_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")


def _blocks(keys) -> list[tuple[int, int, str]]:
    """(stage, index, kind) of every timm block in order; kind: ds (depthwise-separable), ir (MBConv), cn (conv)."""
    parts: dict[tuple[int, int], set[str]] = {}
    for k in keys:
        m = _BLOCK.match(k)
        if m:
            parts.setdefault((int(m.group(1)), int(m.group(2))), set()).add(m.group(3).split(".")[0])
    out = []
    for (s, i), names in sorted(parts.items()):
        kind = "ir" if "conv_pwl" in names else "ds" if "conv_dw" in names else "cn" if "conv" in names else "?"
        if kind == "?":
            raise ValueError(f"timm block blocks.{s}.{i} has unrecognized parts {sorted(names)}")
        out.append((s, i, kind))
    return out


def _has_se(keys, s: int, i: int) -> bool:
    return f"blocks.{s}.{i}.se.conv_reduce.weight" in keys


def _seq_slots(kind: str, se: bool) -> dict[str, str]:
    """torchvision's ``block`` Sequential (MobileNetV3, EfficientNet): conv+BN pairs ``j.0`` / ``j.1``, SE ``j``."""
    order = [("conv_dw", "bn1"), "se", ("conv_pw", "bn2")] if kind == "ds" else \
        [("conv_pw", "bn1"), ("conv_dw", "bn2"), "se", ("conv_pwl", "bn3")]
    slots, j = {}, 0
    for part in order:
        if part == "se":
            if not se:
                continue
            slots["se.conv_reduce"], slots["se.conv_expand"] = f"block.{j}.fc1", f"block.{j}.fc2"
        else:
            slots[part[0]], slots[part[1]] = f"block.{j}.0", f"block.{j}.1"
        j += 1
    return slots


def _module_map(target: str, keys) -> dict[str, str]:
    """timm module path -> zoo (torchvision-layout) module path, for every module of the checkpoint."""
    blocks = _blocks(keys)
    n_stages = max(s for s, _, _ in blocks) + 1
    m: dict[str, str] = {}
    if target == "mnasnet_b1":
        m.update({"conv_stem": "layers.0", "bn1": "layers.1", "conv_head": f"layers.{7 + n_stages}",
                  "bn2": f"layers.{8 + n_stages}", "classifier": "classifier.1"})
    else:
        m.update({"conv_stem": "features.0.0", "bn1": "features.0.1"})
    flat = 0  # MobileNetV2/V3 number their blocks in one run over features.1, features.2, ...
    for s, i, kind in blocks:
        flat += 1
        src = f"blocks.{s}.{i}"
        se = _has_se(keys, s, i)
        if target == "mobilenet_v2":
            dst = f"features.{flat}"
            slots = ({"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"} if kind == "ds"
                     else {"conv_pw": "conv.0.0", "bn1": "conv.0.1", "conv_dw": "conv.1.0", "bn2": "conv.1.1",
                           "conv_pwl": "conv.2", "bn3": "conv.3"})
        elif target in ("mobilenet_v3_large", "mobilenet_v3_small"):
            dst = f"features.{flat}"
            slots = {"conv": "0", "bn1": "1"} if kind == "cn" else _seq_slots(kind, se)
        elif target == "efficientnet_b0":
            dst = f"features.{s + 1}.{i}"
            slots = _seq_slots(kind, se)
        elif target == "mnasnet_b1":
            # torchvision keeps the stem's separable conv as loose layers 3..7; the stacks are layers.8 ...
            dst = "layers" if s == 0 else f"layers.{7 + s}.{i}.layers"
            slots = ({"conv_dw": "3", "bn1": "4", "conv_pw": "6", "bn2": "7"} if kind == "ds"
                     else {"conv_pw": "0", "bn1": "1", "conv_dw": "3", "bn2": "4", "conv_pwl": "6", "bn3": "7"})
        else:
            raise ValueError(f"no timm -> torchvision mapping for zoo model {target!r}")
        if kind == "cn" and target not in ("mobilenet_v3_large", "mobilenet_v3_small"):
            raise ValueError(f"unexpected conv block {src} in a timm checkpoint for {target}")
        for part, slot in slots.items():
            m[f"{src}.{part}"] = f"{dst}.{slot}"
    if target == "mobilenet_v2":
        m.update({"conv_head": f"features.{flat + 1}.0", "bn2": f"features.{flat + 1}.1",
                  "classifier": "classifier.1"})
    elif target.startswith("mobilenet_v3"):
        # timm pools, then conv_head (1x1, bias, no BN), act, classifier: torchvision's classifier.0 / .3 Linears.
        m.update({"conv_head": "classifier.0", "classifier": "classifier.3"})
    elif target == "efficientnet_b0":
        m.update({"conv_head": f"features.{n_stages + 1}.0", "bn2": f"features.{n_stages + 1}.1",
                  "classifier": "classifier.1"})
    return m


def timm_to_torchvision(state_dict: dict[str, torch.Tensor], target: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a timm ``state_dict`` onto the zoo model ``target``; returns (renamed, keys no rule covers)."""
    modules = _module_map(target, state_dict.keys())
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix not in modules:
            unmapped.append(key)
            continue
        new = f"{modules[prefix]}.{leaf}"
        if prefix == "conv_head" and leaf == "weight" and modules[prefix].startswith("classifier") and value.dim() == 4:
            value = value.flatten(1)  # 1x1 conv on a pooled 1x1 map == Linear
        out[new] = value
    return out, unmapped


# ---- TensorFlow "SAME" padding (timm's tf_ ports) -------------------------------------------------------------------
class TFSamePadConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding: total padding ``max((ceil(n/s) - 1) * s + k - n, 0)`` per
    side pair, the smaller half first (top / left). Same parameters (and keys) as ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1]):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def use_tf_same_padding(model: nn.Module) -> int:
    """Give every strided convolution of ``model`` TF "SAME" padding (in place); returns how many changed.

    timm builds its ``tf_`` models with ``pad_type='same'``: stride-1 convolutions with odd kernels get static
    symmetric padding (what the zoo model has), strided ones pad dynamically like :class:`TFSamePadConv2d`.
    """
    changed = 0
    for parent in list(model.modules()):
        for name, conv in list(parent.named_children()):
            if type(conv) is not nn.Conv2d or conv.stride == (1, 1):
                continue
            same = TFSamePadConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                                   conv.dilation, conv.groups, conv.bias is not None)
            same.weight = conv.weight
            same.bias = conv.bias
            setattr(parent, name, same)
            changed += 1
    return changed
