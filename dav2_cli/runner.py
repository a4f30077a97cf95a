"""Jobs over images: plan where each result goes, run the model once per input, report, and decide the exit code.

A bad input is reported in one line and skipped so the rest still get done; only a problem that stops every
input (no model, an impossible output location) ends the job early.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from . import render
from .errors import EXIT_FAILED, EXIT_OK, UserError
from .interrupts import GracefulStop
from .media import STDIO, read_image, write_output


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


def report(message: str) -> None:
    print(f"dav2: error: {message}", file=sys.stderr, flush=True)


def distinct_names(relative_paths: list[Path], extension: str) -> list[Path]:
    """Output names for inputs, `x.jpg` → `x<extension>`, never two the same.

    Inputs whose stems collide (`x.jpg` and `x.png`) keep their own extension in the name (`x.jpg.png`,
    `x.png.png`); any that still collide get `-2`, `-3`, ... in input order.
    """
    stems = [rel.with_suffix("") for rel in relative_paths]
    counts: dict[Path, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    names = [rel if counts[stem] > 1 else stem for rel, stem in zip(relative_paths, stems)]
    seen: dict[Path, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique = name if seen[name] == 1 else name.with_name(f"{name.name}-{seen[name]}")
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
    fmt = render.FORMAT_ALIASES.get(fmt, fmt) if fmt else None
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


def run_images(inputs: list[str], output: str | None, options: DepthOptions) -> int:
    from .engine import load_model, predict

    pairs = plan_image_outputs(inputs, output, options.fmt)
    if options.side_by_side and options.fmt not in render.VISUAL_FORMATS:
        raise UserError(f"--side-by-side needs a picture format (color, gray, gray16), not {options.fmt}")
    model = load_model(options.model, options.device, options.dtype, max_depth=options.max_depth)
    metric = model.config.metric
    failed = 0
    with GracefulStop() as stop:
        for source, destination in pairs:
            if stop.requested:
                break
            try:
                image = read_image(source)
                depth = predict(model, image, options.input_size)
                suffix = Path(destination).suffix.lower() if destination != STDIO else None
                data = render.encode(depth, options.fmt, ext=suffix, cmap=options.cmap, invert=options.invert,
                                     metric=metric, image_bgr=image if options.side_by_side else None)
                write_output(destination, data)
            except UserError as exc:
                failed += 1
                report(str(exc))
    if stop.requested:
        print("dav2: stopped by signal; finished outputs are complete", file=sys.stderr)
        return stop.exit_code
    return EXIT_FAILED if failed else EXIT_OK
