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

from .. import render
from ..errors import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, UserError
from ..interrupts import GracefulStop
from ..media.atomic import STDIO, OutputStopped, prepare_output_folder, write_output
from ..media.images import max_megapixels, read_image
from ..pipeline import ReadAhead, SizeBatcher
from .options import DepthOptions, load_job_model, report
from .plan import (
    Item,
    default_folder_output,
    plan_folder,
    plan_image_outputs,
    take_shard,
)


@dataclass(frozen=True)
class JobOptions:
    """How a job over many images is run: batching, which share of the inputs, what to skip, what to show."""

    batch_size: int = 1
    shard: tuple[int, int] | None = None  # (K, N), 1-based: this machine's share of the sorted inputs
    skip_existing: bool = False
    progress: bool = False


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
    pairs = plan_image_outputs(inputs, output, options.fmt)
    render.check_side_by_side(options.fmt, options.side_by_side)
    items = [Item(source, destination) for source, destination in pairs]
    return run_items(items, options, job, summary=False)


def run_folder(source: str, output: str | None, options: DepthOptions, job: JobOptions, *,
               recursive: bool = True) -> int:
    options = replace(options, fmt=render.canonical_format(options.fmt))
    source_path = Path(source)
    if not source_path.exists():
        raise UserError(f"{source}: no such file or folder")
    output_path = Path(output) if output is not None else default_folder_output(source_path)
    render.check_side_by_side(options.fmt, options.side_by_side)
    items, problems = plan_folder(source_path, output_path, options.fmt, recursive=recursive)
    for problem in problems:
        report(problem)
    prepare_output_folder(output_path)
    return run_items(items, options, job, summary=True, failed_before=len(problems))


def _identity(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def run_items(items: list[Item], options: DepthOptions, job: JobOptions, *, summary: bool,
              failed_before: int = 0) -> int:
    """Depth for each item of this job's shard, skipping finished ones when asked; prints the summary line.

    The model is loaded only when something is left to do, so a finished job resumes instantly.
    """
    max_megapixels()  # a bad DAV2_MAX_MEGAPIXELS is one error up front, not one per image
    items = take_shard(items, job.shard)
    inputs = {_identity(item.source) for item in items if item.source != STDIO} - {None}
    tally = Tally(total=len(items) + failed_before, failed=failed_before)
    todo = []
    for item in items:
        if item.destination != STDIO and _identity(item.destination) in inputs:
            report(f"{item.name}: its output {item.destination} is one of the inputs; choose another -o")
            tally.failed += 1
        elif job.skip_existing and item.destination != STDIO and os.path.isfile(item.destination):
            tally.skipped += 1
        else:
            todo.append(item)
    stopped_by = None
    if todo:
        stopped_by = _depth_for_items(todo, options, job, tally)
    if summary or stopped_by:
        print(tally.line(stopped_by), file=sys.stderr, flush=True)
    if stopped_by in ("interrupted", "terminated"):
        return EXIT_SIGTERM if stopped_by == "terminated" else EXIT_SIGINT
    return EXIT_FAILED if tally.failed or stopped_by else EXIT_OK


def _depth_for_items(todo: list[Item], options: DepthOptions, job: JobOptions, tally: Tally) -> str | None:
    """Run the model over `todo` in same-size batches while the next images are read; returns why it stopped.

    The reader thread keeps one batch ready and the batcher holds at most one batch more, so about two batches
    of decoded images exist at a time. A Ctrl-C or SIGTERM lets the batch in hand finish and be written.
    """
    import torch
    from tqdm import tqdm

    from ..engine import predict_batch

    model = load_job_model(options)
    metric = model.config.metric
    batcher = SizeBatcher(job.batch_size)

    def load(item: Item):
        image = read_image(item.source)
        check_aspect_ratio(item.name, image.shape[:2])
        return image

    def fail(message: str) -> None:
        report(message)
        tally.failed += 1
        bar.update(1)

    def run(batch: list[tuple[Item, np.ndarray]]) -> None:
        try:
            depths = predict_batch(model, [image for _, image in batch], options.input_size)
        except (MemoryError, torch.cuda.OutOfMemoryError):  # a batch too large for the GPU
            for item, image in batch:
                fail(f"{item.name}: out of memory running the model on {image.shape[1]}x{image.shape[0]} "
                     f"(batch of {len(batch)}); try a smaller --batch-size or --input-size")
            return
        for (item, image), depth in zip(batch, depths):
            suffix = Path(item.destination).suffix.lower() if item.destination != STDIO else None
            try:
                data = render.encode(depth, options.fmt, ext=suffix, cmap=options.cmap, invert=options.invert,
                                     metric=metric, image_bgr=image if options.side_by_side else None)
                write_output(item.destination, data)
            except OutputStopped:
                raise
            except UserError as exc:
                fail(str(exc))
                continue
            tally.done += 1
            bar.update(1)

    def batches(loaded: ReadAhead):
        for item, image, error in loaded:
            if stop.requested:  # the images read ahead are dropped: they were not started
                return
            if error is not None:
                fail(str(error))
            else:
                yield from batcher.add(image.shape[:2], (item, image))
        yield from batcher.flush()

    with GracefulStop() as stop, tqdm(total=len(todo), unit="img", file=sys.stderr, dynamic_ncols=True,
                                     disable=not job.progress) as bar:
        try:
            with ReadAhead(todo, load, ahead=job.batch_size, catch=UserError) as loaded:
                for batch in batches(loaded):
                    if stop.requested:
                        break
                    run(batch)
        except OutputStopped as exc:
            report(str(exc))
            tally.failed += 1
            return "stopped"
    if stop.requested:
        return "terminated" if stop.exit_code == EXIT_SIGTERM else "interrupted"
    return None


MAX_ASPECT_RATIO = 16  # the model scales the short side to --input-size, so the long side grows with this


def check_aspect_ratio(name: str, image_hw: tuple[int, int]) -> None:
    long_side, short_side = max(image_hw), min(image_hw)
    if long_side > MAX_ASPECT_RATIO * short_side:
        raise UserError(f"{name}: {image_hw[1]}x{image_hw[0]} is more than {MAX_ASPECT_RATIO}:1; the model would "
                        f"see a {long_side / short_side:.0f} times longer side than --input-size (crop it first)")
