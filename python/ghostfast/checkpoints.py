"""Load the pretrained checkpoints users have into zoo models: ``ghostfast.load_weights(model, source)``.

Safety: files are read with ``torch.load(path, weights_only=True)`` (``.pth`` / ``.pt`` / ``.bin`` / ``.tar``, new
zip and legacy formats) or with ``safetensors`` (``.safetensors``); the file type is sniffed from its first bytes,
not its name. Neither runs code from the file: a checkpoint that holds pickled Python objects other than tensors
and containers (a whole ``nn.Module``, an ``argparse.Namespace`` of training arguments, ...) is refused, and the
error says how to extract its ``state_dict`` in an environment you trust.

Accepted containers: a plain ``state_dict``; ``{"state_dict": ...}``, ``{"model": ...}`` or
``{"model_state_dict": ...}`` wrappers (training checkpoints); keys prefixed with ``module.`` (DataParallel / DDP)
or ``_orig_mod.`` (``torch.compile``). thop's ``total_ops`` / ``total_params`` counters are dropped (timm drops them
too); ``num_batches_tracked`` may be absent (pre-0.4.1 checkpoints).

The format (which library and architecture wrote the weights) is detected from the key names and shapes; see
:mod:`ghostfast.checkpoint_formats` for the formats, how each maps onto its zoo model, and the preprocessing its
publisher evaluated with.
"""
from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from .checkpoint_formats import (FORMATS, UNSUPPORTED_LAYOUTS, CheckpointFormat, get_format, layout, layout_files,
                                 TFSamePadConv2d, timm_to_torchvision, use_tf_same_padding)

__all__ = ["CheckpointError", "CheckpointMismatch", "load_weights", "read_state_dict", "detect_format",
           "CheckpointFormat", "FORMATS"]

_WRAPPERS = ("state_dict", "model", "model_state_dict")
_PREFIXES = ("module.", "_orig_mod.")
_THOP = ("total_ops", "total_params")
_OPTIONAL = "num_batches_tracked"  # BN's step counter: no effect in eval mode, absent from old checkpoints


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or loaded: not a checkpoint, truncated or corrupted, refused (pickled
    objects), not a state dict, or of no known format. A ``ValueError``, as before it had its own type."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint does not fit the model; ``missing``, ``unexpected`` and ``mis_shaped`` list the keys."""

    def __init__(self, message: str, missing=(), unexpected=(), mis_shaped=()) -> None:
        super().__init__(message)
        self.missing, self.unexpected, self.mis_shaped = list(missing), list(unexpected), list(mis_shaped)


# ---- reading --------------------------------------------------------------------------------------------------------
def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "torch"  # torch.save's zip container
    if head[:1] == b"\x80":
        return "torch"  # legacy torch.save: a pickle stream (weights_only still applies)
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100 * 2**20:
        return "safetensors"  # 8-byte header length, then the JSON header
    raise CheckpointError(f"{path} is neither a PyTorch checkpoint nor a safetensors file (starts with {head[:8]!r})")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _load_file(path: Path) -> object:
    if _sniff(path) == "safetensors":
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError as e:
            raise ValueError(f"{path} is a safetensors file: install the 'safetensors' package to read it") from e
        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as e:
            raise CheckpointError(f"{path} is a truncated or corrupted safetensors file ({_first_line(e)})") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it contains pickled Python objects, not only tensors ({_first_line(e)}). "
            "ghostfast never unpickles arbitrary objects. If you trust the file, extract its weights once with "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pth') "
            "(or the whole object's .state_dict()) and load that.") from None
    except Exception as e:  # noqa: BLE001
        # What torch raises on bytes that are not a whole checkpoint has no one type: RuntimeError from its zip
        # reader (a zip that is not a checkpoint, or one cut short), EOFError, IndexError, struct.error, ... from its
        # pickle-stream reader on a truncated legacy file.
        raise CheckpointError(f"{path} is a truncated or corrupted PyTorch checkpoint "
                              f"({type(e).__name__}: {_first_line(e)})") from e


def read_state_dict(source) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (or an in-memory mapping), unwrapped and with wrapper prefixes stripped."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise CheckpointError(f"no checkpoint file at {path}")
        obj, where = _load_file(path), str(path)
    elif isinstance(source, Mapping):
        obj, where = source, "the state dict"
    else:
        raise TypeError(f"source must be a path or a state dict, got {type(source).__name__}")
    obj = _unwrap(obj, where)
    sd = {k: v for k, v in obj.items() if k.rpartition(".")[2] not in _THOP}
    return _strip_prefixes(sd)


def _unwrap(obj, where: str) -> Mapping:
    for _ in range(3):  # {"model": {"state_dict": ...}} exists in the wild; deeper nesting does not
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{where} holds a {type(obj).__name__}, not a state dict")
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            if not all(isinstance(k, str) for k in obj):
                raise CheckpointError(f"{where}: state dict keys must be strings")
            return obj
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            summary = ", ".join(f"{k!r}: {type(v).__name__}" for k, v in list(obj.items())[:8])
            raise CheckpointError(f"{where} is not a state dict (values must all be tensors) and has none of the "
                             f"wrapper keys {list(_WRAPPERS)}; it holds {{{summary}}}")
        obj = inner
    raise CheckpointError(f"{where}: state dict nested too deeply")


def _strip_prefixes(sd: dict) -> dict:
    changed = True
    while changed and sd:
        changed = False
        for p in _PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


# ---- detection ------------------------------------------------------------------------------------------------------
def _signature(shapes: Mapping) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in shapes.items() if not k.endswith(_OPTIONAL)}


def _sd_signature(sd: Mapping) -> dict[str, tuple[int, ...]]:
    return _signature({k: tuple(v.shape) for k, v in sd.items()})


def _diff(got: dict, want: dict) -> tuple[list[str], list[str], list[str]]:
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    mis_shaped = [f"{k}: checkpoint {list(got[k])}, expected {list(want[k])}"
                  for k in want if k in got and tuple(got[k]) != tuple(want[k])]
    return missing, unexpected, mis_shaped


def _first_few(items: list[str], limit: int = 8) -> str:
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _listing(missing, unexpected, mis_shaped) -> str:
    parts = [f"{len(items)} {label}: " + _first_few(items)
             for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped))
             if items]
    return "; ".join(parts)


def detect_format(state_dict: Mapping, model: str | None = None, path_hint: str | None = None) -> CheckpointFormat:
    """The format of ``state_dict`` (as returned by :func:`read_state_dict`), for zoo model ``model`` if given.

    Detection compares key names and shapes with every known layout. Two layouts have identical keys but
    different computations: timm's ``efficientnet_lite*`` and its TensorFlow ports ``tf_efficientnet_lite*``.
    For those the file name decides when it says (timm's downloads are named ``tf_efficientnet_lite0...`` or live
    in a ``timm/tf_efficientnet_lite0...`` hub folder); otherwise Lite0 is taken as timm's own
    ``efficientnet_lite0`` (the zoo's canonical) and Lite1/Lite2 as the TF ports (timm publishes no other Lite1/2
    weights), with a warning. Pass ``format=`` to :func:`load_weights` to choose explicitly.
    """
    sig = _sd_signature(state_dict)
    candidates = [f for f in FORMATS if model is None or f.model == model]
    matches = [f for f in candidates if _signature(layout(f.keys_file)) == sig]
    if not matches:
        raise _no_match(sig, model, candidates)
    if len(matches) == 1:
        return matches[0]
    return _disambiguate(matches, path_hint)


def _disambiguate(matches: list[CheckpointFormat], path_hint: str | None) -> CheckpointFormat:
    path = (path_hint or "").lower()
    if path:
        # The most specific name wins: "tf_efficientnet_lite0" contains "efficientnet_lite0".
        named = [f for f in matches if f.name.split(":")[1] in path]
        if named:
            return max(named, key=lambda f: len(f.name))
    tf = [f for f in matches if f.tf_same_padding]
    plain = [f for f in matches if not f.tf_same_padding]
    if len(tf) == 1 and len(plain) == 1:
        pick = plain[0] if plain[0].name.endswith("lite0") else tf[0]
        other = tf[0] if pick is plain[0] else plain[0]
        warnings.warn(f"the weights fit both {pick.name} and {other.name} (identical keys, different padding and "
                      f"preprocessing); assuming {pick.name}. Pass format='{other.name}' if they are the other.",
                      stacklevel=3)
        return pick
    raise CheckpointError(f"the weights fit several formats ({', '.join(f.name for f in matches)}); pass format=")


def _no_match(sig: dict, model: str | None, candidates: list[CheckpointFormat]) -> Exception:
    # The weights may be a known layout of another zoo model, or a known layout the zoo cannot run.
    for f in FORMATS:
        if _signature(layout(f.keys_file)) == sig:
            return CheckpointError(f"the weights are {f.name}, which loads into zoo model {f.model!r}, "
                                   f"not {model!r}")
    for fname, what in UNSUPPORTED_LAYOUTS.items():
        if fname in layout_files() and _signature(layout(fname)) == sig:
            return CheckpointError(f"the weights are {what}; ghostfast cannot load them")
    if not candidates:
        return CheckpointError(f"zoo model {model!r} has no published checkpoint format; only a state dict in its "
                               "own layout (model.state_dict() keys) loads into it")
    best = max(candidates, key=lambda f: len(set(layout(f.keys_file)) & set(sig)))
    missing, unexpected, mis_shaped = _diff(sig, _signature(layout(best.keys_file)))
    target = f" for {model!r}" if model else ""
    return CheckpointMismatch(f"the weights match no known checkpoint format{target}; closest is {best.name}: "
                              + _listing(missing, unexpected, mis_shaped), missing, unexpected, mis_shaped)


# ---- loading --------------------------------------------------------------------------------------------------------
def _converted(sd: dict, fmt: CheckpointFormat) -> dict:
    if not fmt.remap:
        return dict(sd)
    out, unmapped = timm_to_torchvision(sd, fmt.model)
    if unmapped:
        raise CheckpointMismatch(f"{fmt.name}: no mapping for {len(unmapped)} key(s): {', '.join(unmapped[:8])}",
                                 unexpected=unmapped)
    return out


def _check_and_fill(sd: dict, model: nn.Module, what: str) -> dict:
    own = model.state_dict()
    missing, unexpected, mis_shaped = _diff(_sd_signature(sd), _sd_signature(own))
    unexpected += [k for k in sd if k.endswith(_OPTIONAL) and k not in own]
    if missing or unexpected or mis_shaped:
        raise CheckpointMismatch(f"{what} does not fit {getattr(model, 'zoo_name', type(model).__name__)}: "
                                 + _listing(missing, unexpected, mis_shaped), missing, unexpected, mis_shaped)
    _warn_about_values(sd, own, what)
    return {**{k: v for k, v in own.items() if k.endswith(_OPTIONAL)}, **sd}


def _warn_about_values(sd: dict, own: dict, what: str) -> None:
    """Warn of what ``load_state_dict`` would do silently: cast tensors of another dtype (float64, float16, ...)
    to the model's, and load NaN / inf values (looked for after the cast: 1e39 in float64 is inf in float32)."""
    cast: dict[tuple[torch.dtype, torch.dtype], list[str]] = {}
    non_finite = []
    for k, v in sd.items():
        target = own[k].dtype
        if v.dtype != target:
            cast.setdefault((v.dtype, target), []).append(k)
        if target.is_floating_point and not bool(torch.isfinite(v.to(target)).all()):
            non_finite.append(k)
    for (have, want), keys in cast.items():
        n = len(keys)
        warnings.warn(f"{what}: {n} tensor{'s' if n > 1 else ''} in {str(have).replace('torch.', '')} "
                      f"{'were' if n > 1 else 'was'} cast to {str(want).replace('torch.', '')}: {_first_few(keys)}",
                      stacklevel=4)
    if non_finite:
        warnings.warn(f"{what}: the checkpoint has NaN/inf values in {len(non_finite)} tensor"
                      f"{'s' if len(non_finite) > 1 else ''}: {_first_few(non_finite)}", stacklevel=4)


def load_weights(model_or_name, source, format: str | None = None) -> nn.Module:  # noqa: A002
    """Load a checkpoint into a zoo model (created from its name, or the module given, changed in place).

    ``source``: a ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` path or a state dict. Files are read without
    unpickling arbitrary objects (``torch.load(..., weights_only=True)`` or safetensors).
    ``format``: "timm:ghostnet_100", "torchvision:mobilenet_v2", ... (see ``ghostfast.checkpoint_formats.FORMATS``);
    detected from the keys when None. A module that is not a zoo model loads a state dict of its own layout.

    Returns the model in eval mode with ``model.weights_format`` set to the format's name (``"ghostfast:<model>"``
    for a state dict in the zoo model's own layout that no published format has, ``"custom"`` for a non-zoo
    module); evaluation picks the format's preprocessing from it. Missing, unexpected and mis-shaped keys
    raise :class:`CheckpointMismatch` listing them; a file that is not a readable checkpoint (truncated, corrupted,
    refused) raises its base, :class:`CheckpointError`. Tensors of another dtype than the model's (float64,
    float16, ...) are cast with a warning naming them, and NaN / inf values load with a warning naming them.
    """
    from .models import registry

    if isinstance(model_or_name, str):
        model = registry.create(model_or_name)
    elif isinstance(model_or_name, nn.Module):
        model = model_or_name
    else:
        raise TypeError(f"expected a model name or torch.nn.Module, got {type(model_or_name).__name__}")
    sd = read_state_dict(source)
    where = str(source) if isinstance(source, (str, os.PathLike)) else "the state dict"
    zoo = getattr(model, "zoo_name", None)
    if zoo is None:
        if format is not None:
            raise ValueError("format= applies to zoo models only; this module loads a state dict of its own layout")
        model.load_state_dict(_check_and_fill(sd, model, where), strict=True)
        model.weights_format = "custom"
        return model.eval()
    fmt = _choose_format(sd, model, format, where)
    if any(isinstance(m, TFSamePadConv2d) for m in model.modules()) and not (fmt and fmt.tf_same_padding):
        raise ValueError("this model was converted to TF 'SAME' padding by a tf_ checkpoint; load "
                         f"{fmt.name if fmt else 'these'} weights into a fresh model")
    if fmt is None:
        # The zoo model's own layout with no published format behind it (ShuffleNetV1, or weights a user trained).
        published = any(f.model == zoo for f in FORMATS)
        what = where if published else f"{where} ({zoo} has no published checkpoint format; its own layout is expected)"
        filled, name, eps = _check_and_fill(sd, model, what), f"ghostfast:{zoo}", None
    else:
        if fmt.model != zoo:
            raise ValueError(f"format {fmt.name} loads into zoo model {fmt.model!r}, not {zoo!r}")
        filled = _check_and_fill(_converted(sd, fmt), model, f"{where} (as {fmt.name})")
        if fmt.tf_same_padding:
            use_tf_same_padding(model)
        name, eps = fmt.name, fmt.bn_eps
    model.load_state_dict(filled, strict=True)
    _set_bn_eps(model, eps)
    model.weights_format = name
    return model.eval()


def _choose_format(sd: dict, model: nn.Module, format: str | None, where: str) -> CheckpointFormat | None:  # noqa: A002
    """The format to load ``sd`` as; None for the zoo model's own layout when no published format fits it."""
    if format is not None:
        return get_format(format)
    if not any(f.model == model.zoo_name for f in FORMATS):
        return None
    sig = _sd_signature(sd)
    if sig == _sd_signature(model.state_dict()) and not any(_signature(layout(f.keys_file)) == sig for f in FORMATS):
        return None
    return detect_format(sd, model.zoo_name, where)


def _set_bn_eps(model: nn.Module, eps: float | None) -> None:
    """Give every BatchNorm the source's eps, or back the zoo's own (remembered on first change) when None."""
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    saved = getattr(model, "_zoo_bn_eps", None)
    if eps is None:
        for n, eps0 in (saved or {}).items():
            bns[n].eps = eps0
        return
    if saved is None:
        model._zoo_bn_eps = {n: m.eps for n, m in bns.items()}
    for m in bns.values():
        m.eps = eps
