"""Video Depth Anything checkpoints (upstream's `.pth` files) → a `VideoModelConfig` and a state dict in our layout.

A VDA file is recognised by its temporal modules (`head.motion_modules.*`); everything else in it is DA-V2's
layout with `head.` where DA-V2 says `depth_head.`, so the DA-V2 rules (checkpoint.py) map those keys and this
file adds the temporal ones. Mapping is strict both ways, as for DA-V2: a missing or unexpected tensor is a
one-line error, never a silently half-random model.

Relative or metric is read off the file name, as upstream's run.py does (`metric` in the name). Metric VDA
outputs metres directly, so there is no dataset to recognise and no `--max-depth` to take.
"""

import re
from dataclasses import asdict
from pathlib import Path

from dav2_cli.errors import UsageError, UserError
from dav2_cli.model import VideoDepthAnything, VideoModelConfig
from dav2_cli.weights.checkpoint import (
    Checkpoint,
    config_from_state_dict,
    rename_strictly,
    upstream_key,
)

TEMPORAL_PREFIX = "head.motion_modules."
FAMILY = "Video Depth Anything"

# our name inside one TemporalModule → upstream's, under head.motion_modules.N.temporal_transformer.
_TEMPORAL_RULES = (
    (r"norm_in\.(.+)", r"norm.\1"),
    (r"proj_in\.(.+)", r"proj_in.\1"),
    (r"proj_out\.(.+)", r"proj_out.\1"),
    (r"attn_norms\.(\d+)\.(.+)", r"transformer_blocks.0.norms.\1.\2"),
    (r"attns\.(\d+)\.([qkv])\.(.+)", r"transformer_blocks.0.attention_blocks.\1.to_\2.\3"),
    (r"attns\.(\d+)\.out\.(.+)", r"transformer_blocks.0.attention_blocks.\1.to_out.0.\2"),
    (r"attns\.(\d+)\.position_1tc", r"transformer_blocks.0.attention_blocks.\1.pos_encoder.pe"),
    (r"ff_norm\.(.+)", r"transformer_blocks.0.ff_norm.\1"),
    (r"ff\.proj_in\.(.+)", r"transformer_blocks.0.ff.net.0.proj.\1"),
    (r"ff\.proj_out\.(.+)", r"transformer_blocks.0.ff.net.2.\1"),
)


def is_video_state_dict(state_dict: dict) -> bool:
    return any(key.startswith(TEMPORAL_PREFIX) for key in state_dict)


def video_upstream_key(key: str) -> str:
    """Our VideoDepthAnything parameter name → the name in upstream's VDA checkpoints."""
    match = re.fullmatch(r"temporal\.(\d)\.(.+)", key)
    if match is None:
        return re.sub(r"^depth_head\.", "head.", upstream_key(key))
    for pattern, replacement in _TEMPORAL_RULES:
        if re.fullmatch(pattern, match[2]):
            return f"{TEMPORAL_PREFIX}{match[1]}.temporal_transformer." + re.sub(pattern, replacement, match[2])
    raise KeyError(key)


def video_config_from_state_dict(state_dict: dict, *, metric: bool, source: str = "checkpoint") -> VideoModelConfig:
    """The DA-V2 part is read by DA-V2's rules (under DA-V2's key names); the window length off the position table."""
    as_dav2 = {re.sub(r"^head\.", "depth_head.", key): value for key, value in state_dict.items()}
    try:
        config = config_from_state_dict(as_dav2, metric=metric, max_depth=None, source=source)
    except UserError as exc:
        raise UserError(str(exc).replace("depth_head.", "head.").replace("Depth-Anything V2", FAMILY)) from None
    table = state_dict.get(f"{TEMPORAL_PREFIX}0.temporal_transformer.transformer_blocks.0.attention_blocks.0"
                           f".pos_encoder.pe")
    max_frames = table.shape[1] if table is not None and table.ndim == 3 else VideoModelConfig.max_frames
    return VideoModelConfig(**asdict(config), max_frames=max_frames)


def refuse_max_depth(model, max_depth: float | None) -> None:
    """--max-depth with a VDA `model` (a name or file), whichever way it was recognised, is this usage error."""
    if max_depth is not None:
        raise UsageError(f"{model}: --max-depth applies to metric Depth-Anything V2 models only; {FAMILY} takes "
                         f"none (metric VDA outputs metres directly, relative VDA has no unit)")


def metric_from_video_name(path: Path, max_depth: float | None) -> bool:
    refuse_max_depth(path, max_depth)
    return "metric" in path.name.lower()


def from_video_upstream_layout(state_dict: dict, config: VideoModelConfig, source: str) -> dict:
    """Rename upstream's VDA keys to ours, insisting that every tensor is present and expected."""
    return rename_strictly(state_dict, VideoDepthAnything, config, video_upstream_key, FAMILY, source)


def load_video_checkpoint(state_dict: dict, path: Path, max_depth: float | None = None) -> Checkpoint:
    """A VDA checkpoint from upstream's tensors (already read) and the file's name."""
    metric = metric_from_video_name(path, max_depth)
    config = video_config_from_state_dict(state_dict, metric=metric, source=str(path))
    return Checkpoint(config, from_video_upstream_layout(state_dict, config, str(path)), str(path))
