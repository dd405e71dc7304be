"""ImageNet accuracy of a model on any backend: ``ghostfast.evaluate``, and the cache of measured results.

>>> r = ghostfast.evaluate("mobilenet_v2", "/data/imagenet/val", weights="mobilenet_v2-b0353104.pth")
>>> r.top1, r.top5                                   # 71.878, 90.286 with torchvision's IMAGENET1K_V1 weights

The preprocessing is the one the checkpoint's publisher evaluated with, chosen from the detected checkpoint format
(:mod:`ghostfast.checkpoint_formats`). ``ghostfast eval`` stores each result in a JSON file
(``~/.cache/ghostfast/accuracy.json``; ``$GHOSTFAST_ACCURACY_CACHE`` or ``--results`` choose another) and
:func:`measured_top1` reads it back for the comparison table. Only a run over the full validation set (all
50,000 images, all 1,000 classes) with loaded weights stands in for a published figure; any other run is stored
and labeled as partial.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .imagenet import ImageSet, open_imageset
from .preprocess import Preprocess, load_image

BACKENDS = ("torch", "native", "onnxruntime")
_PREFETCH_BATCHES = 2
# The ImageNet-1k validation set: a run over anything less is partial and never replaces a published top-1.
VAL_IMAGES = 50_000
VAL_CLASSES = 1_000


def partial_reasons(record: dict) -> list[str]:
    """Why a result (``EvalResult.as_dict()`` or a cache record) is not a full validation-set run with loaded
    weights; [] for a full one. Counted from the record itself, not from a stored flag."""
    reasons = []
    images, classes = record.get("images"), record.get("classes")
    if images != VAL_IMAGES:
        reasons.append(f"{images} of {VAL_IMAGES:,} images")
    if classes != VAL_CLASSES:
        reasons.append(f"{classes} of {VAL_CLASSES:,} classes" if classes is not None else "class count unknown")
    if not record.get("weights_format"):
        reasons.append("no pretrained weights loaded")
    return reasons


def set_label(record: dict) -> str:
    """"full validation set", or "partial: ..." with the reasons."""
    reasons = partial_reasons(record)
    return "full validation set" if not reasons else "partial: " + "; ".join(reasons)


@dataclass
class EvalResult:
    """Top-1 / top-5 (percent) and the counts behind them, with everything needed to reproduce the run."""

    model: str
    backend: str
    weights: str | None
    weights_format: str | None
    weights_sha256: str | None
    data: str
    layout: str
    images: int
    correct1: int
    correct5: int
    limit: int | None
    batch: int
    preprocess: dict
    seconds: float
    published_top1: float | None = None  # what the checkpoint's publisher reports, when known
    date: str = ""
    classes: int | None = None  # distinct classes among the scored images (1,000 in a full ImageNet-1k run)

    @property
    def top1(self) -> float:
        return 100.0 * self.correct1 / self.images

    @property
    def top5(self) -> float:
        return 100.0 * self.correct5 / self.images

    @property
    def full_set(self) -> bool:
        """All 50,000 images and 1,000 classes, with loaded weights: the only kind of run that stands in for the
        published top-1 (see :func:`partial_reasons`)."""
        return not partial_reasons(asdict(self))

    def set_label(self) -> str:
        return set_label(asdict(self))

    def as_dict(self) -> dict:
        """The stored record: the fields, top-1 / top-5, and ``full_set`` / ``set`` (the partial label)."""
        return {**asdict(self), "top1": self.top1, "top5": self.top5, "full_set": self.full_set,
                "set": self.set_label()}

    def row(self) -> dict:
        """One line of the results table."""
        return {"model": self.model, "weights": self.weights_format or "-", "backend": self.backend,
                "images": self.images, "set": "full" if self.full_set else "PARTIAL",
                "top-1": f"{self.top1:.3f}", "top-5": f"{self.top5:.3f}",
                "published top-1": "-" if self.published_top1 is None else f"{self.published_top1:.3f}",
                "img/s": f"{self.images / self.seconds:.1f}" if self.seconds > 0 else "-"}

    def __str__(self) -> str:
        return (f"{self.model} ({self.weights_format or 'no weights loaded'}) on {self.backend}: top-1 "
                f"{self.top1:.3f}%, top-5 {self.top5:.3f}% over {self.images} images ({self.set_label()})")


# ---- arguments ------------------------------------------------------------------------------------------------------
def _opt_int(value, what: str, low: int):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{what} must be an int >= {low}, got {value!r}")
    return value


def _resolve_model(model, weights, format):  # noqa: A002
    import torch.nn as nn

    from .checkpoint_formats import get_format
    from .checkpoints import detect_format, load_weights, read_state_dict
    from .models import registry

    if model is None:
        if weights is None:
            raise ValueError("give a model (name or module), weights, or both")
        if format is None:
            # Find the model from the weights themselves (the file name helps tell the TF Lite ports apart).
            hint = str(weights) if isinstance(weights, (str, os.PathLike)) else None
            weights = read_state_dict(weights)
            format = detect_format(weights, None, hint).name
        return load_weights(get_format(format).model, weights, format=format)
    if isinstance(model, str):
        model = registry.create(model)
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a zoo model name or a torch.nn.Module, got {type(model).__name__}")
    if weights is not None:
        load_weights(model, weights, format=format)
    return model.eval()


def _preprocess_for(model, override) -> Preprocess:
    from .checkpoint_formats import default_format, get_format

    if isinstance(override, Preprocess):
        return override
    if override is not None and not isinstance(override, dict):
        raise TypeError(f"preprocess must be a Preprocess, a dict of overrides or None, got {type(override).__name__}")
    fmt_name = getattr(model, "weights_format", None)
    zoo = getattr(model, "zoo_name", None)
    if fmt_name and fmt_name != "custom" and not fmt_name.startswith("ghostfast:"):
        base = get_format(fmt_name).preprocess
    elif zoo is not None:
        fmt = default_format(zoo)
        base = fmt.preprocess if fmt is not None else Preprocess.torchvision(
            source="no published checkpoint format for this model: torchvision's resize 256 / crop 224 default")
    else:
        if not override or "crop" not in override or "resize" not in override:
            raise ValueError("a model outside the zoo needs preprocess=Preprocess(...) (or a dict with at least "
                             "crop and resize)")
        return Preprocess(**override)
    return base.replace(**override) if override else base


# ---- backends -------------------------------------------------------------------------------------------------------
def _runner(backend: str, model, preprocess: Preprocess, batch: int, threads: int | None):
    """A function: float32 NCHW batch (numpy, N <= batch) -> logits (numpy)."""
    import torch

    if backend == "torch":
        def run_torch(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).float().numpy()
        return run_torch
    if backend == "native":
        from .checkpoint_formats import TFSamePadConv2d
        from .engine import compile as compile_engine

        if any(isinstance(m, TFSamePadConv2d) for m in model.modules()):
            raise ValueError("the tf_efficientnet_lite weights need TensorFlow 'SAME' padding (asymmetric on stride-2 "
                             "convolutions), which the native engine does not implement; use backend torch or "
                             "onnxruntime")
        engine = compile_engine(model, input_size=preprocess.crop, batch=batch, threads=threads or 1)
        return engine.run
    if backend == "onnxruntime":
        return _onnxruntime_runner(model, preprocess, batch, threads)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _onnxruntime_runner(model, preprocess: Preprocess, batch: int, threads: int | None):
    # The onnxruntime backend's own export and session settings, so eval runs the graph that compare() times.
    import torch

    from .backends.base import BackendUnavailable
    from .backends.onnxruntime import export_onnx, import_onnxruntime, session_options

    try:
        ort = import_onnxruntime()
    except BackendUnavailable as e:
        raise ValueError(str(e)) from None
    graph = export_onnx(model, torch.zeros(batch, 3, *preprocess.crop))
    session = ort.InferenceSession(graph, session_options(ort, threads), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run_onnx(x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if n < batch:  # the graph has a fixed batch: pad the last, short batch and drop the padding's logits
            x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), dtype=x.dtype)])
        return session.run(None, {name: x})[0][:n]
    return run_onnx


# ---- the loop -------------------------------------------------------------------------------------------------------
def _batches(images: ImageSet, preprocess: Preprocess, batch: int, workers: int):
    """(x, labels) per batch; ``workers`` threads decode up to two batches ahead (PIL releases the GIL)."""
    starts = list(range(0, len(images), batch))

    def chunk(s):
        return images.paths[s:s + batch], np.asarray(images.labels[s:s + batch])

    if workers == 0:
        for s in starts:
            paths, labels = chunk(s)
            yield np.stack([load_image(p, preprocess) for p in paths]), labels
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ghostfast-decode")
    try:
        pending: deque = deque()
        todo = iter(starts)

        def submit() -> None:
            s = next(todo, None)
            if s is not None:
                paths, labels = chunk(s)
                pending.append(([pool.submit(load_image, p, preprocess) for p in paths], labels))

        for _ in range(_PREFETCH_BATCHES):
            submit()
        while pending:
            futures, labels = pending.popleft()
            submit()
            yield np.stack([f.result() for f in futures]), labels
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_classes(images: ImageSet, num_logits: int, model_name: str) -> None:
    if images.classes_complete and len(images.classes) != num_logits:
        hint = ""
        names = {c.lower() for c in images.classes}
        if names & {"train", "val", "validation"}:
            hint = f" (the folder holds {', '.join(images.classes)}: point --data at the validation folder itself)"
        raise ValueError(f"{images.root} ({images.layout}) has {len(images.classes)} classes but {model_name} "
                         f"predicts {num_logits}: class indices would not line up{hint}")
    if max(images.labels) >= num_logits:
        raise ValueError(f"{images.root}: label {max(images.labels)} is out of range for {model_name}'s "
                         f"{num_logits} classes")


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def evaluate(model=None, data=None, weights=None, backend: str = "torch", limit: int | None = None,
             batch: int = 50, workers: int | None = None, threads: int | None = None, labels=None,
             preprocess=None, format: str | None = None, progress: bool = False) -> EvalResult:  # noqa: A002
    """Top-1 / top-5 of ``model`` on the ImageNet-style validation set in folder ``data``.

    ``model``: a zoo name or an ``nn.Module`` (``None``: the model the ``weights`` are for). ``weights``: a
    checkpoint path or state dict, loaded with :func:`ghostfast.load_weights` (``format`` forces its format).
    ``backend``: "torch", "native" (the ghostfast engine) or "onnxruntime". ``limit``: evaluate this many images,
    spread evenly over the set. ``batch``: images per inference. ``workers``: image-decoding threads (0: decode on
    the calling thread; default ``min(8, cpu count)``). ``threads``: the backend's intra-op threads (torch: for
    this run only). ``labels``: the ground-truth file of a flat folder. ``preprocess``: a :class:`Preprocess`, or a
    dict of overrides (``resize``, ``crop``, ``interpolation``, ``mean``, ``std``) of the checkpoint's own.
    """
    import torch

    if data is None:
        raise ValueError("data (the validation folder) is required")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    limit = _opt_int(limit, "limit", 1)
    batch = _opt_int(batch, "batch", 1)
    workers = _opt_int(workers, "workers", 0)
    threads = _opt_int(threads, "threads", 1)
    workers = min(8, os.cpu_count() or 1) if workers is None else workers

    from .preprocess import pil

    pil()  # fail before any work when pillow is missing
    images = open_imageset(data, labels).subset(limit)
    net = _resolve_model(model, weights, format)
    name = getattr(net, "zoo_name", type(net).__name__)
    if weights is None and hasattr(net, "zoo_name") and not getattr(net, "weights_format", None):
        warnings.warn(f"evaluating {name} with random weights (no weights given or loaded): its top-1 measures the "
                      f"pipeline, not the model, and is stored as partial", UserWarning, stacklevel=2)
    pre = _preprocess_for(net, preprocess)

    saved_threads = torch.get_num_threads()
    if threads is not None and backend == "torch":
        torch.set_num_threads(threads)
    try:
        run = _runner(backend, net, pre, batch, threads)
        num_logits = run(np.zeros((1, 3, *pre.crop), dtype=np.float32)).shape[1]
        _check_classes(images, num_logits, name)
        start = time.perf_counter()
        correct1, correct5 = _score(run, images, pre, batch, workers, num_logits,
                                    desc=f"eval {name} [{backend}]", progress=progress)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(saved_threads)

    fmt_name = getattr(net, "weights_format", None)
    is_path = isinstance(weights, (str, os.PathLike))
    return EvalResult(
        model=name, backend=backend,
        weights=str(weights) if is_path else ("state dict" if weights is not None else None),
        weights_format=fmt_name, weights_sha256=_sha256(weights) if is_path else None,
        data=str(images.root.resolve()), layout=images.layout, images=len(images), correct1=correct1,
        correct5=correct5, limit=limit, batch=batch, preprocess=pre.as_dict(), seconds=seconds,
        published_top1=_published(fmt_name), date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        classes=len(set(images.labels)))


def _score(run, images: ImageSet, pre: Preprocess, batch: int, workers: int, num_logits: int, desc: str,
           progress: bool) -> tuple[int, int]:
    """(top-1 hits, top-5 hits) of ``run`` over ``images``, with a progress bar."""
    from tqdm.auto import tqdm

    correct1 = correct5 = seen = 0
    k5 = min(5, num_logits)
    with tqdm(total=len(images), unit="img", desc=desc, disable=not progress) as bar:
        for x, y in _batches(images, pre, batch, workers):
            logits = np.asarray(run(x))
            if logits.shape != (len(y), num_logits):
                raise ValueError(f"the backend returned logits of shape {logits.shape} for a batch of {len(y)}")
            if not np.isfinite(logits).all():
                raise ValueError(f"the backend returned non-finite logits for images {seen}..{seen + len(y) - 1} "
                                 f"({images.paths[seen]} ...)")
            # Rank of the true class = how many logits beat it (ties count in its favour).
            rank = (logits > logits[np.arange(len(y)), y][:, None]).sum(axis=1)
            correct1 += int((rank < 1).sum())
            correct5 += int((rank < k5).sum())
            seen += len(y)
            bar.update(len(y))
            bar.set_postfix_str(f"top-1 {100.0 * correct1 / seen:.2f}%")
    return correct1, correct5


def _published(fmt_name: str | None) -> float | None:
    from .checkpoint_formats import get_format

    if not fmt_name or fmt_name == "custom" or fmt_name.startswith("ghostfast:"):
        return None
    return get_format(fmt_name).published_top1


# ---- the results cache ----------------------------------------------------------------------------------------------
def default_results_path() -> Path:
    """``$GHOSTFAST_ACCURACY_CACHE``, else ``$XDG_CACHE_HOME/ghostfast/accuracy.json`` (``~/.cache`` by default)."""
    env = os.environ.get("GHOSTFAST_ACCURACY_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ghostfast" / "accuracy.json"


def load_results(path=None) -> list[dict]:
    """Every stored result (``EvalResult.as_dict()`` records); [] when the file does not exist."""
    p = Path(path).expanduser() if path is not None else default_results_path()
    if not p.exists():
        return []
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"accuracy results file {p} is not readable JSON ({e}); move it away to start afresh") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise ValueError(f"accuracy results file {p} is not a ghostfast results file (no 'results' list)")
    return doc["results"]


_IDENTITY = ("model", "backend", "weights_sha256", "weights_format", "data", "limit", "preprocess")


def save_result(result: EvalResult, path=None) -> Path:
    """Add ``result`` to the results file (replacing an earlier run of the same model, weights, backend, data,
    limit and preprocessing); returns the file's path. The file is replaced atomically."""
    p = Path(path).expanduser() if path is not None else default_results_path()
    record = result.as_dict()
    kept = [r for r in load_results(p) if any(r.get(k) != record.get(k) for k in _IDENTITY)]
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".accuracy-", suffix=".json", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "results": kept + [record]}, f, indent=2)
        os.replace(tmp, p)
    except BaseException:
        os.unlink(tmp)
        raise
    return p


def measured_top1(model: str, path=None, partial: bool = False) -> dict | None:
    """The measured ImageNet accuracy of zoo model ``model`` from the results file, or None if never measured.

    Only full validation-set runs count (all 50,000 images, all 1,000 classes, loaded weights; see
    :func:`partial_reasons`): a figure from them may stand in for the published one. ``partial=True`` also
    considers other runs, labeled as partial. Picks a full run over a partial one, then the run with more images,
    then the latest. Returns ``{"top1", "top5", "images", "classes", "backend", "weights", "weights_format",
    "data", "limit", "date", "full_set", "source"}``; ``source`` is a label such as "measured: ghostfast eval,
    50000 images, timm:ghostnet_100 weights, torch" (a partial run's starts with "partial").
    """
    from .models import registry

    name = registry.resolve(model)
    runs = [r for r in load_results(path) if r.get("model") == name and r.get("images")]
    if not partial:
        runs = [r for r in runs if not partial_reasons(r)]
    if not runs:
        return None
    best = max(runs, key=lambda r: (not partial_reasons(r), r["images"], r.get("date", "")))
    top1 = 100.0 * best["correct1"] / best["images"]
    top5 = 100.0 * best["correct5"] / best["images"]
    full = not partial_reasons(best)
    what = (f"ghostfast eval, {best['images']} images, {best.get('weights_format') or 'unloaded'} weights, "
            f"{best.get('backend')}")
    return {
        "top1": top1, "top5": top5, "images": best["images"], "classes": best.get("classes"),
        "backend": best.get("backend"), "weights": best.get("weights"), "weights_format": best.get("weights_format"),
        "data": best.get("data"), "limit": best.get("limit"), "date": best.get("date"), "full_set": full,
        "source": f"measured: {what}" if full else f"{set_label(best)} (not a stand-in for the published top-1): "
                                                   f"{what}",
    }
