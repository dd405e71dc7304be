"""Published figures (top-1, params, MACs) from canonical.json, always labeled with their source."""
from __future__ import annotations

import functools
import json
from importlib import resources


@functools.lru_cache(maxsize=None)
def canonical() -> dict:
    """The reference data for every zoo model (ghostfast/data/canonical.json)."""
    return json.loads(resources.files("ghostfast").joinpath("data/canonical.json").read_text())["models"]


def published(name: str) -> dict:
    """``{"top1", "params_M", "macs_M", "source"}`` as published for zoo model ``name``."""
    return dict(canonical()[name]["published"])
