"""HuggingFace's layout of Depth-Anything V2 weights ↔ upstream's, key by key.

Users hold the same weights in two forms: upstream's `.pth` and the `-hf` repos' `model.safetensors`, which
transformers wrote with its own module names, q/k/v split into three Linears, and the fusion blocks numbered
from the deepest (`refinenet4` is `fusion_stage.layers.0`). Everything downstream of `weights.py` speaks
upstream's layout, so an HF file is renamed once here and never again. The names are the ones transformers
writes to disk (`attention.attention.query`, `attention.output.dense`); its newer in-memory names (`q_proj`)
never reach a file, since `save_pretrained` converts back.

The mapping is a table of (upstream, HF) name templates read in either direction, so the two conversions are
exact inverses by construction, and a key the table does not know is an error rather than a silent drop.
"""

import json
import re
from pathlib import Path

import torch

from dav2_cli.errors import UserError
from dav2_cli.weights.nested_backbone import is_nested_backbone

_SAME = (lambda i: i, lambda i: i)
_SHIFT_ONE = (lambda i: i - 1, lambda i: i + 1)  # upstream counts layer1_rn..4, HF counts convs.0..3
_REVERSED = (lambda i: 4 - i, lambda i: 4 - i)  # refinenet1..4 ↔ fusion_stage.layers.3..0

# (upstream template, HF template, (upstream index → HF, HF index → upstream)); `{i}` is the one number.
_RULES = (
    ("pretrained.cls_token", "backbone.embeddings.cls_token", _SAME),
    ("pretrained.mask_token", "backbone.embeddings.mask_token", _SAME),
    ("pretrained.pos_embed", "backbone.embeddings.position_embeddings", _SAME),
    ("pretrained.patch_embed.proj.weight", "backbone.embeddings.patch_embeddings.projection.weight", _SAME),
    ("pretrained.patch_embed.proj.bias", "backbone.embeddings.patch_embeddings.projection.bias", _SAME),
    *(
        (f"pretrained.blocks.{{i}}.{ours}.{p}", f"backbone.encoder.layer.{{i}}.{theirs}.{p}", _SAME)
        for ours, theirs in (
            ("norm1", "norm1"),
            ("norm2", "norm2"),
            ("attn.proj", "attention.output.dense"),
            ("mlp.fc1", "mlp.fc1"),
            ("mlp.fc2", "mlp.fc2"),
            ("mlp.w12", "mlp.weights_in"),  # SwiGLU MLP (vitg)
            ("mlp.w3", "mlp.weights_out"),
        )
        for p in ("weight", "bias")
    ),
    ("pretrained.blocks.{i}.ls1.gamma", "backbone.encoder.layer.{i}.layer_scale1.lambda1", _SAME),
    ("pretrained.blocks.{i}.ls2.gamma", "backbone.encoder.layer.{i}.layer_scale2.lambda1", _SAME),
    ("pretrained.norm.weight", "backbone.layernorm.weight", _SAME),
    ("pretrained.norm.bias", "backbone.layernorm.bias", _SAME),
    *(
        rule
        for p in ("weight", "bias")
        for rule in (
            (f"depth_head.projects.{{i}}.{p}", f"neck.reassemble_stage.layers.{{i}}.projection.{p}", _SAME),
            (f"depth_head.resize_layers.{{i}}.{p}", f"neck.reassemble_stage.layers.{{i}}.resize.{p}", _SAME),
            (f"depth_head.scratch.refinenet{{i}}.out_conv.{p}",
             f"neck.fusion_stage.layers.{{i}}.projection.{p}", _REVERSED),
            *(
                (f"depth_head.scratch.refinenet{{i}}.resConfUnit{u}.conv{c}.{p}",
                 f"neck.fusion_stage.layers.{{i}}.residual_layer{u}.convolution{c}.{p}", _REVERSED)
                for u in (1, 2)
                for c in (1, 2)
            ),
            (f"depth_head.scratch.output_conv1.{p}", f"head.conv1.{p}", _SAME),
            (f"depth_head.scratch.output_conv2.0.{p}", f"head.conv2.{p}", _SAME),
            (f"depth_head.scratch.output_conv2.2.{p}", f"head.conv3.{p}", _SAME),
        )
    ),
    ("depth_head.scratch.layer{i}_rn.weight", "neck.convs.{i}.weight", _SHIFT_ONE),
)

# Upstream's fused attention input projection; HF stores its thirds in this order.
_QKV = re.compile(r"pretrained\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)")
_QKV_PARTS = ("query", "key", "value")
_HF_QKV = re.compile(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)")

_HF_PREFIXES = ("backbone.", "neck.", "head.")


def _compile(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(re.escape("{i}"), r"(\d+)"))


_UPSTREAM_TO_HF = tuple((_compile(up), hf, index_maps[0]) for up, hf, index_maps in _RULES)
_HF_TO_UPSTREAM = tuple((_compile(hf), up, index_maps[1]) for up, hf, index_maps in _RULES)


def _rename(key: str, rules, layout: str) -> str:
    for pattern, template, map_index in rules:
        match = pattern.fullmatch(key)
        if match:
            return template.format(i=map_index(int(match[1]))) if match.groups() else template
    raise UserError(f"unknown key {key!r} in a {layout}-layout checkpoint: not Depth-Anything V2 weights")


def is_hf_state_dict(state_dict) -> bool:
    """True when the keys are transformers' (`backbone.*`, `neck.*`, `head.*`) rather than upstream's."""
    return any(key.startswith(_HF_PREFIXES) for key in state_dict)


def upstream_to_hf(state_dict) -> dict:
    """Upstream's keys → the names transformers writes; the fused qkv is split into query, key, value."""
    converted = {}
    for key, tensor in state_dict.items():
        qkv = _QKV.fullmatch(key)
        if qkv:
            block, param = qkv.groups()
            # clone: safetensors refuses to save views that share one storage
            for part, third in zip(_QKV_PARTS, tensor.chunk(3, dim=0)):
                converted[f"backbone.encoder.layer.{block}.attention.attention.{part}.{param}"] = third.clone()
        else:
            converted[_rename(key, _UPSTREAM_TO_HF, "upstream")] = tensor
    return converted


def hf_to_upstream(state_dict) -> dict:
    """The names transformers writes → upstream's keys; query, key, value are fused back into one qkv."""
    converted = {}
    thirds = {}  # (block, param) -> {part: tensor}
    for key, tensor in state_dict.items():
        split = _HF_QKV.fullmatch(key)
        if split:
            block, part, param = split.groups()
            thirds.setdefault((block, param), {})[part] = tensor
        else:
            converted[_rename(key, _HF_TO_UPSTREAM, "HuggingFace")] = tensor
    for (block, param), parts in thirds.items():
        for part in _QKV_PARTS:
            if part not in parts:
                raise UserError(f"HuggingFace-layout checkpoint lacks "
                                f"backbone.encoder.layer.{block}.attention.attention.{part}.{param}")
        converted[f"pretrained.blocks.{block}.attn.qkv.{param}"] = torch.cat([parts[p] for p in _QKV_PARTS])
    return converted


def read_hf_config(config_json_path_or_dict) -> tuple[bool, float | None]:
    """(metric?, max_depth) from an HF `config.json`; a relative model's `max_depth` means nothing (None).

    transformers defaults a missing `depth_estimation_type` to relative, and so do we.
    """
    if isinstance(config_json_path_or_dict, dict):
        config, source = config_json_path_or_dict, "config.json"
    else:
        source = str(config_json_path_or_dict)
        try:
            config = json.loads(Path(config_json_path_or_dict).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"{source}: cannot read ({exc.strerror or exc})") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise UserError(f"{source}: not a model config (expected a JSON object)")
    kind = config.get("depth_estimation_type", "relative")
    if kind == "relative":
        return False, None
    if kind != "metric":
        raise UserError(f"{source}: unknown depth_estimation_type {kind!r} (expected 'relative' or 'metric')")
    max_depth = config.get("max_depth")
    if max_depth is None:
        return True, None
    if isinstance(max_depth, bool) or not isinstance(max_depth, (int, float)) or max_depth <= 0:
        raise UserError(f"{source}: max_depth must be a positive number, not {max_depth!r}")
    return True, float(max_depth)


def read_safetensors(path: Path) -> dict:
    """The tensors of HuggingFace's form (a folder holding model.safetensors, or a lone .safetensors file), in
    upstream's layout when the file used transformers' (a chunked backbone is left to nested_backbone.py)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = path / "model.safetensors" if path.is_dir() else path
    try:
        loaded = load_file(weights)
    except FileNotFoundError:
        raise UserError(f"{weights}: no such file (a HuggingFace model folder holds model.safetensors and "
                        f"config.json)") from None
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{weights}: not a readable safetensors file ({str(exc)[:160]})") from None
    if not is_hf_state_dict(loaded) or is_nested_backbone(loaded):  # the latter renamed by checkpoint.py
        return loaded
    try:
        return hf_to_upstream(loaded)
    except UserError as exc:
        raise UserError(f"{weights}: {exc}") from None
