"""ghostfast: is GhostNet worth it? Structure, size, accuracy and latency of mobile CNNs, measured one way.

>>> import ghostfast
>>> ghostfast.profile("ghostnet").macs          # conv + linear multiply-accumulates at 224x224
141150512
>>> print(ghostfast.structure("ghostnet"))      # the paper's stage table, derived from the modules
>>> ghostfast.bench("ghostnet", iters=5000)     # latency, timed by the C++ loop
>>> engine = ghostfast.compile("ghostnet")      # the native engine; engine.run(x) -> logits
>>> engine.save("ghostnet.gfe"); ghostfast.load("ghostnet.gfe")   # loading needs numpy only, not torch

Everything that needs torch is imported on first use, so ``ghostfast.load`` works in a process without torch.
"""
from __future__ import annotations

import importlib

from .engine import Engine, compile, load  # noqa: A004  (numpy + the compiled core only)

__version__ = "0.1.0"

# name -> (module, attribute); resolved lazily because these import torch.
_LAZY = {
    "models": ("ghostfast.models", None),
    "profile": ("ghostfast.profiler", "profile"),
    "Profile": ("ghostfast.profiler", "Profile"),
    "structure": ("ghostfast.stage_table", "structure"),
    "structure_summary": ("ghostfast.stage_table", "structure_summary"),
    "Structure": ("ghostfast.stage_table", "Structure"),
    "bench": ("ghostfast.benchmark", "bench"),
    "BenchResult": ("ghostfast.benchmark", "BenchResult"),
    "compare": ("ghostfast.comparison", "compare"),
    "load_weights": ("ghostfast.checkpoints", "load_weights"),
    "evaluate": ("ghostfast.accuracy", "evaluate"),
    "EvalResult": ("ghostfast.accuracy", "EvalResult"),
    "Preprocess": ("ghostfast.preprocess", "Preprocess"),
}


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ghostfast' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["BenchResult", "Engine", "Profile", "Structure", "bench", "compare", "compile", "load", "models",
           "profile", "structure", "structure_summary"]
