"""The environment a measurement was taken in: CPU, ISA features, threads, library versions."""
from __future__ import annotations

import functools
import os
import platform
import sys
from importlib import metadata


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa_features() -> list[str]:
    """ISA features read at run time by the native core (CPUID + OS state), e.g. ['avx2', 'fma', ...]."""
    from . import _core

    return list(_core.cpu_features())


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# The distributions behind the peer backends (openvino, litert, ncnn, mnn), as pip names them.
PEER_DISTRIBUTIONS = ("openvino", "ai-edge-litert", "litert-torch", "ncnn", "pnnx", "mnn")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the installed libraries that take part in a measurement."""
    out = {"python": platform.python_version()}
    # The peer runtimes and their converters too: a peer's latency belongs to its version.
    for dist in ("ghostfast", "torch", "numpy", "onnxruntime", "onnx", "nanobind", *PEER_DISTRIBUTIONS):
        v = _version(dist)
        if v is not None:
            out[dist] = v
    return out


def describe() -> dict:
    """A JSON-friendly description of this machine and software stack."""
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "isa": isa_features(),
        "logical_cpus": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": library_versions(),
        "argv": list(sys.argv),
    }
