"""``ghostfast export``: engine files for a device, each with a reference input and torch's output on it.

Per zoo model, ``out_dir`` gets

- ``NAME.gfe``: :meth:`ghostfast.Engine.save` of ``ghostfast.compile(model)`` (batch 1). The file format is the
  same on every machine, so a file written here runs on an ARM64 phone through ``ghostfast-bench``;
- ``NAME.input.npy``: the seeded input (float32, C order, batch 1) that :func:`ghostfast.compare` uses;
- ``NAME.torch.npy``: torch eager's logits on that input, what the device's output is checked against;

and ``manifest.json`` lists them with the input shape, classes, params, MACs, torch version, seed, and where
the weights came from. Without weights a model is the zoo's own initialisation with BatchNorm statistics
randomized exactly as :func:`ghostfast.compare` does it (:func:`ghostfast.comparison.reference_model`), so the
logits are O(1) and a relative check means something; with a checkpoint the weights are loaded as
``ghostfast eval`` loads them and BN is left alone.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def file_names(stem: str) -> dict[str, str]:
    """The three files of one exported model, by role."""
    return {"engine": f"{stem}.gfe", "input": f"{stem}.input.npy", "torch_output": f"{stem}.torch.npy"}


def export_model(name: str, model, x, out_dir, stem: str | None = None, tolerance: float | None = None) -> dict:
    """Write ``stem``.gfe / .input.npy / .torch.npy for ``model`` (eval mode) and input ``x`` into ``out_dir``.

    The engine is compiled for ``x``'s batch size. It is also run here once and checked against torch with the
    rule every backend gets (:func:`ghostfast.comparison.checked_fields`), so a file that is wrong before it
    leaves this machine says so in the manifest. Returns the model's manifest entry.
    """
    import torch

    from .comparison import _size_fields, checked_fields, torch_reference
    from .engine import compile as compile_engine
    from .parity import DEFAULT_TOLERANCE

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or name
    files = file_names(stem)
    x = torch.as_tensor(x, dtype=torch.float32).contiguous()
    reference = torch_reference(model, x)
    engine = compile_engine(model, input_size=tuple(x.shape[1:]), batch=int(x.shape[0]))
    engine.save(out / files["engine"])
    np.save(out / files["input"], np.ascontiguousarray(x.numpy(), dtype=np.float32))
    np.save(out / files["torch_output"], np.ascontiguousarray(reference, dtype=np.float32))
    check = checked_fields(engine.run(x.numpy()), reference, tolerance or DEFAULT_TOLERANCE)
    return {"model": name, "files": files, "input_shape": list(x.shape), "classes": engine.classes,
            **{k: v for k, v in _size_fields(name).items() if k in ("params", "macs")},
            "max_abs_torch": float(np.abs(reference).max()),
            "host_check": {"isa": engine.isa, "max_rel_err": check["check_max_rel_err"], "ok": check["check_ok"]}}


def _models_and_weights(models, weights, weights_format):
    """[(name, model)] with weights loaded (the ``eval`` way) or [(name, None)] for randomized-BN instances."""
    from .accuracy import _resolve_model
    from .comparison import _names

    if weights is None:
        if weights_format is not None:
            raise ValueError("--weights-format needs --weights")
        return [(n, None) for n in _names(models)]
    names = _names(models) if models else [None]
    if len(names) != 1:
        raise ValueError(f"a weights file is for one model, got {len(names)} models ({', '.join(names)}): "
                         "give --models NAME, or no --models to detect the model from the weights")
    if not Path(weights).is_file():
        raise ValueError(f"weights file not found: {weights}")
    model = _resolve_model(names[0], weights, weights_format)  # detects the model when no name was given
    return [(model.zoo_name, model)]


def export(models=None, out_dir=".", weights=None, weights_format: str | None = None, seed: int = 0,
           progress: bool = False) -> dict:
    """Export ``models`` (zoo names or aliases; default: the whole zoo) into ``out_dir``; returns the manifest.

    ``weights``: a checkpoint for one model (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors``), loaded like
    ``ghostfast eval --weights`` (``weights_format`` forces its format); the model is detected from the file
    when ``models`` is None. Without weights, BN statistics are randomized with ``seed``. ``seed`` also draws
    the input, the same input :func:`ghostfast.compare` uses with that seed.
    """
    import torch
    from tqdm.auto import tqdm

    from . import __version__
    from .accuracy import _sha256
    from .comparison import reference_input, reference_model

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    chosen = _models_and_weights(models, weights, weights_format)
    entries = []
    for name, model in tqdm(chosen, desc="export", unit="model", disable=not progress):
        randomized = model is None
        model = reference_model(name, seed) if randomized else model
        entry = export_model(name, model, reference_input(name, 1, seed), out_dir)
        entry["bn_randomized"] = randomized
        entry["weights"] = None if randomized else {"file": str(weights), "sha256": _sha256(weights),
                                                    "format": getattr(model, "weights_format", None)}
        entries.append(entry)
    manifest = {"version": MANIFEST_VERSION, "ghostfast": __version__, "torch": torch.__version__, "seed": seed,
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "models": entries}
    (Path(out_dir) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
