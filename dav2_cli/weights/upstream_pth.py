"""Upstream's `.pth` files (DA-V2 layout): read safely, and the architecture read off the tensors.

Weights are data and must never run code: `.pth` files are read only through `torch.load(weights_only=True)`.
The architecture is read off the tensors (width, depth, channels), as upstream's files carry no config; the
VDA and transformers readers reuse `config_from_state_dict` once their keys are in upstream's layout.
"""

import re
import warnings
import zipfile
import zlib
from pathlib import Path

import torch

from dav2_cli.errors import UserError
from dav2_cli.model import DepthAnythingV2, ModelConfig
from dav2_cli.model.config import TAPS_BY_BLOCKS
from dav2_cli.weights.keys import rename_strictly, upstream_key


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


def from_upstream_layout(state_dict: dict, config: ModelConfig, source: str) -> dict:
    """Rename upstream's DA-V2 keys to this package's."""
    return rename_strictly(state_dict, DepthAnythingV2, config, upstream_key, "Depth-Anything V2", source)
