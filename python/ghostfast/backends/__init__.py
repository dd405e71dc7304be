"""Backends behind one interface (see :mod:`ghostfast.backends.base`)."""
from .base import Backend, BackendUnavailable, Runner, backend_names, get_backend, register_backend
from . import native, torch_eager  # noqa: F401  (registering "native", "torch")
# "torch-compiled", "torchscript"; "onnxruntime"; "torch-cuda", "onnxruntime-cuda". Each imports its runtime
# only when used, so a missing onnxruntime or GPU shows up as BackendUnavailable, not as an ImportError here.
from . import torch_compiled, onnxruntime, cuda  # noqa: F401,E402
# The peer runtimes "openvino", "litert", "ncnn", "mnn" (the `peers` extra), imported only when used, likewise.
from . import openvino, litert, ncnn, mnn  # noqa: F401,E402

__all__ = ["Backend", "BackendUnavailable", "Runner", "backend_names", "get_backend", "register_backend"]
