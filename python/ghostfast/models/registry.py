"""The model registry: every zoo architecture by name, with its default input size and canonical source.

Family files register their constructors with :func:`register`; users call :func:`names`, :func:`create`
and :func:`spec`. Names are resolved through aliases, and an unknown name raises a ``ValueError`` that
suggests the closest registered names.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one zoo model."""

    name: str
    family: str
    builder: Callable[..., nn.Module] = field(repr=False)
    input_size: tuple[int, int] = (224, 224)
    canonical: str = ""  # "library:name" of the implementation whose architecture this equals
    aliases: tuple[str, ...] = ()
    num_classes: int = 1000

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Default NCHW input shape at batch 1."""
        return (1, 3, *self.input_size)


_SPECS: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register(
    name: str,
    *,
    family: str,
    canonical: str,
    input_size: tuple[int, int] = (224, 224),
    aliases: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model constructor ``fn(num_classes=1000) -> nn.Module``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        for key in (name, *aliases):
            if key in _SPECS or key in _ALIASES:
                raise RuntimeError(f"model name {key!r} registered twice")
        _SPECS[name] = ModelSpec(name, family, builder, tuple(input_size), canonical, tuple(aliases))
        for alias in aliases:
            _ALIASES[alias] = name
        return builder

    return wrap


def names(family: str | None = None) -> list[str]:
    """Registered model names (no aliases), in zoo order; optionally only one family."""
    return [n for n, s in _SPECS.items() if family is None or s.family == family]


def aliases() -> dict[str, str]:
    """Alias -> model name."""
    return dict(_ALIASES)


def resolve(name: str) -> str:
    """The registered name for ``name`` or one of its aliases; ValueError with suggestions otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key in _SPECS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    known = list(_SPECS) + list(_ALIASES)
    close = difflib.get_close_matches(key, known, n=4, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown model {name!r}.{hint} Known models: {', '.join(_SPECS)}")


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a model name or alias."""
    return _SPECS[resolve(name)]


def create(name: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """A new, randomly initialised zoo model in eval mode."""
    s = spec(name)
    if not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    model = s.builder(num_classes=num_classes, **kwargs)
    model.zoo_name = s.name  # lets profile/structure/bench find the default input size
    return model.eval()
