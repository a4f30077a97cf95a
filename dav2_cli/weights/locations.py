"""Where a catalogue model's weights may already be on disk, and where a download puts them.

Two caches hold them. dav2's own folder (`dav2_home()`) takes files by their upstream names, flat, so a user can
hand-place or copy one and read its path; earlier versions of dav2 downloaded there too. The HuggingFace cache
(`hf_hub_cache()`) is shared with transformers, diffusers and ComfyUI: its repo snapshots are read here by the
cache's documented layout (`models--org--name/snapshots/<commit>/<file>`, `refs/main` naming the current commit)
without importing huggingface_hub, so listing models and checking names stays cheap.

The variables are read at each call, not at import, so a test or an embedding program can change them.
"""

import os
from pathlib import Path

from dav2_cli.weights.catalog import ModelSpec


def _env_path(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else None


def _user_cache() -> Path:
    xdg = _env_path("XDG_CACHE_HOME")
    return xdg if xdg and xdg.is_absolute() else Path.home() / ".cache"  # XDG: a relative path is invalid


def dav2_home() -> Path:
    """dav2's folder: `$DAV2_HOME`, else `$XDG_CACHE_HOME/dav2`, else `~/.cache/dav2`."""
    return _env_path("DAV2_HOME") or _user_cache() / "dav2"


def hf_hub_cache() -> Path:
    """huggingface_hub's own rule: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`."""
    hub = _env_path("HF_HUB_CACHE")
    if hub:
        return hub
    hf_home = _env_path("HF_HOME")
    return hf_home / "hub" if hf_home else _user_cache() / "huggingface" / "hub"


def download_folder() -> Path:
    """Where a named model is downloaded to: `$DAV2_HOME` when the user set it (a plain file per model, where they
    asked), else the HuggingFace cache, where other tools find it and where theirs are found."""
    return _env_path("DAV2_HOME") or hf_hub_cache()


def hand_placed(spec: ModelSpec) -> Path:
    """The path a user may put a model's file at by hand (the offline message names it); its companion file, if
    the row has one, goes beside it."""
    return dav2_home() / spec.local_folder / spec.filename


def _companions(spec: ModelSpec) -> tuple[str, ...]:
    return (spec.companion,) if spec.companion else ()


def hf_snapshot(repo: str, *files: str) -> Path | None:
    """The newest snapshot of `repo` in the HuggingFace cache holding every one of `files`, preferring the one
    `refs/main` names; None when there is none."""
    folder = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    snapshots = folder / "snapshots"
    candidates = []
    try:
        candidates.append(snapshots / (folder / "refs" / "main").read_text().strip())
    except OSError:
        pass
    try:
        candidates += sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for snapshot in candidates:
        # is_file follows the cache's symlinks into blobs/, so a blob still downloading does not count
        if all((snapshot / name).is_file() for name in files):
            return snapshot
    return None


def cached_path(spec: ModelSpec) -> Path | None:
    """The model's weights if already on disk, in the lookup order (docs/offline.md):
    1. dav2's folder: `dav2_home()/<upstream file>` (hand-placed, or downloaded there);
    2. the HuggingFace cache: upstream's repo snapshot holding that file;
    3. the HuggingFace cache: the transformers copy (`-hf` repo: config.json + model.safetensors).
    """
    ours = hand_placed(spec)
    if ours.is_file() and all((ours.parent / name).is_file() for name in _companions(spec)):
        return ours
    upstream = hf_snapshot(spec.repo, spec.filename, *_companions(spec))
    if upstream:
        return upstream / spec.filename
    return hf_snapshot(spec.hf_repo, "config.json", "model.safetensors") if spec.hf_repo else None
