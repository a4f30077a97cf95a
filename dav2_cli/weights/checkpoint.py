"""Checkpoint files → a model config and a state dict in this package's layout.

Weights are data and must never run code: `.pth` files are read only through `torch.load(weights_only=True)`.
The architecture is read off the tensors (width, depth, channels), and relative vs metric off the file name,
because the weights of both kinds are shaped identically — that is upstream's convention, and the only one
the files carry.
"""

import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from dav2_cli.errors import UsageError, UserError
from dav2_cli.model import DepthAnythingV2, ModelConfig, VideoDepthAnything, VideoModelConfig
from dav2_cli.model.config import TAPS_BY_BLOCKS
from dav2_cli.weights import catalog
from dav2_cli.weights.hf_layout import hf_to_upstream, is_hf_state_dict, read_hf_config

# Metric checkpoints scale a sigmoid by the largest depth of their training data (upstream's max_depth).
MAX_DEPTH_BY_DATASET = {"hypersim": 20.0, "vkitti": 80.0}

# Upstream keys that the model does not use (DINOv2's masked-training token).
UNUSED_KEYS = {"pretrained.mask_token"}


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dict: dict  # in this package's layout (see `upstream_key`)
    source: str


def upstream_key(key: str) -> str:
    """This package's parameter name → upstream's, the one place the two layouts are tied together."""
    rules = (
        (r"patch_embed\.proj\.(.+)", lambda m: f"pretrained.patch_embed.proj.{m[1]}"),
        (r"image_encoder\.(cls_token|pos_embed)", lambda m: f"pretrained.{m[1]}"),
        (r"image_encoder\.blocks\.(.+)", lambda m: f"pretrained.blocks.{m[1]}"),
        (r"image_encoder\.out_norm\.(.+)", lambda m: f"pretrained.norm.{m[1]}"),
        (r"reassembly\.stages\.(\d)\.proj\.(.+)", lambda m: f"depth_head.projects.{m[1]}.{m[2]}"),
        (r"reassembly\.stages\.(\d)\.resample\.(.+)", lambda m: f"depth_head.resize_layers.{m[1]}.{m[2]}"),
        (r"reassembly\.stages\.(\d)\.fuse_proj\.(.+)",
         lambda m: f"depth_head.scratch.layer{int(m[1]) + 1}_rn.{m[2]}"),
        (r"fusion\.blocks\.(\d)\.(lateral_rcu|merged_rcu|out_proj)\.(.+)",
         lambda m: f"depth_head.scratch.refinenet{4 - int(m[1])}."
                   f"{ {'lateral_rcu': 'resConfUnit1', 'merged_rcu': 'resConfUnit2', 'out_proj': 'out_conv'}[m[2]] }"
                   f".{m[3]}"),
        (r"head\.proj\.(.+)", lambda m: f"depth_head.scratch.output_conv1.{m[1]}"),
        (r"head\.conv\.(.+)", lambda m: f"depth_head.scratch.output_conv2.0.{m[1]}"),
        (r"head\.out_conv\.(.+)", lambda m: f"depth_head.scratch.output_conv2.2.{m[1]}"),
    )
    for pattern, build in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return build(match)
    raise KeyError(key)


def _require(state_dict: dict, key: str, source: str) -> torch.Tensor:
    if key not in state_dict:
        group = re.sub(r"\.\d+\..*", ".*", key)
        raise UserError(f"{source}: not a Depth-Anything V2 checkpoint: missing {group}")
    return state_dict[key]


def config_from_state_dict(state_dict: dict, *, metric: bool, max_depth: float | None,
                           source: str = "checkpoint") -> ModelConfig:
    """Read the architecture off upstream-layout tensors."""
    patch_weight = _require(state_dict, "pretrained.patch_embed.proj.weight", source)
    block_ids = {int(m[1]) for k in state_dict if (m := re.match(r"pretrained\.blocks\.(\d+)\.", k))}
    if not block_ids:
        raise UserError(f"{source}: not a Depth-Anything V2 checkpoint: missing pretrained.blocks.*")
    blocks = max(block_ids) + 1
    if blocks not in TAPS_BY_BLOCKS:
        raise UserError(f"{source}: unsupported encoder depth of {blocks} blocks "
                        f"(Depth-Anything V2 uses {', '.join(map(str, TAPS_BY_BLOCKS))})")
    swiglu = "pretrained.blocks.0.mlp.w12.weight" in state_dict
    if swiglu:
        mlp_hidden = state_dict["pretrained.blocks.0.mlp.w3.weight"].shape[1]
    else:
        mlp_hidden = _require(state_dict, "pretrained.blocks.0.mlp.fc1.weight", source).shape[0]
    fuse = [_require(state_dict, f"depth_head.scratch.layer{i}_rn.weight", source) for i in range(1, 5)]
    return ModelConfig(
        width=patch_weight.shape[0],
        blocks=blocks,
        mlp_hidden=mlp_hidden,
        swiglu=swiglu,
        reassembly_channels=tuple(w.shape[1] for w in fuse),
        fusion_channels=fuse[0].shape[0],
        metric=metric,
        max_depth=max_depth if metric else None,
        patch_size=patch_weight.shape[2],
    )


def metric_from_name(path: Path, max_depth: float | None) -> tuple[bool, float | None]:
    """Upstream's rule: only the file name says a checkpoint is metric, and which dataset sets its range."""
    name = path.name.lower()
    if "metric" not in name:
        if max_depth is not None:  # the command line alone shows it: a usage error
            raise UsageError(f"{path}: --max-depth applies to metric checkpoints only, and this file's name does "
                             f"not say 'metric' (upstream's convention)")
        return False, None
    if max_depth is not None:
        return True, float(max_depth)
    for dataset, depth in MAX_DEPTH_BY_DATASET.items():
        if dataset in name:
            return True, depth
    raise UserError(f"{path}: a metric checkpoint of unknown training data; pass --max-depth "
                    f"(20 for indoor/Hypersim, 80 for outdoor/VKITTI)")


def damaged_zip_member(path: Path) -> str | None:
    """The first member of a zip checkpoint whose bytes fail the CRC-32 the file records for them, else None.

    torch.load never checks them, so a checkpoint damaged on disk or in a copy would load and give different
    depth without a word. Reading it costs ~0.08 s per 100 MB, and leaves it in the page cache for the load.
    """
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            try:
                with archive.open(member) as data:
                    while data.read(1 << 24):
                        pass
            except (zipfile.BadZipFile, zlib.error):
                return member.filename
    return None


def read_pth(path: Path) -> dict:
    # torch.save's zip format is mapped, not read (no second copy of the weights); its legacy format (before
    # torch 1.6, or _use_new_zipfile_serialization=False) cannot be mapped, and is read
    zipped = zipfile.is_zipfile(path) if path.is_file() else True
    try:
        damaged = damaged_zip_member(path) if zipped and path.is_file() else None
        if damaged:
            raise UserError(f"{path}: damaged checkpoint: {damaged} fails its checksum (copy or download it again)")
        if not zipped:
            with open(path, "rb") as file:
                first = file.read(1)
            if not first:
                raise UserError(f"{path}: an empty file, not a checkpoint")
            if first != b"\x80":  # the legacy format is a pickle, and every pickle of protocol 2+ starts so
                raise UserError(f"{path}: not a PyTorch checkpoint (neither torch.save's zip format nor its legacy "
                                f"format)")
        with warnings.catch_warnings():  # torch's notes on unusual pickles: the outcome is said below in one line
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a checkpoint file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files; all mean the same here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "Unpickler" in str(exc):
            raise UserError(f"{path}: refused: the file holds Python objects or code, not just tensors "
                            f"({reason[:160]})") from None
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({reason[:160]})") from None
    if isinstance(loaded, dict):
        for wrapper in ("state_dict", "model"):
            if set(loaded) == {wrapper} and isinstance(loaded[wrapper], dict):
                loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"{path}: not a Depth-Anything V2 checkpoint: expected a dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def rename_strictly(state_dict: dict, model_class, config, to_upstream, family: str, source: str) -> dict:
    """Rename upstream's keys to `model_class`'s (through `to_upstream`, ours → theirs), insisting that every tensor
    is present and expected: a wrong file is named with the first key that does not fit."""
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


def from_upstream_layout(state_dict: dict, config: ModelConfig, source: str) -> dict:
    """Rename upstream's DA-V2 keys to this package's."""
    return rename_strictly(state_dict, DepthAnythingV2, config, upstream_key, "Depth-Anything V2", source)


def checkpoint_kind(path: Path, max_depth: float | None) -> tuple[bool, float | None]:
    """(metric?, max_depth) of a checkpoint on disk, from its config.json or its name, without reading weights.

    HuggingFace's form (a folder, or a .safetensors file) says so in a config.json beside the weights; without
    one, and for upstream's .pth files, the file name decides.
    """
    if not (path.is_dir() or path.suffix.lower() == ".safetensors"):
        if "video_depth_anything" in path.name.lower():  # upstream's VDA names; their metric kind gives metres
            from dav2_cli.weights.video_checkpoint import metric_from_video_name

            return metric_from_video_name(path, max_depth), None
        return metric_from_name(path, max_depth)
    weights = path / "model.safetensors" if path.is_dir() else path
    config_json = weights.with_name("config.json")
    if not config_json.is_file():
        return metric_from_name(weights, max_depth)
    metric, config_max_depth = read_hf_config(config_json)
    if max_depth is not None and not metric:
        raise UserError(f"{config_json}: --max-depth applies to metric checkpoints only, and this one is "
                        f"relative")
    max_depth = max_depth if max_depth is not None else config_max_depth
    if metric and max_depth is None:
        raise UserError(f"{config_json}: a metric checkpoint without max_depth; pass --max-depth "
                        f"(20 for indoor/Hypersim, 80 for outdoor/VKITTI)")
    return metric, max_depth


def model_kind(path_or_name, max_depth: float | None = None) -> tuple[bool, float | None]:
    """(metric?, max_depth) of a model name or checkpoint, known before anything is loaded or downloaded."""
    path = Path(path_or_name).expanduser()
    spec = None if path.exists() else catalog.find_spec(str(path_or_name))
    if spec is not None:
        if spec.family == catalog.VIDEO_FAMILY:
            from dav2_cli.weights.video_checkpoint import refuse_max_depth  # it builds on this module

            refuse_max_depth(spec.name, max_depth)
        elif max_depth is not None and spec.kind != "metric":
            raise UsageError(f"{spec.name}: --max-depth applies to metric Depth-Anything V2 models only, and this "
                             f"one is relative")
        return spec.kind == "metric", (max_depth if max_depth is not None else spec.max_depth)
    return checkpoint_kind(catalog.resolve(path_or_name, download=False), max_depth)


def read_safetensors(path: Path, max_depth: float | None) -> tuple[dict, bool, float | None]:
    """HuggingFace's form: a folder with config.json + model.safetensors, or a lone .safetensors file.

    A config.json beside the weights says relative or metric (HF's convention); without one, the file name
    decides as for upstream's files, so a lone file is relative unless its name says metric.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = path / "model.safetensors" if path.is_dir() else path
    metric, max_depth = checkpoint_kind(path, max_depth)
    try:
        loaded = load_file(weights)
    except FileNotFoundError:
        raise UserError(f"{weights}: no such file (a HuggingFace model folder holds model.safetensors and "
                        f"config.json)") from None
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{weights}: not a readable safetensors file ({str(exc)[:160]})") from None
    if is_hf_state_dict(loaded):
        try:
            loaded = hf_to_upstream(loaded)
        except UserError as exc:
            raise UserError(f"{weights}: {exc}") from None
    return loaded, metric, max_depth


def load_checkpoint(path_or_name, *, max_depth: float | None = None) -> Checkpoint:
    """A checkpoint from a model name (see `dav2 models`), an upstream .pth (DA-V2 or Video Depth Anything), or a
    HuggingFace folder/.safetensors (DA-V2)."""
    path = catalog.resolve(path_or_name)
    if path.is_dir() or path.suffix.lower() == ".safetensors":
        state_dict, metric, max_depth = read_safetensors(path, max_depth)
    else:
        state_dict = read_pth(path)
        from dav2_cli.weights.video_checkpoint import (  # it builds on this module
            is_video_state_dict,
            load_video_checkpoint,
        )

        if is_video_state_dict(state_dict):
            return load_video_checkpoint(state_dict, path, max_depth)
        metric, max_depth = metric_from_name(path, max_depth)
    config = config_from_state_dict(state_dict, metric=metric, max_depth=max_depth, source=str(path))
    return Checkpoint(config, from_upstream_layout(state_dict, config, str(path)), str(path))


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
        family = "Video Depth Anything" if video else "Depth-Anything V2"
        raise UserError(f"{checkpoint.source}: tensor shapes do not fit a {family} "
                        f"{checkpoint.config.encoder}: {detail[:200]}") from None
    return model.requires_grad_(False).eval()
