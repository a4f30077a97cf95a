"""The frame loop of `dav2 video`: the selected frames read, marked at scene cuts, and streamed through the model.

A job makes one to three passes over the same selection: a fit for --align-to on one frame, a range for
global normalisation, then the depth it writes. Each is the one pipeline (pipeline.py) with a progress bar; each
stops at the first signal, leaving the caller to say what was kept.
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from dav2_cli.depth.sky import DEFAULT_SKY
from dav2_cli.errors import UserError
from dav2_cli.jobs.measure import Measure
from dav2_cli.jobs.options import is_video_model, note
from dav2_cli.media.frame_sequence import SequenceReader
from dav2_cli.media.video_probe import VideoInfo
from dav2_cli.media.video_read import FrameReader
from dav2_cli.media.video_selection import FrameSelection
from dav2_cli.outputs import pictures
from dav2_cli.outputs.range_tracker import RangeTracker
from dav2_cli.pipeline import Frame, PerImageDepth, run_pipeline
from dav2_cli.runtime.interrupts import GracefulStop


@dataclass(frozen=True)
class Passes:
    """How every pass runs: the model's input size, frames per batch, scene cuts, whether to show progress, and
    what becomes of a sky-head model's sky (depth/sky.py)."""

    input_size: int
    batch_size: int
    scene_cuts: bool = True
    progress: bool = False
    sky: str = DEFAULT_SKY


def open_reader(info: VideoInfo, selection: FrameSelection) -> FrameReader | SequenceReader:
    """A video file's frames, or a frame folder's images read as one video."""
    kind = SequenceReader if info.path.is_dir() else FrameReader
    return kind(info.path, start=selection.start, end=selection.end, every=selection.every)


def depth_stage(model, info: VideoInfo, sky: str = DEFAULT_SKY):
    """What turns the video's frames into depth: Video Depth Anything over windows of frames (consistent across
    them), or a per-image model one batch at a time."""
    if is_video_model(model):
        from dav2_cli.depth.temporal_windows import TemporalDepth

        return TemporalDepth(model, image_hw=(info.height, info.width), notify=note)
    return PerImageDepth(model, sky)


def _frames(reader: FrameReader | SequenceReader, scene_cuts: bool):
    """The reader's frames, each marked when it starts a new scene (when `scene_cuts`); closes the reader."""
    from dav2_cli.depth.scene_cuts import SceneCutDetector

    detector = SceneCutDetector() if scene_cuts else None
    try:
        for index, image in reader:
            yield Frame(index, image, cut=detector is not None and detector.is_cut(image))
    finally:
        reader.close()


def run_pass(model, info: VideoInfo, reader, consume: Callable[[Frame, np.ndarray], None], passes: Passes,
             stop: GracefulStop, *, label: str, total: int | None) -> None:
    """Every frame of `reader` through the model into `consume`, with a progress bar; closes the reader."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit="frame", file=sys.stderr, disable=not passes.progress,
              dynamic_ncols=True, smoothing=0.1) as bar:
        def counted(frame, depth_hw):
            consume(frame, depth_hw)
            bar.update()

        run_pipeline(_frames(reader, passes.scene_cuts), depth_stage(model, info, passes.sky), counted,
                     input_size=passes.input_size, batch_size=passes.batch_size, stop=stop)


def no_frame_error(reader, info: VideoInfo) -> UserError:
    return UserError(reader.error or f"{info.path}: no frame in the selected range could be decoded")


def measure_range(model, info: VideoInfo, selection: FrameSelection, measure: Measure, passes: Passes, mode: str,
                  stop: GracefulStop, total: int | None) -> tuple[float, float] | None:
    """First pass for one range over the whole selection; None when stopped by a signal before any frame.

    Pictures take the widest of the frames' 1st..99th percentile ranges (so a few extreme pixels do not
    flatten the rest); gray16 (`mode` "minmax") takes the finite min/max, so no value is clipped.
    """
    percentiles = RangeTracker("ema", alpha=1.0)  # alpha 1: exactly each frame's own percentiles
    lows, highs = [], []

    def consume(frame, depth_hw):
        depth_hw = measure.frame_values(depth_hw, str(info.path), frame.key)
        lo, hi = pictures.depth_range(depth_hw) if mode == "minmax" else percentiles.update(depth_hw)
        lows.append(lo)
        highs.append(hi)

    reader = open_reader(info, selection)
    run_pass(model, info, reader, consume, passes, stop, label="pass 1/2 (range)", total=total)
    if stop.requested:
        return None
    if not lows:
        raise no_frame_error(reader, info)
    return float(min(lows)), float(max(highs))


class _FitMade(Exception):
    """The fit frame's depth has been seen: the rest of the fitting pass is not needed."""


def fit_on_frame(model, info: VideoInfo, measure: Measure, index: int, selection: FrameSelection, passes: Passes,
                 stop: GracefulStop, align_to: str) -> bool:
    """--align-to on a video: fit once on source frame `index` (the first its points name), before any output.

    Frames before it are written before it is decoded in the main pass, so its depth is computed first. A
    per-image model's depth of a frame does not depend on the others, so the frame runs alone. Video Depth
    Anything's does (its window, and each window's alignment to the one before), so the main pass's own frames
    run from its first until `index` comes out: the fit sees exactly the depth that will be written.
    Returns False when a signal stopped it.
    """
    temporal = is_video_model(model)
    if temporal and not selection.includes(index):
        raise UserError(f"{align_to}: its points are for frame {index}, which this run does not write; with a "
                        f"video model a frame's depth depends on the frames around it, so fit on a frame the run "
                        f"writes (--start/--end/--every choose them)")

    def consume(frame, depth_hw):
        if frame.key == index:
            measure.conversion(depth_hw, f"{info.path} frame {index}", frame.key)
            raise _FitMade

    if temporal:  # the main pass's frames, scene cuts and batches
        reader, fit_passes = open_reader(info, selection), replace(passes, progress=False)
    else:
        reader, fit_passes = open_reader(info, FrameSelection(index, index + 1, 1)), replace(
            passes, batch_size=1, scene_cuts=False, progress=False)
    try:
        run_pass(model, info, reader, consume, fit_passes, stop, label="fit", total=None)
    except _FitMade:
        pass
    if stop.requested:
        return False
    if measure.fixed is None:
        raise UserError(f"{align_to}: its points are for frame {index}, which {info.path} does not have (frames "
                        f"count from 0)")
    return True
