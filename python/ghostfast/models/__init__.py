"""The reference PyTorch model zoo: one file per family, all registered by name.

>>> import ghostfast
>>> ghostfast.models.names()[:3]
['ghostnet_050', 'ghostnet_100', 'ghostnet_130']
>>> model = ghostfast.models.create("ghostnet")  # alias of ghostnet_100, random init, eval mode
"""
from . import registry
from .registry import ModelSpec, aliases, create, names, resolve, spec

# Importing a family file registers its models; this order is the zoo's display order.
from . import ghostnet, mobilenet_v1, mobilenet_v2, mobilenet_v3, mnasnet, shufflenet_v1, shufflenet_v2  # noqa: E402,F401
from . import efficientnet  # noqa: E402,F401

__all__ = ["ModelSpec", "aliases", "create", "names", "resolve", "spec", "registry"]
