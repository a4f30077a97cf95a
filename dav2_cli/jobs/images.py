"""Jobs over images: plan where each result goes, run the model on batches, report, and decide the exit code.

A bad input is reported in one line and skipped so the rest still get done; only a problem that stops every
input (no model, an output location that refuses every write) ends the job early. `image` and `folder` share
one path through here, so both get the same guarantees: outputs appear whole or not at all, Ctrl-C and SIGTERM
finish the batch in hand, and `--skip-existing` resumes without rewriting anything finished.
"""

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dav2_cli.depth import sizing as prep

from dav2_cli.outputs import formats
from dav2_cli.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    UsageError,
    UserError,
)
from dav2_cli.runtime.interrupts import GracefulStop
from dav2_cli.runtime.memory_fit import fitting_backend
from dav2_cli.outputs.atomic import (
    STDIO,
    OutputStopped,
    prepare_output_folder,
    write_with_sidecars,
)
from dav2_cli.media.exif import focal_length_35mm
from dav2_cli.media.images import decode_image, image_header, max_megapixels, read_input_bytes
from dav2_cli.pipeline import Frame, PerImageDepth, run_pipeline
from dav2_cli.jobs.measure import Measure, plan_measure
from dav2_cli.jobs.stereo import output_tail
from dav2_cli.jobs.options import (
    VIDEO_MODEL_FOR_IMAGES,
    DepthOptions,
    is_video_model,
    load_job_model,
    note,
    report,
)
from dav2_cli.jobs.plan import (
    Item,
    default_folder_output,
    plan_folder,
    plan_image_outputs,
    take_shard,
)
from dav2_cli.jobs.paths import refuse_outputs_onto_inputs, unreadable_input


@dataclass(frozen=True)
class JobOptions:
    """How a job over many images is run: batching, which share of the inputs, what to skip, what to show."""

    batch_size: int = 1
    shard: tuple[int, int] | None = None  # (K, N), 1-based: this machine's share of the sorted inputs
    skip_existing: bool = False
    progress: bool = False
    name_outputs: bool = False  # one stderr line per file written
    ray: str | None = None  # --ray: a cluster's address, `auto`, or "" for a local one; None: this process
    ray_actors: int | None = None  # --ray-actors; None: jobs/ray_images.py decides


@dataclass
class Tally:
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0

    def line(self, stopped_by: str | None) -> str:
        counts = f"dav2: done {self.done}, skipped {self.skipped}, failed {self.failed}"
        if stopped_by is None:
            return counts
        left = self.total - self.done - self.skipped - self.failed
        return f"{counts}, {stopped_by} ({left} not done; rerun with --skip-existing to finish them)"


def run_images(inputs: list[str], output: str | None, options: DepthOptions,
               job: JobOptions = JobOptions()) -> int:
    pairs = plan_image_outputs(inputs, output, options.fmt, tail=output_tail(options))
    formats.check_side_by_side(options.fmt, options.side_by_side)
    measure = plan_measure(options)
    items = [Item(source, destination) for source, destination in pairs]
    measure.match_inputs([(item.name, item.source) for item in items])
    return run_items(items, measure, job, summary=False)


def run_folder(source: str, output: str | None, options: DepthOptions, job: JobOptions, *,
               recursive: bool = True) -> int:
    if job.ray is not None:
        from dav2_cli.jobs.ray_images import check_ray_installed

        check_ray_installed()
    options = replace(options, fmt=formats.canonical_format(options.fmt))
    source_path = Path(source)
    if not source_path.exists():
        raise UserError(f"{source}: no such file or folder")
    output_path = Path(output) if output is not None else default_folder_output(
        source_path, "_3d" if options.stereo is not None else "_depth")
    formats.check_side_by_side(options.fmt, options.side_by_side)
    measure = plan_measure(options)
    items, problems = plan_folder(source_path, output_path, options.fmt, recursive=recursive,
                                  tail=output_tail(options, ""))
    measure.match_inputs([(item.name, item.relative) for item in items])
    for problem in problems:
        report(problem)
    prepare_output_folder(output_path)
    return run_items(items, measure, job, summary=True, failed_before=len(problems))


def run_items(items: list[Item], measure: Measure, job: JobOptions, *, summary: bool,
              failed_before: int = 0) -> int:
    """Depth for each item of this job's shard, skipping finished ones when asked; prints the summary line.

    The model is loaded only when something is left to do, so a finished job resumes instantly.
    """
    max_megapixels()  # a bad DAV2_MAX_MEGAPIXELS is one error up front, not one per image
    refuse_outputs_onto_inputs(items)
    items = take_shard(items, job.shard)
    tally = Tally(total=len(items) + failed_before, failed=failed_before)
    todo = []
    for item in items:
        problem = unreadable_input(item.source)
        if problem:  # found in a stat, so a mistyped name is reported at once, before the model loads
            report(problem)
            tally.failed += 1
        elif job.skip_existing and item.destination != STDIO and os.path.isfile(item.destination):
            tally.skipped += 1
        else:
            todo.append(item)
    stopped_by = None
    if todo and job.ray is not None:
        from dav2_cli.jobs.ray_images import depth_on_ray

        measure = replace(measure, options=fitted_options(todo, measure.options, job))
        stopped_by = depth_on_ray(todo, measure, job, tally)
    elif todo:
        stopped_by = depth_for_items(todo, measure, job, tally)
    if summary or stopped_by:
        print(tally.line(stopped_by), file=sys.stderr, flush=True)
    if stopped_by in ("interrupted", "terminated"):
        return EXIT_SIGTERM if stopped_by == "terminated" else EXIT_SIGINT
    return EXIT_FAILED if tally.failed or stopped_by else EXIT_OK


class _OutOfMemoryFailsTheBatch(PerImageDepth):
    """A batch too large for the machine or GPU fails its own images only; the next, smaller ones still run."""

    def push(self, frames: list[Frame]) -> list[tuple[Frame, np.ndarray | None]]:
        import torch

        try:
            return super().push(frames)
        except (MemoryError, torch.cuda.OutOfMemoryError):
            for frame in frames:
                height, width = frame.image.shape[:2]
                frame.error = UserError(f"{frame.key.name}: out of memory running the model on {width}x{height} "
                                        f"(batch of {len(frames)}); try a smaller --batch-size or --input-size")
            return [(frame, None) for frame in frames]


@dataclass(frozen=True)
class _Input:
    """An item on its way through the pipeline, with what its file said about the camera."""

    item: Item
    focal_35mm: float | None  # EXIF FocalLengthIn35mmFilm

    @property
    def name(self) -> str:
        return self.item.name


def _header_sizes(todo: list[Item]) -> list[tuple[int, int]]:
    """(height, width) of each input whose header tells it (stdin and damaged files are left to decoding), so the
    memory a run needs is known before the model loads; headers sit in a file's first bytes."""
    sizes = []
    for item in todo:
        if item.source == STDIO:
            continue
        try:
            with open(item.source, "rb") as file:
                size = image_header(file.read(64 << 10))[1]
        except (OSError, ValueError):
            continue
        if size is not None:
            sizes.append((size[1], size[0]))
    return sizes


def fitted_options(todo: list[Item], options: DepthOptions, job: JobOptions) -> DepthOptions:
    """The options with a backend whose memory fits these images, decided before the model loads."""
    return replace(options, backend=fitting_backend(options.model, options.device, options.dtype, options.backend,
                                                    options.input_size, job.batch_size, _header_sizes(todo),
                                                    verbose=options.verbose))


def depth_for_items(todo: list[Item], measure: Measure, job: JobOptions, tally: Tally, *,
                    model=None) -> str | None:
    """Run the model over `todo` through the streamed pipeline; returns why it stopped early, if it did.

    `model`: one already loaded for these options (a Ray actor's, kept for all its batches); None loads it.

    Same-sized images share a model call; the next ones are decoded and prepared while the model runs, and the
    finished ones are rendered and written meanwhile. A Ctrl-C or SIGTERM stops the reading: the images already
    read (at most about two batches) are finished and written.
    """
    from tqdm import tqdm

    options = measure.options
    if model is None:
        options = fitted_options(todo, options, job)
        model = load_job_model(options, repeated=len(todo) > 1)
    if is_video_model(model):  # a checkpoint file: its keys, not its name, said so
        raise UsageError(VIDEO_MODEL_FOR_IMAGES.format(model=options.model))
    measure.use_model(model.config)

    def inputs():
        for item in todo:
            try:
                data = read_input_bytes(item.source)
                image = decode_image(data, item.name)
                prep.check_sizing(item.name, image.shape[:2], options.input_size)
            except UserError as exc:
                yield _Input(item, None), exc
            else:
                yield _Input(item, focal_length_35mm(data)), image

    def fail(frame: Frame) -> None:
        report(str(frame.error))
        tally.failed += 1
        bar.update(1)

    def write(frame: Frame, depth_hw: np.ndarray) -> None:
        item = frame.key.item
        try:
            outputs = measure.encode(depth_hw, frame.image, name=item.name, destination=item.destination,
                                     focal_35mm=frame.key.focal_35mm)
            write_with_sidecars(item.destination, outputs)
            if job.name_outputs and item.destination != STDIO:
                note(f"wrote {item.destination}")
        except OutputStopped:
            raise
        except UserError as exc:
            frame.error = exc
            fail(frame)
            return
        tally.done += 1
        bar.update(1)

    with GracefulStop() as stop, tqdm(total=len(todo), unit="img", file=sys.stderr, dynamic_ncols=True,
                                     disable=not job.progress) as bar:
        try:
            run_pipeline(inputs(), _OutOfMemoryFailsTheBatch(model), write, fail=fail, input_size=options.input_size,
                         batch_size=job.batch_size, stop=stop)
        except OutputStopped as exc:
            report(str(exc))
            tally.failed += 1
            return "stopped"
    if stop.requested:
        return "terminated" if stop.exit_code == EXIT_SIGTERM else "interrupted"
    return None

