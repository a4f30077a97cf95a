"""The depth of a list of planned images on the one pipeline: the core of `dav2 image` and `dav2 folder`.

The local job runs it in this process; a Ray actor runs the same function on its share (jobs/ray_images.py), so
names, formats, sidecars and bytes come from one piece of code wherever it runs.
"""

import sys
from dataclasses import dataclass, replace

import numpy as np

from dav2_cli.depth import sizing as prep
from dav2_cli.errors import EXIT_SIGTERM, UsageError, UserError
from dav2_cli.jobs.measure import Measure
from dav2_cli.jobs.options import (
    VIDEO_MODEL_FOR_IMAGES,
    DepthOptions,
    is_video_model,
    load_job_model,
    note,
    report,
)
from dav2_cli.jobs.plan import Item
from dav2_cli.media.exif import focal_length_35mm
from dav2_cli.jobs.uri_files import read_source, write_result
from dav2_cli.media.images import decode_image, image_header
from dav2_cli.outputs.atomic import STDIO, OutputStopped
from dav2_cli.pipeline import Frame, PerImageDepth, run_pipeline
from dav2_cli.runtime.interrupts import GracefulStop
from dav2_cli.runtime.memory_fit import fitting_backend


@dataclass(frozen=True)
class JobOptions:
    """How a job over many images is run: batching, which share of the inputs, what to skip, what to show."""

    batch_size: int = 1
    shard: tuple[int, int] | None = None  # (K, N), 1-based: this machine's share of the sorted inputs
    skip_existing: bool = False
    progress: bool = False
    name_outputs: bool = False  # one stderr line per file written
    ray: str | None = None  # --ray: a cluster's address, `auto`, or "" for a local one; None: this process
    ray_actors: int | None = None  # --ray-actors; None: jobs/ray_cluster.py decides


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
    finished ones are rendered and written meanwhile. A Ctrl-C or SIGTERM stops the reading and starts no new
    model call (pipeline.py says what becomes of the batch in the model).
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
                data = read_source(item.source)
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
                                     focal_35mm=frame.key.focal_35mm, sky_hw=frame.sky)
            write_result(item.destination, outputs)
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
            run_pipeline(inputs(), _OutOfMemoryFailsTheBatch(model, options.sky), write, fail=fail,
                         input_size=options.input_size, batch_size=job.batch_size, stop=stop)
        except OutputStopped as exc:
            report(str(exc))
            tally.failed += 1
            return "stopped"
    if stop.requested:
        return "terminated" if stop.exit_code == EXIT_SIGTERM else "interrupted"
    return None

