"""The Depth-Anything V2 DPT model and its video variant, one file per part; no I/O happens in this package."""

from .config import ModelConfig, VideoModelConfig
from .dpt import DepthAnythingV2
from .video_dpt import VideoDepthAnything

__all__ = ["DepthAnythingV2", "ModelConfig", "VideoDepthAnything", "VideoModelConfig"]
