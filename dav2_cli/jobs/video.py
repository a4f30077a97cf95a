"""`dav2 video`: depth for every frame of a video, streamed through the one pipeline, never a broken output file.

A video can be far longer than memory, so its frames go through pipeline.py's three stages (decode and prepare,
the model on batches, render and encode), and at most a few batches exist at once whatever the video's length.

Everything that can go wrong keeps the user's work usable: a damaged file yields depth for what decodes and
one line saying where it stopped; Ctrl-C or SIGTERM stops reading, finishes the frames in flight and closes a
valid, shorter video (with audio cut to match); any other failure leaves no file under the output name.
"""

import contextlib
import math
import sys
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from dav2_cli.depth import alignment as align

from dav2_cli.outputs import formats, metadata, pictures
from dav2_cli.outputs.range_tracker import RangeTracker
from dav2_cli.errors import EXIT_FAILED, EXIT_OK, UsageError, UserError
from dav2_cli.runtime.interrupts import GracefulStop
from dav2_cli.runtime.memory import fitting_backend
from dav2_cli.outputs.atomic import STDIO, write_with_sidecars, written_first
from dav2_cli.media.frame_sequence import SequenceReader, frame_file_name, frame_files, probe_sequence
from dav2_cli.media.video_probe import VideoInfo, parse_rate, probe
from dav2_cli.media.video_read import FrameReader
from dav2_cli.media.video_write import VideoWriter
from dav2_cli.jobs.stereo import output_tail
from dav2_cli.pipeline import DEFAULT_BATCH_SIZE, Frame, PerImageDepth, run_pipeline
from dav2_cli.jobs.measure import Measure, plan_measure
from dav2_cli.jobs.options import DepthOptions, is_video_model, load_job_model, note, report
from dav2_cli.jobs.plan import plan_output

VIDEO_FORMATS = ("color", "gray")  # a normal, watchable video


@dataclass(frozen=True)
class VideoOptions:
    """What to take from the video and how to run the pipeline; times are seconds of the source."""

    start: float = 0.0
    end: float | None = None
    max_frames: int | None = None
    every: int = 1
    fps: str | None = None  # rate for files that state none (or to override theirs), e.g. "30000/1001"
    normalize: str | None = None  # None: ema for pictures, global for gray16
    batch_size: int = DEFAULT_BATCH_SIZE
    audio: bool = True
    progress: bool = False
    overwrite: bool = False  # replace the frames an earlier run left in the frame folder
    name_outputs: bool = False  # say on stderr what was written
    scene_cuts: bool = True  # find hard cuts: no temporal window or brightness range is carried across one


@dataclass(frozen=True)
class Selection:
    """Source frames `start, start+every, ...` below `end` (None: to the end of the file)."""

    start: int
    end: int | None
    every: int

    def count(self, frame_count: int | None) -> int | None:
        """How many frames the selection yields from a file of `frame_count` frames (None: unknown)."""
        limits = [limit for limit in (self.end, frame_count) if limit is not None]
        if not limits:
            return None
        return max(0, -(-(min(limits) - self.start) // self.every))  # ceil division

    def includes(self, index: int) -> bool:
        """Whether source frame `index` is one the selection yields."""
        return (index >= self.start and (self.end is None or index < self.end)
                and (index - self.start) % self.every == 0)


def select_frames(fps: Fraction, video: VideoOptions) -> Selection:
    """Seconds → frame indices: frame i is shown at i/fps, so --start keeps frames at or after it, --end
    those before it. Decimal seconds are read exactly (0.1 s is 1/10, not a float just above it)."""
    start = math.ceil(Fraction(str(video.start)) * fps)
    end = None if video.end is None else math.ceil(Fraction(str(video.end)) * fps)
    if end is not None and end <= start:
        raise UsageError(f"--end {video.end:g} s selects no frames after --start {video.start:g} s")
    if video.max_frames is not None:
        last_needed = start + (video.max_frames - 1) * video.every + 1
        end = last_needed if end is None else min(end, last_needed)
    return Selection(start, end, video.every)


# ------------------------------------------------------------------------------------------ output planning


def check_combination(fmt: str, options: DepthOptions, video: VideoOptions) -> str:
    """The normalisation mode to use, after refusing options that contradict --format."""
    if options.side_by_side and fmt not in VIDEO_FORMATS:
        raise UsageError(f"--side-by-side needs a picture video (--format color or gray), not {fmt}")
    if fmt in formats.FILE_PER_FRAME_FORMATS:
        if video.normalize is not None:
            raise UsageError(f"--normalize applies to pictures; --format {fmt} stores the raw values")
        return "none"
    if fmt == "gray16":
        if video.normalize not in (None, "global"):
            raise UsageError("--format gray16 stores depth on one range for the whole video (two passes); "
                            "it cannot use --normalize " + video.normalize)
        if options.invert:
            raise UsageError("--format gray16 stores the depth values themselves (see its .json); "
                            "--invert applies to pictures")
        return "global"
    if options.stereo is not None and video.normalize is not None:
        raise UsageError("--normalize sets a depth picture's brightness; --stereo keeps its depth steady over time "
                         "itself")
    return video.normalize or "ema"


# ------------------------------------------------------------------------------------------ where frames go


class _PictureVideo:
    """Colour or 8-bit gray depth pictures (optionally beside the frame) encoded into a video."""

    def __init__(self, out: Path, info: VideoInfo, fps: Fraction, measure: Measure,
                 tracker: RangeTracker, audio_from: Path | None, audio_start: Fraction):
        options = measure.options
        self._options, self._measure, self._tracker, self._name = options, measure, tracker, str(info.path)
        width = info.width * (2 if options.side_by_side else 1)
        self._writer = VideoWriter(out, width=width, height=info.height, fps=fps, audio_from=audio_from,
                                   audio_start=audio_start)

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def write(self, frame: Frame, depth_hw: np.ndarray) -> None:
        options, frame_bgr = self._options, frame.image
        if frame.cut:  # a new scene's depth has its own range: the smoothed one starts again
            self._tracker.reset()
        depth_hw = self._measure.frame_values(depth_hw, self._name, frame.key)
        picture = pictures.to_visual(depth_hw, options.fmt, cmap=options.cmap, invert=options.invert,
                                   metric=self._measure.distances, value_range=self._tracker.update(depth_hw))
        if options.side_by_side:
            picture = pictures.side_by_side(frame_bgr, picture)
        elif picture.ndim == 2:
            picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
        self._writer.write(picture)

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()


class _Gray16Video:
    """Depth values on one fixed range as lossless 16-bit video, with a JSON sidecar to map them back."""

    def __init__(self, out: Path, info: VideoInfo, fps: Fraction, value_range: tuple[float, float],
                 measure: Measure, video_keys: dict):
        self._range, self._measure, self._info, self._video_keys = value_range, measure, info, video_keys
        self._sidecar = Path(f"{out}{formats.SIDECAR_SUFFIX}")
        self._writer = VideoWriter(out, width=info.width, height=info.height, fps=fps, pix_fmt_in="gray16le")

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def write(self, frame: Frame, depth_hw: np.ndarray) -> None:
        # v grows with the stored value (depth = lo + v / 65535 * (hi - lo)); pixels with no finite depth go to
        # the far end: metres (beyond infinity after --align-to, or a saturated metric model) at 65535
        depth_hw = self._measure.frame_values(depth_hw, str(self._info.path), frame.key)
        distances = self._measure.distances
        self._writer.write(pictures.to_visual(depth_hw, "gray16", value_range=self._range, metric=distances,
                                              invert=pictures.invert_for_values(distances)))

    def close(self) -> None:
        """The sidecar is written before the video is renamed into place, so the video never exists without
        the only key to its values; if the video cannot be published, the sidecar is put back as it was (an
        earlier run's video keeps its own)."""
        lo, hi = self._range
        measure, options = self._measure, self._measure.options
        description = metadata.describe(
            model=str(options.model), metric=measure.metric, input_size=options.input_size, width=self._info.width,
            height=self._info.height, source=str(self._info.path), max_depth=measure.max_depth,
            conversion=measure.fixed)
        sidecar = {**description, **self._video_keys, "frames": self.frames_written, "lo": lo, "hi": hi,
                   "decode": "depth = lo + v / 65535 * (hi - lo), v the 16-bit pixel value"}

        with contextlib.ExitStack() as written:  # put back as it was if the video is not published
            self._writer.close(before_publish=lambda: written.enter_context(
                written_first(self._sidecar, metadata.sidecar(sidecar))))

    def abort(self) -> None:
        self._writer.abort()


class _FrameFolder:
    """One file per frame, `frame_000000.<ext>` numbered in output order from 0: raw float32 depth (an npy of
    metres with its `.json` beside it) or a point cloud."""

    def __init__(self, out: Path, info: VideoInfo, measure: Measure):
        self._folder, self._measure, self._name = out, measure, str(info.path)
        self._extension = formats.extension_for(measure.options.fmt)
        self.frames_written = 0
        # an earlier run's frames (the plan allowed this with --overwrite) go before the first new one is
        # written, so an interrupted run leaves only its own frames, never a mix of two runs
        for stale in frame_files(out):
            stale.unlink(missing_ok=True)

    def write(self, frame: Frame, depth_hw: np.ndarray) -> None:
        path = self._folder / frame_file_name(self.frames_written, self._extension)
        outputs = self._measure.encode(depth_hw, frame.image, name=f"{self._name} frame {frame.key}",
                                       destination=str(path), frame=frame.key)
        write_with_sidecars(path, outputs)
        self.frames_written += 1

    def close(self) -> None:
        if self.frames_written == 0:
            raise UserError(f"{self._folder}: no frames to write")

    def abort(self) -> None:
        """Frames already written are complete files, so they stay."""


# ------------------------------------------------------------------------------------------ the job


def _progress_bar(show: bool, total: int | None, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="frame", file=sys.stderr, disable=not show,
                dynamic_ncols=True, smoothing=0.1)


def _open_reader(info: VideoInfo, selection: Selection) -> FrameReader | SequenceReader:
    """A video file's frames, or a frame folder's images read as one video."""
    kind = SequenceReader if info.path.is_dir() else FrameReader
    return kind(info.path, start=selection.start, end=selection.end, every=selection.every)


def depth_stage(model, info: VideoInfo):
    """What turns the video's frames into depth: Video Depth Anything over windows of frames (consistent across
    them), or a per-image model one batch at a time."""
    if is_video_model(model):
        from dav2_cli.depth.temporal_windows import TemporalDepth

        return TemporalDepth(model, image_hw=(info.height, info.width), notify=note)
    return PerImageDepth(model)


def _frames(reader: FrameReader | SequenceReader, scene_cuts: bool):
    """The reader's frames, each marked when it starts a new scene (when `scene_cuts`); closes the reader."""
    from dav2_cli.depth.scene_cuts import SceneCutDetector

    detector = SceneCutDetector() if scene_cuts else None
    try:
        for index, image in reader:
            yield Frame(index, image, cut=detector is not None and detector.is_cut(image))
    finally:
        reader.close()


def _measure_range(model, info, selection, measure, video, mode, stop, total) -> tuple[float, float] | None:
    """First pass for one range over the whole selection; None when stopped by a signal before any frame.

    Pictures take the widest of the frames' 1st..99th percentile ranges (so a few extreme pixels do not
    flatten the rest); gray16 takes the finite min/max, so no value is clipped.
    """
    percentiles = RangeTracker("ema", alpha=1.0)  # alpha 1: exactly each frame's own percentiles
    lows, highs = [], []

    def consume(frame, depth_hw):
        depth_hw = measure.frame_values(depth_hw, str(info.path), frame.key)
        lo, hi = pictures.depth_range(depth_hw) if mode == "minmax" else percentiles.update(depth_hw)
        lows.append(lo)
        highs.append(hi)
        bar.update()

    reader = _open_reader(info, selection)
    with _progress_bar(video.progress, total, "pass 1/2 (range)") as bar:
        run_pipeline(_frames(reader, video.scene_cuts), depth_stage(model, info), consume,
                     input_size=measure.options.input_size, batch_size=video.batch_size, stop=stop)
    if stop.requested:
        return None
    if not lows:
        raise UserError(reader.error or f"{info.path}: no frame in the selected range could be decoded")
    return float(min(lows)), float(max(highs))


@dataclass(frozen=True)
class VideoJob:
    """A checked plan for one video: what to read, where to write, and how to normalise."""

    info: VideoInfo
    out: Path
    selection: Selection
    normalize: str  # ema, frame, global, or none for raw formats
    total: int | None  # frames the output will get if the file is intact (None: unknown length)
    measure: Measure  # what the values written mean: the model's, or meters after --near/--far or --align-to


def plan_video(source: str, output: str | None, options: DepthOptions, video: VideoOptions) -> VideoJob:
    """Check everything that can be checked before the model loads, so mistakes fail in a second."""
    if source == STDIO:
        raise UsageError("video input cannot come from stdin (-); give a file name")
    source_path = Path(source)
    out = plan_output(source_path, output, options.fmt, overwrite=video.overwrite, tail=output_tail(options))
    normalize = check_combination(options.fmt, options, video)
    measure = plan_measure(options)
    if source_path.is_dir():
        info = probe_sequence(source_path, parse_rate(video.fps) if video.fps is not None else None)
    else:
        info = probe(source_path, fps_override=video.fps)
    selection = select_frames(info.fps, video)
    total = selection.count(info.frame_count)
    if total == 0:
        length = f"{float(info.frame_count / info.fps):.3f} s, {info.frame_count} frames"
        raise UserError(f"{source}: --start {video.start:g} s is past the end of the video ({length})")
    return VideoJob(info, out, selection, normalize, total, measure)


def run_video(source: str, output: str | None, options: DepthOptions, video: VideoOptions) -> int:
    job = plan_video(source, output, options, video)
    options = replace(options, backend=fitting_backend(options.model, options.device, options.dtype, options.backend,
                                                       options.input_size, video.batch_size,
                                                       [(job.info.height, job.info.width)], verbose=options.verbose))
    model = load_job_model(options)
    with GracefulStop() as stop:
        return depth_video(model, job, options, video, stop)


def depth_video(model, job: VideoJob, options: DepthOptions, video: VideoOptions, stop: GracefulStop) -> int:
    """Run a planned job with a loaded model; returns the exit code."""
    info, out, selection, measure = job.info, job.out, job.selection, job.measure
    measure.use_model(model.config)
    fit_frame = align.first_frame_with_points(measure.points) if measure.points else None
    if fit_frame is not None and not _fit_on_frame(model, info, measure, fit_frame, selection, video, stop):
        return _finish_stopped(stop, out, 0)
    value_range = None
    if job.normalize == "global":
        mode = "minmax" if options.fmt == "gray16" else "percentiles"
        value_range = _measure_range(model, info, selection, measure, video, mode, stop, job.total)
        if value_range is None:
            return _finish_stopped(stop, out, 0)
    reader = _open_reader(info, selection)
    try:
        sink = _open_sink(out, info, info.fps / selection.every, measure, video, job.normalize, value_range,
                          selection)
    except BaseException:
        reader.close()
        raise
    try:
        label = "depth" if value_range is None else "pass 2/2 (depth)"
        with _progress_bar(video.progress, job.total, label) as bar:
            def consume(frame, depth_hw):
                sink.write(frame, depth_hw)
                bar.update()

            run_pipeline(_frames(reader, video.scene_cuts), depth_stage(model, info), consume,
                         input_size=options.input_size, batch_size=video.batch_size, stop=stop)
        if sink.frames_written == 0:
            sink.abort()
            if stop.requested:
                return _finish_stopped(stop, out, 0)
            raise UserError(reader.error or f"{info.path}: no frame in the selected range could be decoded")
        sink.close()
    except BaseException:
        sink.abort()
        raise
    if stop.requested:
        return _finish_stopped(stop, out, sink.frames_written)
    if video.name_outputs:
        note(f"wrote {sink.frames_written} frames into {out}" if options.fmt in formats.FILE_PER_FRAME_FORMATS
             else f"wrote {out} ({sink.frames_written} frames)")
    if reader.error:
        report(f"{reader.error}; {out} holds the {sink.frames_written} frames before it")
        return EXIT_FAILED
    return EXIT_OK


class _FitMade(Exception):
    """The fit frame's depth has been seen: the rest of the fitting pass is not needed."""


def _fit_on_frame(model, info: VideoInfo, measure: Measure, index: int, selection: Selection, video: VideoOptions,
                  stop: GracefulStop) -> bool:
    """--align-to on a video: fit once on source frame `index` (the first its points name), before any output.

    Frames before it are written before it is decoded in the main pass, so its depth is computed first. A
    per-image model's depth of a frame does not depend on the others, so the frame runs alone. Video Depth
    Anything's does (its window, and each window's alignment to the one before), so the main pass's own frames
    run from its first until `index` comes out: the fit sees exactly the depth that will be written.
    Returns False when a signal stopped it.
    """
    temporal = is_video_model(model)
    if temporal and not selection.includes(index):
        raise UserError(f"{measure.options.space.align_to}: its points are for frame {index}, which this run does "
                        f"not write; with a video model a frame's depth depends on the frames around it, so "
                        f"fit on a frame the run writes (--start/--end/--every choose them)")

    def consume(frame, depth_hw):
        if frame.key == index:
            measure.conversion(depth_hw, f"{info.path} frame {index}", frame.key)
            raise _FitMade

    if temporal:
        source, batch_size = _frames(_open_reader(info, selection), video.scene_cuts), video.batch_size
    else:
        source, batch_size = _open_reader(info, Selection(index, index + 1, 1)), 1
    try:
        run_pipeline(source, depth_stage(model, info), consume, input_size=measure.options.input_size,
                     batch_size=batch_size, stop=stop)
    except _FitMade:
        pass
    if stop.requested:
        return False
    if measure.fixed is None:
        raise UserError(f"{measure.options.space.align_to}: its points are for frame {index}, which {info.path} "
                        f"does not have (frames count from 0)")
    return True


def _open_sink(out, info, fps, measure, video, normalize, value_range, selection):
    fmt = measure.options.fmt
    if fmt in formats.FILE_PER_FRAME_FORMATS:
        return _FrameFolder(out, info, measure)
    if fmt == "gray16":
        video_keys = {"fps": f"{fps.numerator}/{fps.denominator}", "first_source_frame": selection.start,
                      "every": selection.every}
        return _Gray16Video(out, info, fps, value_range, measure, video_keys)
    audio_from = info.path if video.audio and info.has_audio else None
    if measure.options.stereo is not None:
        from dav2_cli.jobs.stereo_video import StereoVideo

        video_keys = {"fps": f"{fps.numerator}/{fps.denominator}", "first_source_frame": selection.start,
                      "every": selection.every}
        return StereoVideo(out, info, fps, measure, audio_from, Fraction(selection.start) / info.fps, video_keys)
    tracker = RangeTracker(normalize, global_range=value_range)
    return _PictureVideo(out, info, fps, measure, tracker, audio_from, Fraction(selection.start) / info.fps)


def _finish_stopped(stop: GracefulStop, out: Path, frames: int) -> int:
    if frames:
        print(f"dav2: stopped by signal; {out} holds the first {frames} frames", file=sys.stderr)
    else:
        print("dav2: stopped by signal before any frame was written; no output", file=sys.stderr)
    return stop.exit_code
