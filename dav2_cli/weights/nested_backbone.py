"""Distill-Any-Depth Large's layout: DA-V2's keys with the encoder under `backbone.` and its blocks chunked.

Its trainer kept DINOv2's chunked blocks (`backbone.blocks.<chunk>.<block>.*`, the block numbered across all
chunks) and named the encoder `backbone` instead of `pretrained`; the decoder keeps DA-V2's `depth_head.*`. The
file is recognised by those two-number block keys, which neither upstream's layout (`pretrained.blocks.N`) nor
transformers' (`backbone.encoder.layer.N`) has, so the rule never depends on the file's name. Renamed here once
to upstream's layout, it goes through the one key table like every other file (keys.py).
"""

import re

from dav2_cli.errors import UserError

_CHUNKED_BLOCK = re.compile(r"backbone\.blocks\.\d+\.(\d+)\.(.+)")


def is_nested_backbone(state_dict) -> bool:
    """Whether the keys are this layout: an encoder block numbered by chunk and block."""
    return any(_CHUNKED_BLOCK.fullmatch(key) for key in state_dict)


def from_nested_backbone(state_dict: dict) -> dict:
    """`backbone.blocks.C.N.*` → `pretrained.blocks.N.*`, other `backbone.*` → `pretrained.*`; the rest as is."""
    renamed = {}
    for key, tensor in state_dict.items():
        block = _CHUNKED_BLOCK.fullmatch(key)
        if block:
            key = f"pretrained.blocks.{block[1]}.{block[2]}"
        elif key.startswith("backbone."):
            key = "pretrained." + key.removeprefix("backbone.")
        if key in renamed:  # two chunks holding one block: the file cannot say which is meant
            raise UserError(f"a chunked-backbone checkpoint holds {key} twice")
        renamed[key] = tensor
    return renamed
