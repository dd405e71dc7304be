"""Evaluation preprocessing: decode -> resize the shorter side -> center crop -> scale to [0, 1] -> normalize.

:class:`Preprocess` reproduces, on PIL images, what the reference evaluations do, so a checkpoint scores here what
its publisher reports:

* torchvision ``ImageClassification`` (the ``weights.transforms()`` of every torchvision checkpoint):
  ``Resize(resize_size)`` on the shorter side, ``CenterCrop(crop_size)``, ``ToTensor``, ``Normalize``;
* timm ``transforms_imagenet_eval`` (crop mode "center"): the same steps with
  ``resize = floor(input_size / crop_pct)``.

On PIL images both libraries call ``PIL.Image.resize`` with the named filter (PIL filters antialias when
downscaling), crop at ``int(round((size - crop) / 2))``, divide by 255 and normalize in float32; this module does the
same operations in the same order, in numpy.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # timm's IMAGENET_INCEPTION_MEAN / _STD, used by TF ports and some timm weights
INCEPTION_STD = (0.5, 0.5, 0.5)

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Preprocess:
    """One evaluation transform. ``crop``: (H, W) fed to the model; ``resize``: the shorter side before cropping."""

    crop: tuple[int, int]
    resize: int
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""  # where these values come from, shown with every result

    def __post_init__(self) -> None:
        crop = (self.crop, self.crop) if isinstance(self.crop, int) else tuple(self.crop)
        if len(crop) != 2 or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in crop):
            raise ValueError(f"crop must be a positive int or (H, W), got {self.crop!r}")
        object.__setattr__(self, "crop", crop)
        if isinstance(self.resize, bool) or not isinstance(self.resize, int) or self.resize < max(crop):
            raise ValueError(f"resize must be an int >= the crop size {max(crop)}, got {self.resize!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        for what in ("mean", "std"):
            v = tuple(float(x) for x in getattr(self, what))
            if len(v) != 3 or (what == "std" and min(v) <= 0):
                raise ValueError(f"{what} must be three numbers (std > 0), got {getattr(self, what)!r}")
            object.__setattr__(self, what, v)

    @classmethod
    def torchvision(cls, crop: int = 224, resize: int = 256, interpolation: str = "bilinear",
                    source: str = "") -> "Preprocess":
        """torchvision's ``ImageClassification(crop_size, resize_size, interpolation)`` with ImageNet mean/std."""
        return cls((crop, crop), resize, interpolation, IMAGENET_MEAN, IMAGENET_STD, source)

    @classmethod
    def timm(cls, input_size: int = 224, crop_pct: float = 0.875, interpolation: str = "bicubic",
             mean=IMAGENET_MEAN, std=IMAGENET_STD, source: str = "") -> "Preprocess":
        """timm's eval transform for a ``pretrained_cfg``: resize to ``floor(input_size / crop_pct)``, crop."""
        return cls((input_size, input_size), math.floor(input_size / crop_pct), interpolation, mean, std, source)

    def replace(self, **changes) -> "Preprocess":
        """A copy with some fields changed (``crop`` may be an int); the source notes the override."""
        unknown = set(changes) - {"crop", "resize", "interpolation", "mean", "std", "source"}
        if unknown:
            raise ValueError(f"unknown preprocessing setting(s) {sorted(unknown)}; "
                             "known: crop, resize, interpolation, mean, std")
        fields = {**asdict(self), **{k: v for k, v in changes.items() if v is not None}}
        if "source" not in changes and any(v is not None for v in changes.values()):
            fields["source"] = (self.source + "; " if self.source else "") + "overridden: " + ", ".join(
                f"{k}={v}" for k, v in changes.items() if v is not None)
        return Preprocess(**fields)

    def as_dict(self) -> dict:
        return {"crop": list(self.crop), "resize": self.resize, "interpolation": self.interpolation,
                "mean": list(self.mean), "std": list(self.std), "source": self.source}

    # ---- the transform -----------------------------------------------------------------------------------
    def __call__(self, image) -> np.ndarray:
        """A PIL image (any mode) -> float32 (3, H, W), normalized."""
        Image = pil()
        img = image if image.mode == "RGB" else image.convert("RGB")
        w, h = img.size
        # torchvision's _compute_resized_output_size: the shorter side becomes `resize`, the longer side keeps
        # the aspect ratio, truncated to an int.
        if w <= h:
            size = (self.resize, int(self.resize * h / w))
        else:
            size = (int(self.resize * w / h), self.resize)
        if size != (w, h):
            img = img.resize(size, _pil_filter(Image, self.interpolation))
        w, h = img.size
        ch, cw = self.crop
        top = int(round((h - ch) / 2.0))  # Python's round, as torchvision's center_crop
        left = int(round((w - cw) / 2.0))
        img = img.crop((left, top, left + cw, top + ch))
        x = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))


def pil():
    """The PIL.Image module; a clear ImportError when pillow is missing."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("image evaluation needs pillow: pip install 'ghostfast[eval]' (or pip install pillow)") from e
    return Image


def _pil_filter(Image, name: str):
    return {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[name]


def load_image(path: Path, preprocess: Preprocess) -> np.ndarray:
    """Decode one file as RGB (torchvision's / timm's loader: ``Image.open(f).convert("RGB")``) and transform it.

    Any decoding failure becomes a ``ValueError`` that names the file.
    """
    Image = pil()
    try:
        with open(path, "rb") as f:
            with Image.open(f) as img:
                rgb = img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # UnidentifiedImageError: OSError
        raise ValueError(f"cannot read image {path}: {e}") from e
    return preprocess(rgb)
