"""`dav2 video`: depth for every frame of a video, streamed through the one pipeline, never a broken output file.

A video can be far longer than memory, so its frames go through pipeline.py's three stages (decode and prepare,
the model on batches, render and encode), and at most a few batches exist at once whatever the video's length.
This module holds the job's plan (what the command line asks, checked before the model loads) and its order of
passes; the frame loop is video_passes.py, the outputs video_sinks.py.

Everything that can go wrong keeps the user's work usable: a damaged file yields depth for what decodes and
one line saying where it stopped; Ctrl-C or SIGTERM stops reading, finishes the frames in flight and closes a
valid, shorter video (with audio cut to match); any other failure leaves no file under the output name.
"""

import math
import sys
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from dav2_cli.depth import alignment as align
from dav2_cli.errors import EXIT_FAILED, EXIT_OK, UsageError, UserError
from dav2_cli.jobs.measure import Measure, plan_measure
from dav2_cli.jobs.options import DepthOptions, load_job_model, note, report
from dav2_cli.jobs.plan import plan_output
from dav2_cli.jobs.stereo import output_tail
from dav2_cli.jobs.video_passes import Passes, fit_on_frame, measure_range, no_frame_error, open_reader, run_pass
from dav2_cli.jobs.video_sinks import Look, open_sink
from dav2_cli.media.frame_sequence import probe_sequence
from dav2_cli.media.video_probe import VideoInfo, parse_rate, probe
from dav2_cli.media.video_selection import FrameSelection
from dav2_cli.outputs import formats
from dav2_cli.outputs.atomic import STDIO
from dav2_cli.pipeline import DEFAULT_BATCH_SIZE
from dav2_cli.runtime.interrupts import GracefulStop
from dav2_cli.runtime.memory_fit import fitting_backend

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


def select_frames(fps: Fraction, video: VideoOptions) -> FrameSelection:
    """Seconds → frame indices: frame i is shown at i/fps, so --start keeps frames at or after it, --end
    those before it. Decimal seconds are read exactly (0.1 s is 1/10, not a float just above it)."""
    start = math.ceil(Fraction(str(video.start)) * fps)
    end = None if video.end is None else math.ceil(Fraction(str(video.end)) * fps)
    if end is not None and end <= start:
        raise UsageError(f"--end {video.end:g} s selects no frames after --start {video.start:g} s")
    if video.max_frames is not None:
        last_needed = start + (video.max_frames - 1) * video.every + 1
        end = last_needed if end is None else min(end, last_needed)
    return FrameSelection(start, end, video.every)


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


@dataclass(frozen=True)
class VideoJob:
    """A checked plan for one video: what to read, where to write, and how to normalise."""

    info: VideoInfo
    out: Path
    selection: FrameSelection
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
    passes = Passes(options.input_size, video.batch_size, video.scene_cuts, video.progress, options.sky)
    measure.use_model(model.config)
    fit_frame = align.first_frame_with_points(measure.points) if measure.points else None
    if fit_frame is not None and not fit_on_frame(model, info, measure, fit_frame, selection, passes, stop,
                                                  options.space.align_to):
        return _finish_stopped(stop, out, 0)
    value_range = None
    if job.normalize == "global":
        mode = "minmax" if options.fmt == "gray16" else "percentiles"
        value_range = measure_range(model, info, selection, measure, passes, mode, stop, job.total)
        if value_range is None:
            return _finish_stopped(stop, out, 0)
    reader = open_reader(info, selection)
    look = Look(options.fmt, options.cmap, options.invert, options.side_by_side)
    try:
        sink = open_sink(out, info, selection, look, measure, normalize=job.normalize, value_range=value_range,
                         audio=video.audio, model_name=str(options.model), input_size=options.input_size,
                         stereo=options.stereo is not None)
    except BaseException:
        reader.close()
        raise
    try:
        label = "depth" if value_range is None else "pass 2/2 (depth)"
        run_pass(model, info, reader, sink.write, passes, stop, label=label, total=job.total)
        if sink.frames_written == 0:
            sink.abort()
            if stop.requested:
                return _finish_stopped(stop, out, 0)
            raise no_frame_error(reader, info)
        sink.close()
    except UserError:
        sink.abort()
        if not stop.requested:
            raise
        # A signal to the whole process group (a service manager stopping dav2) stops the encoder as well, so
        # its failure is the stop itself: the user asked for it, and it is reported as such
        kept = sink.frames_written if options.fmt in formats.FILE_PER_FRAME_FORMATS else 0
        return _finish_stopped(stop, out, kept, while_closing=True)
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


def _finish_stopped(stop: GracefulStop, out: Path, frames: int, *, while_closing: bool = False) -> int:
    if frames:
        print(f"dav2: stopped by signal; {out} holds the first {frames} frames", file=sys.stderr)
    elif while_closing:
        print(f"dav2: stopped by signal while {out} was being written, its encoder with it; no output",
              file=sys.stderr)
    else:
        print("dav2: stopped by signal before any frame was written; no output", file=sys.stderr)
    return stop.exit_code
