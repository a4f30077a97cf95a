"""The Depth-Anything V2 DPT model and its video variant, one file per part; no I/O happens in this package."""

from dav2_cli.model.config import ModelConfig, VideoModelConfig
from dav2_cli.model.dpt import DepthAnythingV2
from dav2_cli.model.video_dpt import VideoDepthAnything

__all__ = ["DepthAnythingV2", "ModelConfig", "VideoDepthAnything", "VideoModelConfig"]
