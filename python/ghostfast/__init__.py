"""ghostfast: is GhostNet worth it? Structure, size, accuracy and latency of mobile CNNs, measured one way.

>>> import ghostfast
>>> ghostfast.profile("ghostnet").macs          # conv + linear multiply-accumulates at 224x224
141150512
>>> print(ghostfast.structure("ghostnet"))      # the paper's stage table, derived from the modules
>>> ghostfast.bench("ghostnet", iters=5000)     # latency, timed by the C++ loop
"""
from . import models
from .bench import BenchResult, bench
from .compare import compare
from .profile import Profile, profile
from .structure import Structure, structure, structure_summary

__version__ = "0.1.0"

__all__ = ["BenchResult", "Profile", "Structure", "bench", "compare", "models", "profile", "structure",
           "structure_summary"]
