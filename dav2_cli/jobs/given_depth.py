"""`dav2 image IN --depth FILE`: outputs rendered from a depth map the user already has, with no model run.

So a stereo picture can be made again with another divergence, or a depth picture with another colormap,
without computing depth twice; and depth with known values can be rendered exactly (the tests' scenes).

What the file holds is decided here, once:
* a file dav2 wrote (npy with its .json, EXR, TIFF, gray16 or colour PNG, PLY) says in its description which
  model made it and whether larger values are nearer (relative inverse depth) or farther (metres); its values
  are read back as `dav2 info` reads them;
* a plain .npy, .exr or 16-bit PNG without a description is taken as a relative model's output: larger = nearer.
It must have the image's size: a map of another size belongs to another picture (or was resized, which moves
depth edges off the picture's edges).
"""

import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from dav2_cli.errors import EXIT_OK, UsageError, UserError
from dav2_cli.jobs.info import read_depth_file
from dav2_cli.jobs.measure import plan_measure
from dav2_cli.jobs.options import DepthOptions, note
from dav2_cli.jobs.plan import plan_image_outputs
from dav2_cli.jobs.stereo import output_tail
from dav2_cli.media import depth_files
from dav2_cli.media.exif import focal_length_35mm
from dav2_cli.media.images import decode_image, read_input_bytes
from dav2_cli.outputs import formats
from dav2_cli.outputs.atomic import STDIO, write_with_sidecars
from dav2_cli.outputs.metadata import METRIC_UNIT
from dav2_cli.weights.catalog import INVERSE_DEPTH, METRIC_DEPTH, RELATIVE_DEPTH

_NEEDS_A_MODEL = ("--near/--far, --align-to and --max-depth change what a model's output means; with --depth the "
                  "file's own description says that")


def read_given_depth(path: str) -> tuple[np.ndarray, dict]:
    """(float32 HxW values, description) of a depth file; a plain one gets the relative model's meaning."""
    found = read_depth_file(Path(path))
    if "stereo_layout" in found.description:
        raise UserError(f"{path}: is a stereo picture dav2 made, not a depth map")
    values = found.values_hw
    if values is None and not found.description:
        picture = depth_files.read_picture(read_input_bytes(path), path)
        if picture.dtype != np.uint16 or picture.ndim != 2:
            raise UserError(f"{path}: a plain picture is read as depth only as 16-bit gray (8 bits are too coarse "
                            f"to place anything in depth)")
        values = picture.astype(np.float32)
    if values is None:
        raise UserError(f"{path}: a {found.kind} holds no depth map dav2 can read back")
    if values.ndim != 2:
        raise UserError(f"{path}: holds an array of shape {values.shape}, not an HxW depth map")
    description = dict(found.description)
    description.setdefault("model", f"depth file {path}")
    description.setdefault("kind", "relative")
    description.setdefault("larger", "nearer")
    return values.astype(np.float32, copy=False), description


def run_given_depth(inputs: list[str], output: str | None, options: DepthOptions, job, depth_path: str) -> int:
    if len(inputs) != 1:
        raise UsageError(f"--depth gives the depth of one image; got {len(inputs)} inputs")
    space = options.space
    if space.near is not None or space.align_to is not None or options.max_depth is not None:
        raise UsageError(_NEEDS_A_MODEL)
    if formats.canonical_format(options.fmt) in formats.CLOUD_FORMATS:
        raise UsageError(f"--depth renders pictures and raw maps; a point cloud ({options.fmt}) needs a model's "
                         f"run to know its distances")
    source = inputs[0]
    if depth_path == STDIO:
        raise UsageError("--depth reads a file, not stdin")
    [(source, destination)] = plan_image_outputs(inputs, output, options.fmt, tail=output_tail(options))
    if destination != STDIO and os.path.exists(destination):
        for other in (source, depth_path):
            if other != STDIO and os.path.exists(other) and os.path.samefile(destination, other):
                raise UsageError(f"{destination}: is one of the inputs; choose another -o")
    formats.check_side_by_side(options.fmt, options.side_by_side)
    if job.skip_existing and destination != STDIO and os.path.isfile(destination):
        print("dav2: done 0, skipped 1, failed 0", file=sys.stderr)
        return EXIT_OK

    values, description = read_given_depth(depth_path)
    data = read_input_bytes(source)
    name = "<stdin>" if source == STDIO else source
    image = decode_image(data, name)
    if values.shape != image.shape[:2]:
        raise UserError(f"{depth_path}: its depth map is {values.shape[1]}x{values.shape[0]}, the image "
                        f"{image.shape[1]}x{image.shape[0]}; give the depth of this very image")
    measure = plan_measure(replace(options, model=str(description["model"]),
                                   input_size=int(description.get("input_size", options.input_size))))
    # the file's own record of what its values are: metres, depth without a unit (DA3 mono), or inverse depth
    unit = description.get("unit", METRIC_UNIT if description.get("kind") == "metric" else "")
    measure.metric = unit == METRIC_UNIT
    measure.kind = METRIC_DEPTH if measure.metric else (
        RELATIVE_DEPTH if description["larger"] == "farther" else INVERSE_DEPTH)
    measure.family = str(description.get("family", ""))  # the file's own record; "" where it has none
    measure.max_depth = description.get("max_depth") if description.get("kind") == "metric" else None
    outputs = measure.encode(values, image, name=name, destination=destination, focal_35mm=focal_length_35mm(data))
    write_with_sidecars(destination, outputs)
    if job.name_outputs and destination != STDIO:
        note(f"wrote {destination}")
    return EXIT_OK
