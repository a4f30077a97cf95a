"""The one key table: this package's parameter names ↔ upstream's checkpoint keys, for DA-V2 and Video Depth Anything.

Every reader ends here: upstream's `.pth` files are in upstream's layout already, transformers' files are first
renamed to it (hf_layout.py), and VDA files are DA-V2's layout with `head.` for `depth_head.` plus temporal
modules. The table is written once, ours → upstream's, and read backwards by `rename_strictly`, which insists
that every tensor is present and expected: a wrong file is named with the first key that does not fit, never
loaded half-random.
"""

import re

import torch

from dav2_cli.errors import UserError

# Upstream keys that the model does not use (DINOv2's masked-training token).
UNUSED_KEYS = {"pretrained.mask_token"}

# A VDA checkpoint is recognised by its temporal modules; the rest is DA-V2's layout with `head.`.
TEMPORAL_PREFIX = "head.motion_modules."

_FUSION_PARTS = {"lateral_rcu": "resConfUnit1", "merged_rcu": "resConfUnit2", "out_proj": "out_conv"}

# our name → upstream's (DA-V2)
_DAV2_RULES = (
    (r"patch_embed\.proj\.(.+)", lambda m: f"pretrained.patch_embed.proj.{m[1]}"),
    (r"image_encoder\.(cls_token|pos_embed)", lambda m: f"pretrained.{m[1]}"),
    (r"image_encoder\.blocks\.(.+)", lambda m: f"pretrained.blocks.{m[1]}"),
    (r"image_encoder\.out_norm\.(.+)", lambda m: f"pretrained.norm.{m[1]}"),
    (r"reassembly\.stages\.(\d)\.proj\.(.+)", lambda m: f"depth_head.projects.{m[1]}.{m[2]}"),
    (r"reassembly\.stages\.(\d)\.resample\.(.+)", lambda m: f"depth_head.resize_layers.{m[1]}.{m[2]}"),
    (r"reassembly\.stages\.(\d)\.fuse_proj\.(.+)", lambda m: f"depth_head.scratch.layer{int(m[1]) + 1}_rn.{m[2]}"),
    (r"fusion\.blocks\.(\d)\.(lateral_rcu|merged_rcu|out_proj)\.(.+)",
     lambda m: f"depth_head.scratch.refinenet{4 - int(m[1])}.{_FUSION_PARTS[m[2]]}.{m[3]}"),
    (r"head\.proj\.(.+)", lambda m: f"depth_head.scratch.output_conv1.{m[1]}"),
    (r"head\.conv\.(.+)", lambda m: f"depth_head.scratch.output_conv2.0.{m[1]}"),
    (r"head\.out_conv\.(.+)", lambda m: f"depth_head.scratch.output_conv2.2.{m[1]}"),
    # Depth Anything 3's sky head (its files are renamed to this layout first: da3_layout.py)
    (r"head\.sky_conv\.(.+)", lambda m: f"depth_head.scratch.sky_output_conv2.0.{m[1]}"),
    (r"head\.sky_out_conv\.(.+)", lambda m: f"depth_head.scratch.sky_output_conv2.2.{m[1]}"),
)

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


def upstream_key(key: str) -> str:
    """Our DepthAnythingV2 parameter name → upstream's DA-V2 checkpoint key."""
    for pattern, build in _DAV2_RULES:
        match = re.fullmatch(pattern, key)
        if match:
            return build(match)
    raise KeyError(key)


def video_upstream_key(key: str) -> str:
    """Our VideoDepthAnything parameter name → the key in upstream's VDA checkpoints."""
    match = re.fullmatch(r"temporal\.(\d)\.(.+)", key)
    if match is None:
        return re.sub(r"^depth_head\.", "head.", upstream_key(key))
    for pattern, replacement in _TEMPORAL_RULES:
        if re.fullmatch(pattern, match[2]):
            return f"{TEMPORAL_PREFIX}{match[1]}.temporal_transformer." + re.sub(pattern, replacement, match[2])
    raise KeyError(key)


def is_video_state_dict(state_dict: dict) -> bool:
    return any(key.startswith(TEMPORAL_PREFIX) for key in state_dict)


def rename_strictly(state_dict: dict, model_class, config, to_upstream, family: str, source: str) -> dict:
    """Rename upstream's keys to `model_class`'s (through `to_upstream`, ours → theirs), insisting that every tensor
    is present and expected."""
    with torch.device("meta"):  # only the names are needed: no memory, no random init
        names = model_class(config).state_dict().keys()
    expected = {to_upstream(name): name for name in names}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected) - UNUSED_KEYS)
    for problem, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            raise UserError(f"{source}: not a {family} {config.encoder} checkpoint: {problem} {keys[0]}{more}")
    return {ours: state_dict[theirs] for theirs, ours in expected.items()}
