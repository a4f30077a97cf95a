"""The one table of output formats: names, the file extensions each accepts, and the module that writes it.

Every other place (the planner choosing names and refusing mismatched extensions, the CLI's choices, the video
job deciding between one video and a folder of frames, the writer dispatch) reads this table, so a new format
is one row here plus its writer module in `dav2_cli/outputs/`. Pure Python with no numpy or OpenCV, so the
CLI can build `--help` from it without delay.
"""

from dataclasses import dataclass
from pathlib import Path

from dav2_cli.errors import UsageError, UserError

PICTURE, RAW, CLOUD = "picture", "raw", "cloud"
_PICTURE_EXTS = (".png", ".jpg", ".jpeg", ".webp")  # JPEG and WebP hold 8 bits per channel only


@dataclass(frozen=True)
class Format:
    name: str
    kind: str  # PICTURE (levels through a colormap or gray ramp), RAW (float32 values untouched) or CLOUD
    extensions: tuple[str, ...]  # the containers it can be written in; the first is the default
    writer: str  # the module in dav2_cli.outputs whose `encode_outputs(depth_hw, request)` writes it
    sky_mask: str | None = None  # where `--sky mask` puts the sky mask (the metadata says so); None: nowhere


TABLE = (
    Format("color", PICTURE, _PICTURE_EXTS, "picture_files"),
    Format("gray", PICTURE, _PICTURE_EXTS, "picture_files"),
    Format("gray16", PICTURE, (".png",), "picture_files"),  # PNG is the one 16-bit picture container here
    Format("npy", RAW, (".npy",), "npy", "sidecar OUT.npy.sky.png: 8-bit gray, 255 = sky, 0 = not"),
    Format("exr", RAW, (".exr",), "exr", "channel 'sky': float, 1 = sky, 0 = not"),
    Format("tiff", RAW, (".tiff", ".tif"), "tiff", "second page: 8-bit gray, 255 = sky, 0 = not"),
    Format("ply", CLOUD, (".ply",), "ply"),
    Format("glb", CLOUD, (".glb",), "glb"),  # always a mesh: a textured surface for browsers and Blender
)
BY_NAME = {row.name: row for row in TABLE}
FORMAT_ALIASES = {"png": "color"}  # `--format png` means the default colour PNG

FORMATS = tuple(BY_NAME)
VISUAL_FORMATS = tuple(row.name for row in TABLE if row.kind == PICTURE)
RAW_FORMATS = tuple(row.name for row in TABLE if row.kind == RAW)
CLOUD_FORMATS = tuple(row.name for row in TABLE if row.kind == CLOUD)
SKY_MASK_FORMATS = tuple(row.name for row in TABLE if row.sky_mask)
SKY_MASK_SUFFIX = ".sky.png"  # OUT.npy -> OUT.npy.sky.png, beside its OUT.npy.json
FILE_PER_FRAME_FORMATS = RAW_FORMATS + CLOUD_FORMATS  # a video becomes a folder of these, one file per frame
FORMAT_CHOICES = FORMATS + tuple(FORMAT_ALIASES)  # what `--format` accepts
OUTPUT_EXTENSIONS = tuple(dict.fromkeys(ext for row in TABLE for ext in row.extensions))
EIGHT_BIT_EXTS = (".jpg", ".jpeg", ".webp")
SIDECAR_SUFFIX = ".json"  # OUT.png -> OUT.png.json, as for the gray16 video's OUT.mkv.json


@dataclass(frozen=True)
class Request:
    """One output of one depth map: the format and what its writer may need. Each writer reads the fields its
    format uses: pictures the drawing options and the image beside them, ply the `cloud` (a ply.CloudRequest)."""

    fmt: str  # canonical name
    ext: str | None = None  # the file's suffix; None for stdout (the format's default container)
    cmap: str = "Spectral_r"
    invert: bool = False
    metric: bool = False  # the values are metres (larger = farther), not inverse depth
    value_range: tuple[float, float] | None = None
    image_bgr: object = None  # the photo, for side by side
    description: dict | None = None  # metadata.describe's; None writes files that say nothing
    cloud: object = None
    sky_hw: object = None  # with --sky mask, a sky-head model's sky mask (bool HxW), for the formats that carry it


def canonical_format(fmt: str) -> str:
    """The format name `fmt` stands for (aliases resolved); UserError if it names none."""
    name = FORMAT_ALIASES.get(fmt, fmt)
    if name not in BY_NAME:
        raise UserError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMAT_CHOICES)}")
    return name


def check_side_by_side(fmt: str, side_by_side: bool) -> None:
    """Side-by-side puts the photo beside a picture of the depth; raw formats and point clouds hold no picture."""
    if side_by_side and canonical_format(fmt) not in VISUAL_FORMATS:
        raise UsageError(f"--side-by-side needs a picture format ({', '.join(VISUAL_FORMATS)}), "
                         f"not {canonical_format(fmt)}")


def extensions_accepted(fmt: str) -> tuple[str, ...]:
    """The output file extensions `fmt` can be written as."""
    return BY_NAME[canonical_format(fmt)].extensions


def extension_for(fmt: str) -> str:
    """The file extension an output of `fmt` gets by default: ".png" for every picture format."""
    return extensions_accepted(fmt)[0]


def format_for_path(path) -> str | None:
    """The format an output path's extension asks for, or None when the extension means nothing to us.

    Picture containers (.png, .jpg, .jpeg, .webp) mean the colour picture, the default picture format.
    """
    ext = Path(path).suffix.lower()
    return next((row.name for row in TABLE if ext in row.extensions), None)


def check_sky_mask(fmt: str, sky: str, stereo: bool = False) -> None:
    """`--sky mask` writes the mask inside or beside the formats that have room for it (SKY_MASK_FORMATS)."""
    if sky == "mask" and (stereo or canonical_format(fmt) not in SKY_MASK_FORMATS):
        what = "--stereo" if stereo else f"--format {canonical_format(fmt)}"
        raise UsageError(f"--sky mask writes the sky mask with the depth, which {what} has no room for; use "
                         f"--format {', '.join(SKY_MASK_FORMATS)}, or --sky far (the default) for the same depth "
                         f"without the mask")


def check_extension(fmt: str, ext: str | None) -> None:
    """UserError when `ext` (a file's suffix, any case; None for stdout) cannot hold format `fmt`."""
    row = BY_NAME[canonical_format(fmt)]
    if ext is None or ext.lower() in row.extensions:
        return
    if row.kind == PICTURE and ext.lower() in EIGHT_BIT_EXTS:
        raise UserError(f"{row.name} needs a 16-bit container (.png); {ext} holds 8 bits per channel")
    what = {PICTURE: f"a {row.name} picture", RAW: f"{row.name} output", CLOUD: "a point cloud"}[row.kind]
    choices = (", " if row.kind == PICTURE else " or ").join(row.extensions)
    raise UserError(f"{what} cannot be written as a {ext} file; use {choices}")
