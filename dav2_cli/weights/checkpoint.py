"""A model argument → a built model: which reader a checkpoint's layout needs, and the tensors put in place.

One reader per layout, all ending in the one key table (keys.py): upstream's DA-V2 `.pth` (upstream_pth.py),
upstream's Video Depth Anything `.pth` (video_checkpoint.py), transformers' folder or `.safetensors`
(hf_layout.py), Distill-Any-Depth Large's chunked backbone in either container (nested_backbone.py), Depth
Anything 3's mono and metric folders (da3_layout.py). A new
family is a reader beside them and its rows in catalog.py. Distill-Any-Depth S/B and Depth-Anything-AC are in
upstream's DA-V2 layout already.
"""

from dataclasses import dataclass

import torch

from dav2_cli.errors import UserError
from dav2_cli.model import DepthAnythingV2, ModelConfig, VideoDepthAnything, VideoModelConfig
from dav2_cli.weights.catalog import DA3_FAMILY, DAV2_FAMILY, VIDEO_FAMILY
from dav2_cli.weights.da3_layout import da3_config, da3_metric, from_da3_layout, is_da3_keys
from dav2_cli.weights.hf_layout import read_safetensors
from dav2_cli.weights.keys import is_video_state_dict, rename_strictly, upstream_key
from dav2_cli.weights.kinds import checkpoint_kind, metric_from_name, metric_from_video_name, refuse_max_depth
from dav2_cli.weights.lookup import resolve
from dav2_cli.weights.nested_backbone import from_nested_backbone, is_nested_backbone
from dav2_cli.weights.upstream_pth import config_from_state_dict, from_upstream_layout, read_pth
from dav2_cli.weights.video_checkpoint import from_video_upstream_layout, video_config_from_state_dict


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dict: dict  # in this package's layout (see keys.py)
    source: str


def load_checkpoint(path_or_name, *, max_depth: float | None = None) -> Checkpoint:
    """A checkpoint from a model name or catalogue file name (see `dav2 models`), an upstream .pth (DA-V2 or Video
    Depth Anything), or a HuggingFace folder/.safetensors (DA-V2)."""
    path = resolve(path_or_name)
    source = str(path)
    if path.is_dir() or path.suffix.lower() == ".safetensors":
        state_dict = read_safetensors(path)
        if is_da3_keys(state_dict):
            return _da3_checkpoint(path, state_dict, max_depth, source)
        metric, max_depth = checkpoint_kind(path, max_depth)
    else:
        state_dict = read_pth(path)
        if is_video_state_dict(state_dict):
            metric = metric_from_video_name(path, max_depth)
            config = video_config_from_state_dict(state_dict, metric=metric, source=source)
            return Checkpoint(config, from_video_upstream_layout(state_dict, config, source), source)
        metric, max_depth = metric_from_name(path, max_depth)
    if is_nested_backbone(state_dict):
        try:
            state_dict = from_nested_backbone(state_dict)
        except UserError as exc:
            raise UserError(f"{source}: {exc}") from None
    config = config_from_state_dict(state_dict, metric=metric, max_depth=max_depth, source=source)
    return Checkpoint(config, from_upstream_layout(state_dict, config, source), source)


def _da3_checkpoint(path, state_dict: dict, max_depth: float | None, source: str) -> Checkpoint:
    refuse_max_depth(source, max_depth, DA3_FAMILY)
    metric = da3_metric(path / "model.safetensors" if path.is_dir() else path)
    state_dict = from_da3_layout(state_dict)
    base = config_from_state_dict(state_dict, metric=metric, max_depth=None, source=source)
    config = da3_config(base, state_dict, metric)
    return Checkpoint(config, rename_strictly(state_dict, DepthAnythingV2, config, upstream_key, DA3_FAMILY, source),
                      source)


def build_model(checkpoint: Checkpoint) -> DepthAnythingV2 | VideoDepthAnything:
    """An eval-mode model holding the checkpoint's tensors (no copy, no random initialisation).

    A `VideoModelConfig` builds Video Depth Anything ((B,T,3,H,W) clips in), any other config DA-V2.
    """
    video = isinstance(checkpoint.config, VideoModelConfig)
    with torch.device("meta"):
        model = (VideoDepthAnything if video else DepthAnythingV2)(checkpoint.config)
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
        family = VIDEO_FAMILY if video else DAV2_FAMILY
        raise UserError(f"{checkpoint.source}: tensor shapes do not fit a {family} "
                        f"{checkpoint.config.encoder}: {detail[:200]}") from None
    return model.requires_grad_(False).eval()
