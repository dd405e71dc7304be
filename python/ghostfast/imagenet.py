"""ImageNet validation sets on disk: which image has which label, in the layouts people have.

* **ImageFolder** (torchvision's ``ImageFolder``; what ``valprep.sh`` and most tools produce): one sub-folder per
  class, named by WordNet synset (``n01440764/ILSVRC2012_val_00000293.JPEG``). The class index is the folder's
  position in sorted order -- the order torchvision's and timm's ImageNet-1k classifiers were trained with. Files
  are found recursively, sorted, as torchvision does; folders starting with "." are ignored (torchvision would
  count them as classes).
* **A flat folder of images plus a ground-truth file**, either
  - Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first token of ``PredictionString`` is
    the synset), found automatically in the folder or its parent; or
  - a text file of ``<file name> <label>`` lines (Caffe's ``val.txt`` style), ``label`` a class index or a synset.
  Synsets become indices in sorted order, the synset list taken from ``LOC_synset_mapping.txt`` next to the
  ground-truth file when present, else from the ground truth itself.

The devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one number per line) is refused: its numbers are the
devkit's ILSVRC2012_IDs, not the class indices models use, and mapping them needs the devkit's ``meta.mat``.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

# torchvision's IMG_EXTENSIONS, compared case-insensitively.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GROUND_TRUTH_NAMES = ("LOC_val_solution.csv", "val.txt", "val_labels.txt", "labels.txt")
_SYNSET = re.compile(r"^n\d{8}$")


@dataclass
class ImageSet:
    """Image paths with their class indices; ``classes[i]`` names class ``i``."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    layout: str  # "imagefolder" or "flat + <ground-truth file>"
    root: Path
    # False when labels are bare class indices: the data then does not say how many classes there are.
    classes_complete: bool = True

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, limit: int | None) -> "ImageSet":
        """``limit`` images spread evenly over the whole set (every (n/limit)-th), so every class is touched."""
        n = len(self.paths)
        if limit is None or limit >= n:
            return self
        idx = [i * n // limit for i in range(limit)]
        return ImageSet([self.paths[i] for i in idx], [self.labels[i] for i in idx], self.classes, self.layout,
                        self.root, self.classes_complete)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def open_imageset(data, labels=None) -> ImageSet:
    """The images and labels under folder ``data`` (layout detected), or of the flat folder + ``labels`` file."""
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"data must be a folder path, got {type(data).__name__}")
    root = Path(data).expanduser()
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist or is not a folder")
    if labels is not None:
        return _flat(root, Path(labels).expanduser())
    subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if subdirs:
        return _image_folder(root, subdirs)
    images = [e.name for e in os.scandir(root) if e.is_file() and _is_image(e.name)]
    if not images:
        raise ValueError(f"{root} holds neither class folders nor images ({', '.join(IMG_EXTENSIONS)})")
    for folder in (root, root.parent):
        for name in GROUND_TRUTH_NAMES:
            if (folder / name).is_file():
                return _flat(root, folder / name)
    raise ValueError(f"{root} is a flat folder of {len(images)} images but no ground-truth file was found "
                     f"({' / '.join(GROUND_TRUTH_NAMES)} in it or its parent); pass labels=FILE (--labels)")


def _image_folder(root: Path, classes: list[str]) -> ImageSet:
    paths, labels, empty = [], [], []
    for index, cls in enumerate(classes):
        found = []
        for dirpath, _, filenames in sorted(os.walk(root / cls, followlinks=True)):
            if any(part.startswith(".") for part in Path(dirpath).relative_to(root / cls).parts):
                continue
            found += [Path(dirpath) / f for f in sorted(filenames) if _is_image(f)]
        if not found:
            empty.append(cls)
        paths += found
        labels += [index] * len(found)
    if empty:
        raise ValueError(f"{root}: {len(empty)} class folder(s) hold no images ({', '.join(empty[:5])}"
                         f"{', ...' if len(empty) > 5 else ''}); every class folder needs at least one")
    return ImageSet(paths, labels, classes, "imagefolder", root)


# ---- flat folder + ground truth -------------------------------------------------------------------------------------
def _read_ground_truth(gt: Path) -> list[tuple[str, str]]:
    """(image name, label token) pairs of a ground-truth file."""
    if not gt.is_file():
        raise ValueError(f"ground-truth file {gt} does not exist")
    text = gt.read_text(encoding="utf-8-sig", errors="replace")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if first.replace(" ", "").lower().startswith("imageid,predictionstring"):
        rows = list(csv.reader(text.splitlines()))[1:]
        pairs = []
        for n, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) < 2 or not row[1].split():
                raise ValueError(f"{gt}:{n}: expected 'ImageId,PredictionString', got {','.join(row)!r}")
            pairs.append((row[0].strip(), row[1].split()[0]))
        return pairs
    pairs = []
    for n, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) == 1 and tokens[0].isdigit():
            raise ValueError(f"{gt} lists one number per line: that is the devkit's "
                             "ILSVRC2012_validation_ground_truth.txt, whose numbers are ILSVRC2012_IDs, not class "
                             "indices. Use the ImageFolder layout (valprep.sh), LOC_val_solution.csv, or a "
                             "'<file> <class index or synset>' file")
        if len(tokens) != 2:
            raise ValueError(f"{gt}:{n}: expected '<file name> <label>', got {line.strip()!r}")
        pairs.append((tokens[0], tokens[1]))
    if not pairs:
        raise ValueError(f"ground-truth file {gt} has no entries")
    return pairs


def _synsets(gt: Path, tokens: list[str]) -> list[str]:
    mapping = gt.parent / "LOC_synset_mapping.txt"
    if mapping.is_file():
        return [ln.split()[0] for ln in mapping.read_text().splitlines() if ln.strip()]
    return sorted(set(tokens))


def _flat(root: Path, gt: Path) -> ImageSet:
    pairs = _read_ground_truth(gt)
    by_name: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for e in os.scandir(root):
        if e.is_file() and _is_image(e.name):
            by_name[e.name] = Path(e.path)
            by_stem.setdefault(Path(e.name).stem, []).append(Path(e.path))
    if not by_name:
        raise ValueError(f"{root} holds no images ({', '.join(IMG_EXTENSIONS)})")
    tokens = [t for _, t in pairs]
    if all(t.isdigit() for t in tokens):
        classes, index = None, None
    elif all(_SYNSET.match(t) for t in tokens):
        classes = _synsets(gt, tokens)
        index = {s: i for i, s in enumerate(classes)}
        unknown = sorted(set(tokens) - set(index))
        if unknown:
            raise ValueError(f"{gt}: synsets not in LOC_synset_mapping.txt: {', '.join(unknown[:5])}")
    else:
        bad = next((t for t in tokens if not (t.isdigit() or _SYNSET.match(t))), None)
        found = f"found {bad!r}" if bad else "found both"
        raise ValueError(f"{gt}: labels must all be class indices or all synsets (nXXXXXXXX); {found}")
    paths, labels, missing, seen = [], [], [], set()
    for name, token in pairs:
        base = os.path.basename(name)
        path = by_name.get(base)
        if path is None:
            stem_hits = by_stem.get(Path(base).stem if _is_image(base) else base, [])
            if len(stem_hits) > 1:
                raise ValueError(f"{root}: several files match ground-truth entry {name!r}: "
                                 + ", ".join(p.name for p in stem_hits))
            path = stem_hits[0] if stem_hits else None
        if path is None:
            missing.append(name)
            continue
        if path in seen:
            raise ValueError(f"{gt}: {name!r} is listed more than once")
        seen.add(path)
        paths.append(path)
        labels.append(int(token) if index is None else index[token])
    if missing:
        raise ValueError(f"{len(missing)} image(s) listed in {gt.name} are not in {root}: "
                         + ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else ""))
    unlabeled = sorted(set(by_name.values()) - seen)
    if unlabeled:
        raise ValueError(f"{len(unlabeled)} image(s) in {root} have no entry in {gt.name}: "
                         + ", ".join(p.name for p in unlabeled[:5]) + (", ..." if len(unlabeled) > 5 else ""))
    complete = classes is not None
    if classes is None:
        classes = [str(i) for i in range(max(labels) + 1)]
    order = sorted(range(len(paths)), key=lambda i: paths[i].name)  # file-name order, like the val set itself
    return ImageSet([paths[i] for i in order], [labels[i] for i in order], classes, f"flat + {gt.name}", root,
                    complete)
