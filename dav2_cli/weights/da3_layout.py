"""Depth Anything 3's mono and metric checkpoints: recognised by their keys, told apart by their config.json.

DA3's HuggingFace folders (`depth-anything/DA3MONO-LARGE`, `DA3METRIC-LARGE`) hold `model.safetensors` and
`config.json`. The weights sit under `model.`, the encoder as `model.backbone.pretrained.*` and the DPT as
`model.head.*` with a sky head (`scratch.sky_output_conv2.*`): renamed once here to upstream DA-V2's layout
(`pretrained.*`, `depth_head.*`), they go through the one key table like every other file (keys.py). The network
differs from DA-V2-L only in what ModelConfig records (exp output, sky head, final-norm eps, no lateral unit in
the coarsest fusion block); which of those a file has is read off its keys, never its name.

Mono and metric have identical keys. DA3's own loader builds the network its config.json names
(`{"model_name": "da3mono-large"}` or `"da3metric-large"`), so that file decides here too; without it a folder
cannot say which it is, and is refused rather than guessed. Its multi-view models (camera tokens and decoders)
are other networks: their config names another model, or their extra keys fail the strict rename.
"""

import json
from dataclasses import replace
from pathlib import Path

from dav2_cli.errors import UserError
from dav2_cli.weights.catalog import DA3_CANONICAL_FOCAL

_ENCODER = "model.backbone.pretrained."
_HEAD = "model.head."
NETWORKS = {"da3mono-large": False, "da3metric-large": True}  # DA3's model_name → metric?
DA3_NORM_EPS = 1e-5  # its final LayerNorm's; the blocks keep DINOv2's 1e-6


def is_da3_keys(keys) -> bool:
    """Whether tensor names are DA3's layout: the encoder under model.backbone.pretrained. and a head beside."""
    keys = list(keys)
    return any(key.startswith(_ENCODER) for key in keys) and any(key.startswith(_HEAD) for key in keys)


def da3_metric(weights: Path) -> bool:
    """Whether the DA3 checkpoint `weights` is the metric network, from the config.json beside it."""
    config_json = weights.with_name("config.json")
    try:
        config = json.loads(config_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{weights}: Depth Anything 3 weights without their config.json beside them: mono and "
                        f"metric share every tensor name, and only that file tells them apart") from None
    except OSError as exc:
        raise UserError(f"{config_json}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{config_json}: not valid JSON ({exc})") from None
    name = config.get("model_name") if isinstance(config, dict) else None
    if name not in NETWORKS:
        raise UserError(f"{config_json}: Depth Anything 3 model {name!r}: dav2 runs the monocular "
                        f"{' and '.join(NETWORKS)} only")
    return NETWORKS[name]


def from_da3_layout(state_dict: dict) -> dict:
    """DA3's keys → upstream DA-V2's: model.backbone.* → pretrained.*, model.head.* → depth_head.*."""
    renamed = {}
    for key, tensor in state_dict.items():
        if key.startswith(_ENCODER):
            renamed["pretrained." + key.removeprefix(_ENCODER)] = tensor
        elif key.startswith(_HEAD):
            renamed["depth_head." + key.removeprefix(_HEAD)] = tensor
        else:
            renamed[key] = tensor  # left for the strict rename to name as unexpected
    return renamed


def da3_config(base, state_dict: dict, metric: bool):
    """`base`, DA-V2's ModelConfig read off the renamed tensors, with DA3's differences; `state_dict` in DA-V2's
    layout. (model/ is not imported here: kinds.py reads this module without loading torch.)"""
    return replace(
        base, metric=metric, max_depth=None, exp_output=True, out_norm_eps=DA3_NORM_EPS,
        sky_head="depth_head.scratch.sky_output_conv2.0.weight" in state_dict,
        coarsest_lateral="depth_head.scratch.refinenet4.resConfUnit1.conv1.weight" in state_dict,
        canonical_focal=DA3_CANONICAL_FOCAL if metric else None)
