"""Relative or metric, the metric range, the family and so the output kind: from a model name, a file name, a
config.json or a file's key names, before any weights load.

The weights of both kinds are shaped identically, so the tensors cannot tell. Upstream's convention is the file
name (`metric` in it, and the training set that fixes `max_depth`); transformers' is `config.json`; a catalogue
name knows its row. The ranges themselves live in the catalogue (`METRIC_DATASETS`), nowhere else.
"""

import json
import struct
from pathlib import Path

from dav2_cli.errors import UsageError, UserError
from dav2_cli.weights.catalog import (CATALOGUE, DA3_FAMILY, DAV2_FAMILY, DISTILL_FAMILY, METRIC_DATASET_HINT,
                                      VIDEO_FAMILY, metric_dataset, output_kind)
from dav2_cli.weights.da3_layout import da3_metric, is_da3_keys
from dav2_cli.weights.hf_layout import read_hf_config
from dav2_cli.weights.locations import cached_path
from dav2_cli.weights.lookup import resolve, spec_for
from dav2_cli.weights.nested_backbone import is_nested_backbone


_WITHOUT_MAX_DEPTH = {VIDEO_FAMILY: "metric VDA outputs metres directly, relative VDA has no unit",
                      DA3_FAMILY: "metric DA3 gives metres from the focal length, mono DA3 has no unit"}


def refuse_max_depth(model, max_depth: float | None, family: str = VIDEO_FAMILY) -> None:
    """--max-depth with a VDA or DA3 `model` (a name or file), whichever way it was recognised, is this usage
    error."""
    if max_depth is not None:
        raise UsageError(f"{model}: --max-depth applies to metric {DAV2_FAMILY} models only; {family} takes "
                         f"none ({_WITHOUT_MAX_DEPTH[family]})")


def metric_from_video_name(path: Path, max_depth: float | None) -> bool:
    refuse_max_depth(path, max_depth)
    return "metric" in path.name.lower()


def metric_from_name(path: Path, max_depth: float | None) -> tuple[bool, float | None]:
    """Upstream's rule: only the file name says a checkpoint is metric, and which dataset sets its range."""
    if "metric" not in path.name.lower():
        if max_depth is not None:  # the command line alone shows it: a usage error
            raise UsageError(f"{path}: --max-depth applies to metric checkpoints only, and this file's name does "
                             f"not say 'metric' (upstream's convention)")
        return False, None
    if max_depth is not None:
        return True, float(max_depth)
    dataset = metric_dataset(path.name)
    if dataset is None:
        raise UserError(f"{path}: a metric checkpoint of unknown training data; pass --max-depth "
                        f"({METRIC_DATASET_HINT})")
    return True, dataset.max_depth


def checkpoint_kind(path: Path, max_depth: float | None) -> tuple[bool, float | None]:
    """(metric?, max_depth) of a checkpoint on disk, from its config.json or its name, without reading weights.

    HuggingFace's form (a folder, or a .safetensors file) says so in a config.json beside the weights; without
    one, and for upstream's .pth files, the file name decides.
    """
    if not (path.is_dir() or path.suffix.lower() == ".safetensors"):
        if "video_depth_anything" in path.name.lower():  # upstream's VDA names; their metric kind gives metres
            return metric_from_video_name(path, max_depth), None
        return metric_from_name(path, max_depth)
    weights = path / "model.safetensors" if path.is_dir() else path
    if is_da3_keys(_safetensors_keys(weights)):
        refuse_max_depth(path, max_depth, DA3_FAMILY)
        return da3_metric(weights), None
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
                        f"({METRIC_DATASET_HINT})")
    return metric, max_depth


def model_kind(path_or_name, max_depth: float | None = None) -> tuple[bool, float | None]:
    """(metric?, max_depth) of a model name or checkpoint, known before anything is loaded or downloaded."""
    spec = spec_for(path_or_name)
    if spec is None:
        return checkpoint_kind(resolve(path_or_name, download=False), max_depth)
    if spec.family in _WITHOUT_MAX_DEPTH:
        refuse_max_depth(spec.name, max_depth, spec.family)
    elif max_depth is not None and spec.kind != "metric":
        raise UsageError(f"{spec.name}: --max-depth applies to metric {DAV2_FAMILY} models only, and this one is "
                         f"relative")
    return spec.kind == "metric", (max_depth if max_depth is not None else spec.max_depth)


def model_family(path_or_name) -> str:
    """The family an output's metadata names, known before anything loads: a model name's row; for a file, the
    row it is the cached copy of, else what its layout says (a VDA file by upstream's name, a chunked backbone by
    its keys). A file in DA-V2's layout that no row caches is called DA-V2: its tensors cannot tell more."""
    spec = spec_for(path_or_name)
    if spec is not None:
        return spec.family
    path = Path(str(path_or_name)).expanduser()
    if not path.exists():
        return DAV2_FAMILY  # the loader says what is wrong with it
    for row in CATALOGUE:
        cached = cached_path(row)
        if cached is not None and cached.resolve() == path.resolve():
            return row.family
    if "video_depth_anything" in path.name.lower():
        return VIDEO_FAMILY
    weights = path / "model.safetensors" if path.is_dir() else path
    keys = _safetensors_keys(weights) if weights.suffix.lower() == ".safetensors" else []
    if is_nested_backbone(keys):
        return DISTILL_FAMILY
    if is_da3_keys(keys):
        return DA3_FAMILY
    return DAV2_FAMILY


def model_output_kind(path_or_name, max_depth: float | None = None) -> str:
    """What a model's raw numbers are (catalog.output_kind), known before anything loads."""
    metric, _ = model_kind(path_or_name, max_depth)
    return output_kind(model_family(path_or_name), metric)


def _safetensors_keys(path: Path) -> list[str]:
    """A safetensors file's tensor names from its header alone (8-byte length, then JSON); [] if unreadable."""
    try:
        with open(path, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(min(length, 100 << 20)))
    except (OSError, ValueError, struct.error):
        return []
    return [key for key in header if key != "__metadata__"] if isinstance(header, dict) else []
