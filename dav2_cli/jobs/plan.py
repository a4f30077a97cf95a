"""Where every output goes, decided in one place before any work: names, collisions, files versus folders, and
which format fits which extension.

A plan is made from the command line and the file system alone (no model, no torch), so every mistake it can
find is reported in a fraction of a second, and no two inputs can ever be given the same output.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from dav2_cli.outputs import formats
from dav2_cli.errors import UsageError, UserError
from dav2_cli.outputs.atomic import STDIO
from dav2_cli.media.frame_sequence import frame_files
from dav2_cli.media.images import IMAGE_EXTENSIONS, is_image_name, read_path_list, scan_folder
from dav2_cli.media.video_write import SUPPORTED_EXTENSIONS
from dav2_cli.jobs.paths import check_output_location, is_own_output, is_same_file, refuse_binary_on_terminal

GRAY16_EXTENSION = ".mkv"  # gray16 video is lossless 16-bit FFV1, which only Matroska holds here


@dataclass(frozen=True)
class Item:
    source: str  # a path, or `-` for stdin
    destination: str  # a path, or `-` for stdout
    relative: str | None = None  # in a folder job, the source's path relative to the folder (or to the list's)

    @property
    def name(self) -> str:
        return "<stdin>" if self.source == STDIO else self.source


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" → (K, N), 1 <= K <= N; ValueError with the reason otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not K/N (for example 1/4)")
    k, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"{text!r}: K must be between 1 and N (K/N is 1-based, for example 1/4 ... 4/4)")
    return k, n


def take_shard(items: list, shard: tuple[int, int] | None) -> list:
    """The items shard K of N handles: every N-th of the sorted list, starting at the K-th."""
    if shard is None:
        return list(items)
    k, n = shard
    return items[k - 1::n]


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


def single_output_file(output: str | None, input_count: int) -> Path | None:
    """The file `-o` names when it names one file, else None (a folder, stdout, or beside each input).

    `-o` is a file only for a single input, when it has an extension, is not an existing folder and does not end
    in a separator: `-o results.v2/` is a folder, whatever its name looks like.
    """
    if output in (None, STDIO) or input_count != 1 or output.endswith(("/", "\\")):
        return None
    path = Path(output)
    return path if path.suffix and not path.is_dir() else None


def plan_image_outputs(inputs: list[str], output: str | None, fmt: str, *,
                       tail: str = "_depth") -> list[tuple[str, str]]:
    """Pair each input with its destination: a path, or `-` for stdout. No two inputs share a destination.

    `tail` ends a name made beside the input (x.jpg -> x_depth.png); in a folder it is added only when it is not
    "_depth" (a stereo layout's suffix, which players need to see)."""
    extension = formats.extension_for(fmt)
    if output == STDIO:
        if len(inputs) != 1:
            raise UsageError("-o - (stdout) takes exactly one input")
        refuse_binary_on_terminal(output)
        return [(inputs[0], STDIO)]
    if output is None:
        # beside each input: inputs of one folder that would share a name keep their extension in it
        destinations = {}
        by_folder: dict[str, list[str]] = {}
        for source in inputs:
            if source == STDIO:
                destinations[source] = STDIO
            else:
                by_folder.setdefault(os.path.normcase(os.path.abspath(os.path.dirname(source))), []).append(source)
        for sources in by_folder.values():
            names = distinct_names([Path(Path(source).name) for source in sources], f"{tail}{extension}")
            destinations.update((source, str(Path(source).with_name(name.name)))
                                for source, name in zip(sources, names))
        return [(source, destinations[source]) for source in inputs]
    single = single_output_file(output, len(inputs))
    check_output_location(output)
    if single is not None:
        return [(inputs[0], output)]
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{output}: exists and is not a folder (several inputs need an output folder)")
    if (len(inputs) > 1 and not out.exists() and not output.endswith(("/", "\\"))
            and formats.format_for_path(out) is not None):
        # `dav2 image a.jpg b.jpg -o depth.png` is a slip, as `cp a b file` is: not a folder named depth.png
        raise UsageError(f"{output}: {len(inputs)} inputs need an output folder, and this names a file; give a "
                         f"folder (end it with / to use this very name)")
    folder_tail = "" if tail == "_depth" else tail
    names = distinct_names([Path("stdin" if s == STDIO else Path(s).name) for s in inputs], folder_tail + extension)
    return [(source, str(out / name)) for source, name in zip(inputs, names)]


def output_format(output: str | None, fmt: str | None, inputs: list[str]) -> str:
    """--format if given, else the single output file's extension, else colour PNG; refuses pairs that clash."""
    fmt = formats.canonical_format(fmt) if fmt else None
    single = single_output_file(output, len(inputs))
    if single is None:
        return fmt or "color"
    if fmt is None:
        from_path = formats.format_for_path(single)
        if from_path is None:
            raise UsageError(f"{output}: unknown output extension; use one of {' '.join(formats.OUTPUT_EXTENSIONS)}, "
                             f"or a folder (end it with /)")
        return from_path
    if single.suffix.lower() not in formats.extensions_accepted(fmt):
        raise UsageError(f"{output}: the extension does not fit --format {fmt} "
                         f"(use {' or '.join(formats.extensions_accepted(fmt))})")
    return fmt


def default_folder_output(source: Path, tail: str = "_depth") -> Path:
    """`photos/` → `photos_depth/` beside it; `list.txt` → `list_depth/` beside the list (`tail` for _depth)."""
    named = source if source.name not in ("", ".", "..") else source.resolve()
    if not named.name:
        raise UsageError(f"{source}: give an output folder with -o")
    return named.with_name((named.stem if named.is_file() else named.name) + tail)


def plan_folder(source: Path, output: Path, fmt: str, *, recursive: bool,
                tail: str = "") -> tuple[list[Item], list[str]]:
    """Every input under a folder (or named by a .txt list) paired with its place in the mirrored output tree.

    Returns the items in sorted order and the problems met while scanning (folders that could not be listed).
    A list's entries are mirrored relative to the list's folder; entries outside it go to the top of `output`.
    """
    extension = formats.extension_for(fmt)
    if source.is_dir():
        if is_same_file(source, output):
            raise UsageError(f"{output}: the output folder is the input folder; choose another with -o")
        relatives, problems = scan_folder(source, recursive=recursive, exclude=output)
        relatives = [rel for rel in relatives if not is_own_output(source / rel)]  # an earlier run's, beside them
        if not relatives and not problems:
            raise UserError(f"{source}: no images found ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
        sources = [source / rel for rel in relatives]
    elif source.is_file():
        if is_image_name(source.name):
            raise UsageError(f"{source}: is an image; `dav2 folder` takes a folder or a .txt list "
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
    names = distinct_names(relatives, tail + extension)  # `tail`: a stereo layout's suffix, x.jpg -> x_LR.png
    return [Item(str(path), str(output / name), rel.as_posix())
            for path, rel, name in zip(sources, relatives, names)], problems


def video_format(fmt: str | None) -> str:
    """--format's canonical name; a colour depth video by default."""
    return formats.canonical_format(fmt) if fmt is not None else "color"


def plan_output(source: Path, output: str | None, fmt: str, *, overwrite: bool = False,
                tail: str = "_depth") -> Path:
    """Where the result goes, refusing combinations that cannot work, each in one line.

    A frame folder that already holds frames is refused unless `overwrite`: a shorter run would otherwise leave
    the old run's later frames beside the new ones, a folder that mixes two runs.
    """
    if output == STDIO:
        raise UsageError("video output cannot go to stdout (-o -); give a file name")
    if output is None:
        if fmt in formats.FILE_PER_FRAME_FORMATS:
            return plan_output(source, str(source.with_name(f"{source.stem}_depth")), fmt, overwrite=overwrite)
        return source.with_name(f"{source.stem}{tail}{GRAY16_EXTENSION if fmt == 'gray16' else '.mp4'}")
    out = Path(output)
    extension = out.suffix.lower()
    check_output_location(output)
    if fmt in formats.FILE_PER_FRAME_FORMATS:
        if extension in SUPPORTED_EXTENSIONS or (out.exists() and not out.is_dir()):
            raise UsageError(f"{output}: --format {fmt} writes one file per frame into a folder; give -o DIR")
        if source.is_dir() and is_same_file(source, out):
            raise UsageError(f"{output}: is the input frame folder; choose another output folder")
        if frame_files(out) and not overwrite:
            raise UsageError(f"{output}: already holds frames of an earlier run; add --overwrite to replace them, "
                             f"or choose an empty folder")
        return out
    if fmt == "gray16" and extension != GRAY16_EXTENSION:
        raise UsageError(f"{output}: --format gray16 writes lossless 16-bit FFV1 video, which needs a .mkv name")
    if extension not in SUPPORTED_EXTENSIONS:
        raise UsageError(f"{output}: a depth video needs a .mp4, .webm or .mkv name "
                         f"(or --format npy, exr, tiff or ply with -o DIR for a folder of frames)")
    if is_same_file(source, out):
        raise UsageError(f"{output}: is the input video; choose another output name")
    return out


def points_per_input(points: list, inputs: list[tuple[str, str]], csv_name: str) -> dict[str, list] | None:
    """--align-to's rows for each input, keyed by the input's source; None: every row is the one input's.

    `inputs` pairs each source with its name relative to the input folder (a folder job) or as given (images).
    A row's `image` names its input by that relative path or by the bare file name. Without an image column the
    CSV can only describe one image: a fit to another image's points would give metres that mean nothing.
    """
    if not any(point.image is not None for point in points):
        if len(inputs) > 1:
            raise UsageError(f"--align-to {csv_name}: {len(inputs)} inputs, and the CSV has no image column to say "
                             f"which image each point is on; add one (file name or path relative to the input "
                             f"folder), or run one image at a time")
        return None
    by_name: dict[str, list[str]] = {}
    for source, relative in inputs:
        for name in dict.fromkeys((Path(relative).as_posix(), Path(relative).name)):
            by_name.setdefault(name, []).append(source)
    found: dict[str, list] = {source: [] for source, _ in inputs}
    for point in points:
        sources = by_name.get(Path(point.image).as_posix(), [])
        if len(sources) > 1:
            raise UsageError(f"--align-to {csv_name}: image {point.image!r} names {len(sources)} inputs; give its "
                             f"path relative to the input folder")
        if sources:  # rows of images outside this run (another shard's) are not this run's concern
            found[sources[0]].append(point)
    return found
