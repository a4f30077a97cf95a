"""Video Depth Anything checkpoints (upstream's `.pth` files) → a `VideoModelConfig` and a state dict in our layout.

A VDA file is recognised by its temporal modules (`keys.is_video_state_dict`); everything else in it is DA-V2's
layout with `head.` where DA-V2 says `depth_head.`, so DA-V2's reading of the architecture applies to it and the
key table (keys.py) maps both parts. Relative or metric is read off the file name, as upstream's run.py does
(kinds.py); metric VDA outputs metres directly, so there is no dataset to recognise and no max depth to take.
"""

import re
from dataclasses import asdict

from dav2_cli.errors import UserError
from dav2_cli.model import VideoDepthAnything, VideoModelConfig
from dav2_cli.weights.catalog import DAV2_FAMILY, VIDEO_FAMILY
from dav2_cli.weights.keys import TEMPORAL_PREFIX, rename_strictly, video_upstream_key
from dav2_cli.weights.upstream_pth import config_from_state_dict


def video_config_from_state_dict(state_dict: dict, *, metric: bool, source: str = "checkpoint") -> VideoModelConfig:
    """The DA-V2 part is read by DA-V2's rules (under DA-V2's key names); the window length off the position table."""
    as_dav2 = {re.sub(r"^head\.", "depth_head.", key): value for key, value in state_dict.items()}
    try:
        config = config_from_state_dict(as_dav2, metric=metric, max_depth=None, source=source)
    except UserError as exc:
        raise UserError(str(exc).replace("depth_head.", "head.").replace(DAV2_FAMILY, VIDEO_FAMILY)) from None
    table = state_dict.get(f"{TEMPORAL_PREFIX}0.temporal_transformer.transformer_blocks.0.attention_blocks.0"
                           f".pos_encoder.pe")
    max_frames = table.shape[1] if table is not None and table.ndim == 3 else VideoModelConfig.max_frames
    return VideoModelConfig(**asdict(config), max_frames=max_frames)


def from_video_upstream_layout(state_dict: dict, config: VideoModelConfig, source: str) -> dict:
    """Rename upstream's VDA keys to ours, insisting that every tensor is present and expected."""
    return rename_strictly(state_dict, VideoDepthAnything, config, video_upstream_key, VIDEO_FAMILY, source)
