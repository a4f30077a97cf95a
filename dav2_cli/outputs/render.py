"""Depth maps become pictures and raw files here, and nowhere else.

Every output a user can ask for is decided in this one place so that a photo, a folder and a video frame
render identically: the same normalisation, the same colormap table, the same 16-bit scaling. Two rules hold
for every picture format:

* Near is bright. Relative models output inverse depth (larger = nearer) and metric models output meters
  (larger = farther), so metric maps are flipped before colouring; `invert` flips once more.
* The normalisation range is an input. A single image uses its own finite min/max (upstream's rule, so our
  colour PNG's pixels equal upstream's exactly; the file adds text chunks saying what they mean); a video
  passes a range from `RangeTracker` so frames do not flicker.

Raw formats (npy, exr, tiff) keep the float32 values untouched; ply turns the depth into coloured points
(`geometry`, `pointcloud`). Given a description (`metadata.describe`), every file says what it holds and how to
get the depth back from it (`encode_outputs`); sidecars come back as extra (suffix, bytes) outputs for the job to
write, so this module never touches the file system. It runs once per video frame, so the colormap tables are
built once and applied by indexing, and it stays free of torch so `dav2 --help` is quick.
"""

import functools
import io
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dav2_cli.outputs import metadata, png
from dav2_cli.errors import UsageError, UserError
from dav2_cli.depth.camera import CloudOptions, Intrinsics, build_cloud
from dav2_cli.outputs.ply import encode_ply

VISUAL_FORMATS = ("color", "gray", "gray16")
RAW_FORMATS = ("npy", "exr", "tiff")
CLOUD_FORMATS = ("ply",)
FORMATS = VISUAL_FORMATS + RAW_FORMATS + CLOUD_FORMATS
FILE_PER_FRAME_FORMATS = RAW_FORMATS + CLOUD_FORMATS  # a video becomes a folder of these, one file per frame
FORMAT_ALIASES = {"png": "color"}  # `--format png` means the default colour PNG

# OpenCV's built-in tables (its own copies of the matplotlib/Google maps), looked up by name.
_OPENCV_CMAPS = {
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "plasma": cv2.COLORMAP_PLASMA,
    "cividis": cv2.COLORMAP_CIVIDIS,
    "jet": cv2.COLORMAP_JET,
    "bone": cv2.COLORMAP_BONE,
}
CMAPS = ("Spectral_r", "turbo", "inferno", "magma", "viridis", "gray", "plasma", "cividis", "jet", "bone")

# ColorBrewer's 11-class Spectral, the control colours matplotlib's "Spectral" interpolates between.
_SPECTRAL_HEX = (
    0x9E0142, 0xD53E4F, 0xF46D43, 0xFDAE61, 0xFEE08B, 0xFFFFBF,
    0xE6F598, 0xABDDA4, 0x66C2A5, 0x3288BD, 0x5E4FA2,
)  # fmt: skip

# Containers that can hold the picture formats. JPEG and WebP carry 8 bits only.
_PICTURE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
_EIGHT_BIT_EXTS = (".jpg", ".jpeg", ".webp")
_FILE_EXTS = {"npy": (".npy",), "exr": (".exr",), "tiff": (".tiff", ".tif"), "ply": (".ply",)}
SIDECAR_SUFFIX = ".json"  # OUT.png -> OUT.png.json, as for the gray16 video's OUT.mkv.json

OUTPUT_EXTENSIONS = _PICTURE_EXTS + tuple(ext for exts in _FILE_EXTS.values() for ext in exts)
NORMALIZE_MODES = ("ema", "frame", "global")
_EMA_SAMPLES = 1 << 16  # about this many pixels feed the per-frame percentiles; plenty for 1%/99%


def canonical_format(fmt):
    """The format name `fmt` stands for (aliases resolved); UserError if it names none."""
    name = FORMAT_ALIASES.get(fmt, fmt)
    if name not in FORMATS:
        known = ", ".join(FORMATS + tuple(FORMAT_ALIASES))
        raise UserError(f"unknown output format {fmt!r}; choose one of {known}")
    return name


def check_side_by_side(fmt, side_by_side: bool) -> None:
    """Side-by-side puts the photo beside a picture of the depth; raw formats and point clouds hold no picture."""
    if side_by_side and canonical_format(fmt) not in VISUAL_FORMATS:
        raise UsageError(f"--side-by-side needs a picture format ({', '.join(VISUAL_FORMATS)}), "
                        f"not {canonical_format(fmt)}")


def extensions_accepted(fmt):
    """The output file extensions `fmt` can be written as: 8-bit pictures in any picture container, gray16 only
    in PNG (the one 16-bit container here), raw formats in their own."""
    name = canonical_format(fmt)
    if name == "gray16":
        return (".png",)
    if name in VISUAL_FORMATS:
        return _PICTURE_EXTS
    return _FILE_EXTS[name]


def extension_for(fmt):
    """The file extension an output of `fmt` gets by default: ".png" for every picture format."""
    name = canonical_format(fmt)
    if name in VISUAL_FORMATS:
        return ".png"
    return _FILE_EXTS[name][0]


def format_for_path(path):
    """The format an output path's extension asks for, or None when the extension means nothing to us.

    .jpg/.jpeg/.webp mean the colour picture stored in that container (see `encode`'s `ext`).
    """
    ext = Path(path).suffix.lower()
    if ext in _PICTURE_EXTS:
        return "color"
    for name, exts in _FILE_EXTS.items():
        if ext in exts:
            return name
    return None


def depth_range(depth_hw):
    """(min, max) over the finite values; (0.0, 0.0) when there are none (the map renders as all far)."""
    depth_hw = np.asarray(depth_hw)
    lo, hi = depth_hw.min(), depth_hw.max()
    if np.isfinite(lo) and np.isfinite(hi):  # min/max propagate NaN and inf, so this proves all are finite
        return float(lo), float(hi)
    finite = depth_hw[np.isfinite(depth_hw)]
    if finite.size == 0:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())


def _bgr_table_from_rgb(rgb_n3):
    """A 256x3 uint8 BGR table from float RGB in 0..1, truncated like upstream's `(cmap(x) * 255).astype(uint8)`."""
    return np.ascontiguousarray((rgb_n3 * 255)[:, ::-1].astype(np.uint8))


def _spectral_r_rgb():
    """matplotlib's Spectral_r as 256 float RGB rows, computed as its LinearSegmentedColormap computes it.

    The control colours sit at evenly spaced positions (reversed for "_r": position 1 - x); entry i is the
    linear blend at i/255 between its two neighbours. The blend is written in matplotlib's arithmetic order
    (`t * (right - left) + left`) because upstream truncates `value * 255` to uint8, where a last-bit
    difference at a control point would change a byte.
    """
    rgb_k3 = np.array([[(h >> 16) & 255, (h >> 8) & 255, h & 255] for h in _SPECTRAL_HEX], dtype=np.float64) / 255
    knots = len(_SPECTRAL_HEX)
    x_k = 1.0 - np.linspace(0.0, 1.0, knots)[::-1]  # the reversed map's control positions, ascending
    rgb_k3 = rgb_k3[::-1]
    x_k = x_k * 255
    x_i = 255 * np.linspace(0.0, 1.0, 256)
    right = np.searchsorted(x_k, x_i[1:-1])  # first control point at or after each inner entry
    t = ((x_i[1:-1] - x_k[right - 1]) / (x_k[right] - x_k[right - 1]))[:, None]
    inner = t * (rgb_k3[right] - rgb_k3[right - 1]) + rgb_k3[right - 1]
    return np.clip(np.concatenate([rgb_k3[:1], inner, rgb_k3[-1:]]), 0.0, 1.0)


@functools.cache
def _colormap_table(cmap):
    """The 256x3 uint8 BGR table for `cmap`, built on first use and kept (one build per process)."""
    if cmap == "Spectral_r":
        return _bgr_table_from_rgb(_spectral_r_rgb())
    if cmap == "gray":
        return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    if cmap in _OPENCV_CMAPS:
        ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
        return np.ascontiguousarray(cv2.applyColorMap(ramp, _OPENCV_CMAPS[cmap]).reshape(256, 3))
    raise UserError(f"unknown colormap {cmap!r}; choose one of {', '.join(CMAPS)}")


def to_visual(depth_hw, fmt, *, cmap="Spectral_r", invert=False, metric=False, value_range=None):
    """A picture of `depth_hw`: color -> uint8 HxWx3 BGR, gray -> uint8 HxW, gray16 -> uint16 HxW.

    Near is bright (the top of the colormap): relative maps as they are, metric maps flipped; `invert` flips
    once more. `value_range=(lo, hi)` fixes the normalisation (default: this map's `depth_range`); values
    outside it are clipped. 8-bit levels are truncated like upstream's `astype(np.uint8)`, 16-bit levels are
    rounded; gray16 spans the full 0..65535. A constant map and NaN/inf pixels carry no depth, so they render
    as the far end (level 0, or the top level when inverted).
    """
    name = canonical_format(fmt)
    if name not in VISUAL_FORMATS:
        raise ValueError(f"{name} is a raw format, not a picture format")
    depth_hw = np.asarray(depth_hw, dtype=np.float32)
    if depth_hw.ndim != 2:
        raise ValueError(f"depth map must be HxW, got shape {depth_hw.shape}")
    table = _colormap_table(cmap) if name == "color" else None  # unknown cmap fails even on a constant map
    lo, hi = depth_range(depth_hw) if value_range is None else value_range
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"value_range must be finite with lo <= hi, got ({lo}, {hi})")

    levels = 65535 if name == "gray16" else 255
    far_level = levels if invert else 0
    # float32 throughout, in upstream's order ((d - lo) / span * 255), so single images match it exactly.
    lo32, hi32 = np.float32(lo), np.float32(hi)
    span = hi32 - lo32
    if span > 0:
        # Metric depth grows with distance, so its near end is `hi`; invert swaps which end is near.
        scaled_hw = np.subtract(hi32, depth_hw) if metric != invert else np.subtract(depth_hw, lo32)
        scaled_hw /= span
        scaled_hw *= levels
        np.clip(scaled_hw, 0, levels, out=scaled_hw)  # NaN passes through clip; replaced below
        finite_hw = np.isfinite(depth_hw)
        if not finite_hw.all():
            scaled_hw[~finite_hw] = far_level
        if name == "gray16":
            scaled_hw += 0.5  # round to nearest: the cast below truncates and every value is >= 0
            level_hw = scaled_hw.astype(np.uint16)
        else:
            level_hw = scaled_hw.astype(np.uint8)
    else:
        level_hw = np.full(depth_hw.shape, far_level, dtype=np.uint16 if name == "gray16" else np.uint8)

    if name == "color":
        # OpenCV's table lookup: the same result as `table[level_hw]`, about 10x faster on a 1080p frame.
        return cv2.applyColorMap(level_hw, table.reshape(256, 1, 3))
    return level_hw


def _to_dtype_scale(picture, dtype):
    """`picture` (uint8 or uint16) moved onto `dtype`'s full scale: x257 up (exact: 255*257 = 65535), /257 down."""
    if picture.dtype == dtype:
        return picture
    if picture.dtype == np.uint8 and dtype == np.uint16:
        return picture.astype(np.uint16) * np.uint16(257)
    if picture.dtype == np.uint16 and dtype == np.uint8:
        return ((picture.astype(np.uint32) + 128) // 257).astype(np.uint8)
    raise ValueError(f"side-by-side needs uint8 or uint16 pictures, got {picture.dtype}")


def side_by_side(image_bgr, visual):
    """The image on the left, the depth picture on the right, as one 3-channel BGR picture of the same height.

    No gap between the halves: each half is exactly one input's width, so tools that split side-by-side
    frames (and video encoders that need even widths) get what they expect. The result has the depth
    picture's dtype, because the output format the user chose decides the bit depth: with gray16 an 8-bit
    image is scaled x257 onto 0..65535 (exact), with color/gray a 16-bit image is divided by 257 (rounded).
    A gray image is repeated to 3 channels and an alpha channel is dropped.
    """
    if image_bgr.shape[:2] != visual.shape[:2]:
        raise ValueError(f"image {image_bgr.shape[:2]} and depth picture {visual.shape[:2]} differ in size")
    if image_bgr.ndim == 2:
        image_bgr = image_bgr[:, :, None]
    if image_bgr.shape[2] == 1:
        image_bgr = np.repeat(image_bgr, 3, axis=2)
    elif image_bgr.shape[2] == 4:
        image_bgr = image_bgr[:, :, :3]
    if visual.ndim == 2:
        visual = np.repeat(visual[:, :, None], 3, axis=2)
    return np.concatenate([_to_dtype_scale(image_bgr, visual.dtype), visual], axis=1)


def _encode_exr(depth_hw, extra_attributes=b""):
    """A single-channel ("Y") float32 OpenEXR file, ZIP-compressed in 16-line blocks.

    Written here because the OpenCV wheels we install are built without OpenEXR. Layout per the OpenEXR
    file-layout spec: magic, version 2 (single-part scanline), header attributes, one offset per block,
    then blocks of (first line, byte count, data). ZIP data is the block's little-endian bytes split into
    even/odd bytes, delta-coded (+128 mod 256), then zlib; a block that would not shrink is stored raw,
    which readers recognise by its size.
    """
    height, width = depth_hw.shape

    def attribute(name, kind, value):
        return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value

    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = b"".join(
        [
            struct.pack("<ii", 20000630, 2),  # magic number, version 2 with no flags: single-part scanline
            # one FLOAT (type 2) channel "Y", linear flag 0, 3 reserved bytes, x/y sampling 1
            attribute("channels", "chlist", b"Y\0" + struct.pack("<iB3xii", 2, 0, 1, 1) + b"\0"),
            attribute("compression", "compression", bytes([3])),  # ZIP_COMPRESSION
            attribute("dataWindow", "box2i", window),
            attribute("displayWindow", "box2i", window),
            attribute("lineOrder", "lineOrder", bytes([0])),  # INCREASING_Y
            attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
            attribute("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
            attribute("screenWindowWidth", "float", struct.pack("<f", 1.0)),
            extra_attributes,  # dav2's description, one string attribute per key
            b"\0",
        ]
    )
    little_hw = depth_hw.astype("<f4", copy=False)
    blocks = []
    for y in range(0, height, 16):
        raw = np.frombuffer(little_hw[y : y + 16].tobytes(), dtype=np.uint8)
        split = np.concatenate([raw[0::2], raw[1::2]])
        split[1:] = np.diff(split) + 128  # uint8 arithmetic wraps mod 256, as the format wants
        packed = zlib.compress(split.tobytes())
        data = packed if len(packed) < raw.size else raw.tobytes()
        blocks.append(struct.pack("<ii", y, len(data)) + data)
    offset = len(header) + 8 * len(blocks)
    offsets = []
    for block in blocks:
        offsets.append(offset)
        offset += len(block)
    return header + struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(blocks)


def _encode_raw(depth_hw, name, ext, description):
    if ext is not None and ext.lower() not in _FILE_EXTS[name]:
        raise UserError(f"{name} output cannot be written as a {ext} file; use {' or '.join(_FILE_EXTS[name])}")
    if name == "npy":  # the description goes into a sidecar (see encode_outputs): np.save has no room for it
        buffer = io.BytesIO()
        np.save(buffer, depth_hw, allow_pickle=False)
        return buffer.getvalue()
    if name == "exr":
        return _encode_exr(depth_hw, metadata.exr_string_attributes(description or {}))
    ok, data = cv2.imencode(".tiff", depth_hw)  # OpenCV stores float32 as IEEE-float samples
    if not ok:
        raise UserError("OpenCV could not encode the depth map as a float32 TIFF")
    return metadata.tiff_with_description(data.tobytes(), description) if description else data.tobytes()


@dataclass(frozen=True)
class CloudRequest:
    """What a point cloud needs beyond the depth: the camera, the colours, and which points to keep."""

    intrinsics: Intrinsics
    colors_bgr: np.ndarray  # the decoded image the depth belongs to
    options: CloudOptions = CloudOptions()
    max_depth: float | None = None  # a metric model's saturation limit: points at it are dropped


def picture_description(description, name, *, cmap, invert, metric, value_range, side_by_side_width=None):
    """`description` plus what a picture needs to be read back: its range, its direction and the formula."""
    lo, hi = value_range
    levels = 65535 if name == "gray16" else 255
    larger = "farther" if metric else "nearer"
    grows = metric == invert  # the level grows with the depth value (see to_visual)
    decoded = {**description, "lo": lo, "hi": hi, "larger": larger,
               "brighter": larger if grows else ("nearer" if metric else "farther"),
               "decode": (f"depth = lo + v / {levels} * (hi - lo)" if grows else
                          f"depth = hi - v / {levels} * (hi - lo)") + ", v the pixel's level"}
    if name == "color":
        decoded["cmap"] = cmap
        decoded["decode"] += f" (its index in the {cmap} colormap)"
    if side_by_side_width is not None:
        decoded["layout"] = f"side by side: the image left, the depth from column {side_by_side_width} on"
    return decoded


def encode_outputs(
    depth_hw,
    fmt,
    *,
    ext=None,
    cmap="Spectral_r",
    invert=False,
    metric=False,
    value_range=None,
    image_bgr=None,
    description=None,
    cloud=None,
):
    """Every file one output of `depth_hw` in format `fmt` consists of: [(suffix, bytes), ...].

    The first entry (suffix "") is the output itself; a sidecar follows as (".json", bytes), to be written
    beside it as OUT.json. With a `description` (`metadata.describe`) each file says what it holds: pictures in
    their text chunks (gray16 also in a sidecar, since it is the one to read back), EXR in header attributes,
    TIFF in ImageDescription, npy in a sidecar, ply in header comments. `ply` needs `cloud` (a CloudRequest);
    its depth must be a distance (metres), never relative inverse depth.
    """
    name = canonical_format(fmt)
    depth_hw = np.asarray(depth_hw, dtype=np.float32)
    if depth_hw.ndim != 2 or depth_hw.size == 0:
        raise ValueError(f"depth map must be a non-empty HxW array, got shape {depth_hw.shape}")
    if name in CLOUD_FORMATS:
        check_side_by_side(name, image_bgr is not None)
        if cloud is None:
            raise ValueError("a point cloud needs a CloudRequest (intrinsics and colours)")
        if ext is not None and ext.lower() not in _FILE_EXTS[name]:
            raise UserError(f"a point cloud cannot be written as a {ext} file; use .ply")
        points = build_cloud(depth_hw, cloud.colors_bgr, cloud.intrinsics, cloud.options, max_depth=cloud.max_depth)
        return [("", encode_ply(points, description or {}))]
    if name in RAW_FORMATS:
        check_side_by_side(name, image_bgr is not None)
        data = _encode_raw(depth_hw, name, ext, description)
        if name == "npy" and description is not None:
            return [("", data), (SIDECAR_SUFFIX, metadata.sidecar(description))]
        return [("", data)]

    ext = (ext or ".png").lower()
    if ext not in _PICTURE_EXTS:
        raise UserError(f"a {name} picture cannot be written as a {ext} file; use {', '.join(_PICTURE_EXTS)}")
    if name == "gray16" and ext in _EIGHT_BIT_EXTS:
        raise UserError(f"gray16 needs a 16-bit container (.png); {ext} holds 8 bits per channel")
    value_range = depth_range(depth_hw) if value_range is None else value_range
    picture = to_visual(depth_hw, name, cmap=cmap, invert=invert, metric=metric, value_range=value_range)
    if image_bgr is not None:
        picture = side_by_side(image_bgr, picture)
    described = None if description is None else picture_description(
        description, name, cmap=cmap, invert=invert, metric=metric, value_range=value_range,
        side_by_side_width=depth_hw.shape[1] if image_bgr is not None else None)
    if ext == ".png":
        data = png.encode(picture, metadata.png_description_chunks(described) if described is not None else ())
    else:
        ok, data = cv2.imencode(ext, picture)
        if not ok:
            raise UserError(f"OpenCV could not encode the depth picture as {ext}")
        data = data.tobytes()
    if described is None:
        return [("", data)]
    if ext in (".jpg", ".jpeg"):
        data = metadata.jpeg_with_comment(data, described)
    elif ext == ".webp":
        data = metadata.webp_with_xmp(data, described, picture.shape[1], picture.shape[0])
    outputs = [("", data)]
    if name == "gray16":
        outputs.append((SIDECAR_SUFFIX, metadata.sidecar(described)))
    return outputs


def encode(depth_hw, fmt, **options):
    """The complete bytes of one output file for `depth_hw` in format `fmt` (no sidecar; see encode_outputs).

    Picture formats are PNG unless `ext` names another container (".jpg", ".jpeg", ".webp"; 8-bit only, so
    not for gray16). Raw formats hold the float32 values exactly: npy (np.save), exr, tiff. With `image_bgr`
    the picture is `side_by_side(image_bgr, picture)`; `cmap`, `invert`, `metric` and `value_range` are
    `to_visual`'s.
    """
    return encode_outputs(depth_hw, fmt, **options)[0][1]


class RangeTracker:
    """The normalisation range for each frame of a video, chosen so depth videos do not flicker.

    The modes trade passes against stability and contrast:

    * "ema": one pass. The 1st/99th percentiles (`low_pct`/`high_pct`, estimated on a strided subsample so
      it stays cheap per frame) are smoothed by an exponential moving average with weight `alpha`; the
      first frame sets the start. Stable, robust to a few extreme pixels, but the range drifts slowly after
      a scene cut, and pixels beyond it clip.
    * "global": a fixed `global_range` given up front (the runner computes it in a first pass over the
      whole video). Exact and perfectly stable, but the video is read twice.
    * "frame": each frame's own finite min/max, the single-image rule. Maximum contrast, but it flickers.
    """

    def __init__(self, mode="ema", *, alpha=0.1, low_pct=1.0, high_pct=99.0, global_range=None):
        if mode not in NORMALIZE_MODES:
            raise ValueError(f"normalize mode must be one of {NORMALIZE_MODES}, got {mode!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not 0.0 <= low_pct < high_pct <= 100.0:
            raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct}, {high_pct}")
        if mode == "global":
            if global_range is None:
                raise ValueError('normalize mode "global" needs global_range=(lo, hi)')
            lo, hi = (float(v) for v in global_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"global_range must be finite with lo <= hi, got {global_range}")
            global_range = (lo, hi)
        self.mode = mode
        self.alpha = alpha
        self.low_pct = low_pct
        self.high_pct = high_pct
        self.global_range = global_range
        self._smoothed = None  # the EMA state, (lo, hi), once a frame with finite values has been seen

    def reset(self) -> None:
        """Forget the smoothed range (a scene cut): the next frame starts it afresh."""
        self._smoothed = None

    def update(self, depth_hw):
        """The (lo, hi) to normalise this frame with; frames must be passed in order."""
        if self.mode == "global":
            return self.global_range
        if self.mode == "frame":
            return depth_range(depth_hw)
        depth_hw = np.asarray(depth_hw)
        step = max(1, round(math.sqrt(depth_hw.size / _EMA_SAMPLES)))
        sample = depth_hw[::step, ::step]
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:  # nothing to learn from this frame; keep the range the video had
            return self._smoothed if self._smoothed is not None else (0.0, 0.0)
        lo, hi = (float(v) for v in np.percentile(sample, (self.low_pct, self.high_pct)))
        if self._smoothed is None:
            self._smoothed = (lo, hi)
        else:
            old_lo, old_hi = self._smoothed
            self._smoothed = (old_lo + self.alpha * (lo - old_lo), old_hi + self.alpha * (hi - old_hi))
        return self._smoothed
