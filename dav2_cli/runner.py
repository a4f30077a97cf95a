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

from . import render
from .batch import ReadAhead, SizeBatcher, take_shard
from .errors import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, UserError
from .interrupts import GracefulStop
from .media import (IMAGE_EXTENSIONS, STDIO, OutputStopped, is_image_name, max_megapixels, prepare_output_folder,
                    read_image, read_path_list, scan_folder, write_output)


@dataclass(frozen=True)
class DepthOptions:
    """How to run the model and how to draw or store its depth; shared by every command."""

    model: str = "vits"
    device: str = "auto"
    dtype: str = "auto"
    input_size: int = 504
    max_depth: float | None = None
    fmt: str = "color"
    cmap: str = "Spectral_r"
    invert: bool = False
    side_by_side: bool = False
    verbose: bool = False


def load_job_model(options: DepthOptions):
    """The job's model; with --verbose, one line on stderr saying what was loaded, from where, and how it runs."""
    from .engine import load_model, model_device

    model = load_model(options.model, options.device, options.dtype, max_depth=options.max_depth)
    if options.verbose:
        config = model.config
        meaning = (f"metric: meters, larger = farther, max_depth {config.max_depth:g} m" if config.metric
                   else "relative: inverse depth, larger = nearer")
        print(f"dav2: model {config.encoder} ({meaning}) from {model.source} on {model_device(model)} "
              f"in {model.precision}", file=sys.stderr, flush=True)
    return model


def report(message: str) -> None:
    """One error line on stderr, written around any progress bar so neither garbles the other."""
    from tqdm import tqdm

    tqdm.write(f"dav2: error: {message}", file=sys.stderr)
    sys.stderr.flush()


def distinct_names(relative_paths: list[Path], extension: str) -> list[Path]:
    """Output names for inputs, `x.jpg` → `x<extension>`, never two the same.

    Inputs whose stems collide (`x.jpg` and `x.png`) keep their own extension in the name (`x.jpg.png`,
    `x.png.png`); any that still collide get `-2`, `-3`, ... in input order. Names are compared ignoring case,
    because macOS and Windows file systems do, so `X.jpg` and `x.png` also keep their extensions.
    """
    def key(path: Path) -> str:
        return path.as_posix().casefold()

    stems = [rel.with_suffix("") for rel in relative_paths]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[key(stem)] = counts.get(key(stem), 0) + 1
    used: set[str] = set()
    result = []
    for rel, stem in zip(relative_paths, stems):
        name = rel if counts[key(stem)] > 1 else stem
        unique, number = name, 1
        while key(unique) in used:
            number += 1
            unique = name.with_name(f"{name.name}-{number}")
        used.add(key(unique))
        result.append(unique.with_name(unique.name + extension))
    return result


def plan_image_outputs(inputs: list[str], output: str | None, fmt: str) -> list[tuple[str, str]]:
    """Pair each input with its destination: a path, or `-` for stdout."""
    extension = render.extension_for(fmt)
    if output == STDIO:
        if len(inputs) != 1:
            raise UserError("-o - (stdout) takes exactly one input")
        return [(inputs[0], STDIO)]
    if output is None:
        pairs = []
        for source in inputs:
            if source == STDIO:
                pairs.append((source, STDIO))
            else:
                path = Path(source)
                pairs.append((source, str(path.with_name(f"{path.stem}_depth{extension}"))))
        return pairs
    out = Path(output)
    is_file = len(inputs) == 1 and out.suffix and not out.is_dir() and not output.endswith(("/", "\\"))
    if is_file:
        return [(inputs[0], output)]
    if out.exists() and not out.is_dir():
        raise UserError(f"{output}: exists and is not a folder (several inputs need an output folder)")
    names = distinct_names([Path("stdin" if s == STDIO else Path(s).name) for s in inputs], extension)
    return [(source, str(out / name)) for source, name in zip(inputs, names)]


def output_format(output: str | None, fmt: str | None, inputs: list[str]) -> str:
    """--format if given, else the single output file's extension, else colour PNG."""
    fmt = render.canonical_format(fmt) if fmt else None
    single_file = output not in (None, STDIO) and len(inputs) == 1 and Path(output).suffix \
        and not Path(output).is_dir()
    from_path = render.format_for_path(output) if single_file else None
    if single_file and from_path is None:
        raise UserError(f"{output}: unknown output extension; use one of .png .jpg .webp .npy .exr .tiff, "
                        f"or an existing folder")
    # 8-bit pictures may go into any picture type the extension names; everything else must agree
    if fmt and from_path and fmt != from_path and not (from_path == "color" and fmt == "gray"):
        raise UserError(f"{output}: the extension does not fit --format {fmt} "
                        f"(use {render.extension_for(fmt)})")
    return fmt or from_path or "color"


@dataclass(frozen=True)
class JobOptions:
    """How a job over many images is run: batching, which share of the inputs, what to skip, what to show."""

    batch_size: int = 1
    shard: tuple[int, int] | None = None  # (K, N), 1-based: this machine's share of the sorted inputs
    skip_existing: bool = False
    progress: bool = False


@dataclass(frozen=True)
class Item:
    source: str  # a path, or `-` for stdin
    destination: str  # a path, or `-` for stdout

    @property
    def name(self) -> str:
        return "<stdin>" if self.source == STDIO else self.source


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


def default_folder_output(source: Path) -> Path:
    """`photos/` → `photos_depth/` beside it; `list.txt` → `list_depth/` beside the list."""
    named = source if source.name not in ("", ".", "..") else source.resolve()
    if not named.name:
        raise UserError(f"{source}: give an output folder with -o")
    return named.with_name((named.stem if named.is_file() else named.name) + "_depth")


def plan_folder(source: Path, output: Path, fmt: str, *, recursive: bool) -> tuple[list[Item], list[str]]:
    """Every input under a folder (or named by a .txt list) paired with its place in the mirrored output tree.

    Returns the items in sorted order and the problems met while scanning (folders that could not be listed).
    A list's entries are mirrored relative to the list's folder; entries outside it go to the top of `output`.
    """
    extension = render.extension_for(fmt)
    if source.is_dir():
        if output.resolve() == source.resolve():
            raise UserError(f"{output}: the output folder is the input folder; choose another with -o")
        relatives, problems = scan_folder(source, recursive=recursive, exclude=output)
        if not relatives and not problems:
            raise UserError(f"{source}: no images found ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
        sources = [source / rel for rel in relatives]
    elif source.is_file():
        if is_image_name(source.name):
            raise UserError(f"{source}: is an image; `dav2 folder` takes a folder or a .txt list "
                            f"(use `dav2 image` for single images)")
        sources = list(dict.fromkeys(read_path_list(source)))  # a path listed twice is done once
        if not sources:
            raise UserError(f"{source}: the list names no image paths")
        base = source.parent.resolve()
        relatives = []
        for path in sources:
            try:
                relatives.append(path.resolve().relative_to(base))
            except ValueError:  # outside the list's folder
                relatives.append(Path(path.name))
        problems = []
    elif source.exists():
        raise UserError(f"{source}: not a folder or a .txt list of image paths")
    else:
        raise UserError(f"{source}: no such file or folder")
    names = distinct_names(relatives, extension)
    return [Item(str(path), str(output / name)) for path, name in zip(sources, names)], problems


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

    from .engine import predict_batch

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
