"""Backends behind one interface (see :mod:`ghostfast.backends.base`)."""
from .base import Backend, BackendUnavailable, Runner, backend_names, get_backend, register_backend
from . import torch_eager  # noqa: F401  (registers "torch")

__all__ = ["Backend", "BackendUnavailable", "Runner", "backend_names", "get_backend", "register_backend"]
