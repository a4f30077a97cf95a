"""The Depth-Anything V2 DPT model, one file per part; no I/O happens in this package."""

from .config import ModelConfig
from .dpt import DepthAnythingV2

__all__ = ["DepthAnythingV2", "ModelConfig"]
