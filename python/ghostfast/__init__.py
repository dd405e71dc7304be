"""ghostfast: is GhostNet worth it? Structure, size, accuracy and latency of mobile CNNs, measured one way."""
from . import models
from .profile import Profile, profile

__all__ = ["models", "profile", "Profile"]
