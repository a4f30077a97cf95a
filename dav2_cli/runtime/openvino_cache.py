"""OpenVINO's files on disk: one folder per converted model, holding its graph and OpenVINO's compiled blobs, the
whole kept within CACHE_BUDGET_BYTES.

A vits graph holds the model's float32 weights (~100 MB) and each precision's compiled blob about as much again
(vitl: ~1.3 GB each), so without a bound a few models and precisions grow the folder past a gigabyte. Each model's
files share one folder, so what is evicted is a whole model, least recently used first, and the model just used is
always kept, even alone over the budget. `dav2 info` reports the folder and its size; deleting it is always safe
(the next run converts again).
"""

import os
import shutil
from pathlib import Path

from dav2_cli.runtime import tuning_cache

CACHE_BUDGET_BYTES = 2 << 30  # graphs and compiled blobs together; documented in docs/offline-and-caches.md
USED_STAMP = "used"  # touched at each use: its time orders the folders for eviction


def folder() -> Path:
    return tuning_cache.cache_folder() / "openvino"


def model_folder(key: str) -> Path:
    """Where the model of this cache key keeps its graph (graph.xml, graph.bin) and compiled blobs (compiled/)."""
    return folder() / tuning_cache.key_digest(key)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(child.stat().st_size for child in path.rglob("*") if child.is_file())


def last_used(path: Path) -> float:
    stamp = path / USED_STAMP
    return (stamp if stamp.exists() else path).stat().st_mtime


def mark_used(entry: Path) -> None:
    try:
        entry.mkdir(parents=True, exist_ok=True)
        (entry / USED_STAMP).touch()
    except OSError:
        pass


def keep_within_budget(keep: Path | None = None, budget: int | None = None) -> None:
    """Evict the least recently used models' folders (and any stray file an older dav2 left) until the cache fits
    `budget`; `keep` stays whatever it weighs. Best effort: a folder another process is using may refuse."""
    budget = CACHE_BUDGET_BYTES if budget is None else budget
    try:
        entries = sorted(folder().iterdir(), key=last_used, reverse=True)
        sizes = {entry: size_of(entry) for entry in entries}
    except OSError:
        return
    total = sum(sizes.values())
    for entry in reversed(entries):  # oldest first
        if total <= budget:
            break
        if keep is not None and entry == keep:
            continue
        try:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            total -= sizes[entry]
        except OSError:
            pass


def summary() -> list[str]:
    """`dav2 info` with no file: where the caches are, what they weigh against the budget, how to clear them."""
    path, timings = folder(), tuning_cache.tuning_file()
    try:
        entries = list(path.iterdir()) if path.is_dir() else []
        used = sum(size_of(entry) for entry in entries)
    except OSError:
        entries, used = [], 0
    return [f"cache folder: {tuning_cache.cache_folder()}",
            f"timings: {timings} ({timings.stat().st_size if timings.is_file() else 0} bytes)",
            f"OpenVINO graphs and compiled blobs: {path} ({len(entries)} model(s), {used / 1e6:.0f} MB of a "
            f"{CACHE_BUDGET_BYTES / 1e6:.0f} MB budget, least recently used evicted first)",
            f"to clear: delete {path} and {timings} (safe: the next run converts and times again)"]


def remove_partial(path: Path) -> None:
    for partial in (path, path.with_suffix(".bin")):
        try:
            os.unlink(partial)
        except OSError:
            pass
