"""`dav2 info`: what a file dav2 wrote holds, and the depth at one of its pixels.

A depth file is only useful for measuring if its meaning travels with it; this command is the proof that it
does: it reads the description back from wherever the format keeps it (text chunks, EXR attributes, TIFF
ImageDescription, PLY comments, JSON sidecars) and undoes the picture formats' scaling with their own `lo`/`hi`.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dav2_cli.outputs import exr, formats, jpeg, metadata, npy, png, tiff, webp
from dav2_cli.outputs.colormaps import colormap_table
from dav2_cli.outputs.pictures import levels_grow_in
from dav2_cli.errors import EXIT_OK, UsageError, UserError
from dav2_cli.jobs.export import FORMATS as EXPORT_SUFFIXES, read_export_description
from dav2_cli.media import depth_files
from dav2_cli.media.images import read_input_bytes
from dav2_cli.outputs.ply import read_ply


@dataclass
class DepthFile:
    kind: str  # what the file is, in words
    description: dict
    values_hw: np.ndarray | None = None  # the stored depth values, once decoded; None: no pixel grid here
    note: str = ""  # how exact a decoded value is


def _sidecar(path: Path) -> dict:
    sidecar = Path(f"{path}{formats.SIDECAR_SUFFIX}")
    if not sidecar.is_file():
        return {}
    return _json(read_input_bytes(sidecar), sidecar)


def _json(data: bytes, name) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{name}: not a JSON description") from None
    if not isinstance(value, dict):
        raise UserError(f"{name}: not a JSON description")
    return value


def _picture_values(picture: np.ndarray, description: dict, name, lossy: bool) -> tuple[np.ndarray, str]:
    """A picture's levels turned back into depth values with its own lo/hi and direction."""
    if "lo" not in description or "hi" not in description:
        raise UserError(f"{name}: a picture without lo/hi; its depth cannot be recovered")
    if "layout" in description:  # side by side: the depth is the right half
        picture = picture[:, picture.shape[1] // 2:]
    levels = 65535 if picture.dtype == np.uint16 else 255
    if picture.ndim == 3 and "cmap" in description:
        table = colormap_table(description["cmap"]).astype(np.int32)  # 256 x 3 BGR
        distance = ((picture[:, :, None, :3].astype(np.int32) - table[None, None]) ** 2).sum(axis=3)
        level = np.argmin(distance, axis=2).astype(np.float64)  # the nearest colour of the map
    else:
        level = (picture if picture.ndim == 2 else picture[:, :, 0]).astype(np.float64)
    lo, hi = float(description["lo"]), float(description["hi"])
    grows = levels_grow_in(description)
    values = lo + level / levels * (hi - lo) if grows else hi - level / levels * (hi - lo)
    step = (hi - lo) / levels
    note = f"within {step:.3g} (one level of {levels}){', more in lossy JPEG' if lossy else ''}"
    return values.astype(np.float32), note


def _picture_file(kind: str | None, description: dict, data: bytes, name, lossy: bool) -> DepthFile:
    """A picture with its description, and its depth where the description says how to recover it. PNGs (kind
    None) are named by their bit depth."""
    picture = depth_files.read_picture(data, name)
    kind = kind or ("16-bit PNG" if picture.dtype == np.uint16 else "8-bit PNG")
    if "stereo_layout" in description:  # the input seen by two eyes: its description, no depth to read
        return DepthFile(f"{kind}, stereo {description['stereo_layout']}", description)
    return DepthFile(kind, description, *(_picture_values(picture, description, name, lossy)
                                           if description else (None, "")))


def read_depth_file(path: Path) -> DepthFile:
    """The description and (where the file is a grid) the depth values of a file dav2 wrote."""
    if path.suffix.lower() in EXPORT_SUFFIXES:  # a model `dav2 export` wrote: read by its own library, not in bytes
        return DepthFile(*read_export_description(path))
    data = read_input_bytes(path)
    name = str(path)
    if path.suffix.lower() == formats.SIDECAR_SUFFIX:
        return DepthFile("JSON description", _json(data, name))
    if data.startswith(png.SIGNATURE):
        return _picture_file(None, png.read_description(data) or _sidecar(path), data, name, lossy=False)
    if data.startswith(jpeg.SIGNATURE):
        return _picture_file("JPEG", jpeg.read_description(data), data, name, lossy=True)
    if webp.is_webp(data):
        return _picture_file("WebP", webp.read_description(data), data, name, lossy=False)
    if data.startswith(exr.MAGIC):
        return DepthFile("EXR (float32)", exr.read_description(data), exr.decode(data, name), "exact")
    if data[:4] in tiff.CLASSIC:
        values = depth_files.read_picture(data, name)
        return DepthFile("TIFF (float32)", tiff.read_description(data), values.astype(np.float32), "exact")
    if data.startswith(npy.MAGIC):
        return DepthFile("npy (float32)", _sidecar(path), npy.decode(data, name), "exact")
    if data[:4] == b"glTF":
        from dav2_cli.outputs.glb import glb_description

        try:
            return DepthFile("GLB mesh", glb_description(data))
        except ValueError as exc:
            raise UserError(f"{name}: {exc}") from None
    if data.startswith(b"ply\n"):
        try:
            description, vertices = read_ply(data)
        except ValueError as exc:
            raise UserError(f"{name}: {exc}") from None
        return DepthFile(f"PLY point cloud, {len(vertices)} points", description, _ply_depth(description, vertices))
    description = _sidecar(path)  # a video: its description is OUT.json
    if description:
        return DepthFile("video (see its .json)", description)
    raise UserError(f"{name}: not a file dav2 wrote (no description found in it or in {name}.json)")


def _ply_depth(description: dict, vertices) -> np.ndarray | None:
    """A depth map rebuilt from the cloud: each vertex projected back to its pixel with the header's intrinsics."""
    intrinsics, width, height = description.get("intrinsics"), description.get("width"), description.get("height")
    if not (isinstance(intrinsics, dict) and width and height):
        return None
    x, y, z = (vertices[axis].astype(np.float64) for axis in "xyz")
    if description.get("axes") == "y-up":
        y, z = -y, -z
    values = np.full((height, width), np.nan, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(intrinsics["fx"] * x / z + intrinsics["cx"])
        v = np.rint(intrinsics["fy"] * y / z + intrinsics["cy"])
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    values[v[inside].astype(int), u[inside].astype(int)] = z[inside]
    return values


def _lines(description: dict, prefix: str = "") -> list[str]:
    lines = []
    for key, value in description.items():
        if isinstance(value, dict):
            lines += _lines(value, f"{prefix}{key}.")
        else:
            lines.append(f"  {prefix}{key}: {value}")
    return lines


def run_cache_info(echo=print) -> int:
    """`dav2 info` with no file: dav2's caches, their size and how to clear them."""
    from dav2_cli.runtime.openvino_cache import summary

    for line in summary():
        echo(line)
    return EXIT_OK


def run_info(source: str, at: tuple[int, int] | None, echo=print) -> int:
    path = Path(source)
    found = read_depth_file(path)
    if not found.description:
        raise UserError(f"{source}: a {found.kind} without a dav2 description (not written by dav2, or written "
                        f"before files described themselves)")
    if at is not None:
        if found.values_hw is None:
            raise UsageError(f"{source}: --at needs a depth map or point cloud; a {found.kind} has no pixels to read")
        height, width = found.values_hw.shape
        if not (0 <= at[0] < width and 0 <= at[1] < height):
            raise UsageError(f"--at {at[0]},{at[1]} is outside the {width}x{height} depth map")
    echo(f"{source}: {found.kind}")
    for line in _lines(found.description):
        echo(line)
    if at is not None:
        echo(_depth_line(found, *at))
    return EXIT_OK


def _depth_line(found: DepthFile, x: int, y: int) -> str:
    value = float(found.values_hw[y, x])
    unit = found.description.get("unit", "")
    shown = f"{value:.6g} {'m' if unit == metadata.METRIC_UNIT else '(inverse depth, no unit)'}"
    if not np.isfinite(value):
        shown = "no point" if found.kind.startswith("PLY") else f"{value} (no depth there)"
    larger = found.description.get("larger")
    detail = f"; larger = {larger}" if larger else ""
    exactness = f", {found.note}" if found.note and np.isfinite(value) else ""
    return f"depth at ({x}, {y}): {shown}{exactness}{detail}"
