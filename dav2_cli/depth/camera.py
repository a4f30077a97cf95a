"""The camera a depth map was seen through: its intrinsics, where they come from, and unprojection.

Most point clouds made from monocular depth come out flat or bent for one of three reasons: relative inverse
depth used as Z, a focal length in the wrong units, or one fixed pixel focal used for every image size. So the
rules below are explicit and in one place (which points to keep, and how they are joined, is `point_cloud`):

* The camera is OpenCV's pinhole: x right, y down, z forward; pixel u's centre sits at u, so
  X = (u - cx) Z / fx and Y = (v - cy) Z / fy, with Z the planar depth the metric models give.
* Intrinsics are in pixels of the image as decoded (EXIF orientation applied): given, from a horizontal field
  of view, from the photo's 35 mm-equivalent focal length, or else an assumed field of view that scales with
  the image (never a fixed pixel focal).

Pure numpy, no I/O: the job hands in arrays and gets arrays back.
"""

import math
from dataclasses import dataclass

import numpy as np

# Assumed when nothing says the focal length: the field of view of Hypersim's camera, on which the indoor
# metric models were trained, and near a phone's main camera in landscape (~65-70 degrees).
DEFAULT_HFOV_DEG = 60.0

DIAGONAL_35MM = math.hypot(36.0, 24.0)  # the diagonal of a 36x24 mm frame, which "35 mm equivalent" refers to


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of the decoded image, and where they came from (said in the outputs)."""

    fx: float
    fy: float
    cx: float
    cy: float
    source: str  # "given", "hfov", "exif" or "assumed"
    note: str = ""  # a human-readable origin, e.g. "EXIF FocalLengthIn35mmFilm 26 mm"

    def as_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "source": self.source,
                "note": self.note}


def focal_from_hfov(width: int, hfov_deg: float) -> float:
    """fx = W / (2 tan(hfov / 2)): the focal that makes the image's width span `hfov_deg` degrees."""
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f"a horizontal field of view must be between 0 and 180 degrees, got {hfov_deg}")
    return width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))


def focal_from_35mm(width: int, height: int, focal_35mm: float) -> float:
    """f_px = f35 * sqrt(W^2 + H^2) / sqrt(36^2 + 24^2).

    The 35 mm equivalent is defined on the diagonal, so the formula holds whatever the aspect ratio, and holds
    for an image rotated by its EXIF orientation (W and H swap, the diagonal does not change).
    """
    if not focal_35mm > 0:
        raise ValueError(f"a 35 mm-equivalent focal length must be positive, got {focal_35mm}")
    return focal_35mm * math.hypot(width, height) / DIAGONAL_35MM


def resolve_intrinsics(width: int, height: int, *, fx: float | None = None, fy: float | None = None,
                       cx: float | None = None, cy: float | None = None, hfov: float | None = None,
                       focal_35mm: float | None = None) -> Intrinsics:
    """The intrinsics for one image, from the most specific source given.

    Focal length: `fx`/`fy` (one alone means square pixels), else `hfov` degrees, else the photo's
    `focal_35mm`, else `DEFAULT_HFOV_DEG` (source "assumed": the caller says so on stderr). The principal
    point is `cx`/`cy` when given, else the image centre ((W-1)/2, (H-1)/2) in pixel-centre coordinates.
    """
    if fx is not None or fy is not None:
        fx = fy if fx is None else fx
        fy = fx if fy is None else fy
        source, note = "given", "--fx/--fy"
    elif hfov is not None:
        fx = fy = focal_from_hfov(width, hfov)
        source, note = "hfov", f"--hfov {hfov:g} degrees"
    elif focal_35mm is not None:
        fx = fy = focal_from_35mm(width, height, focal_35mm)
        source, note = "exif", f"EXIF FocalLengthIn35mmFilm {focal_35mm:g} mm"
    else:
        fx = fy = focal_from_hfov(width, DEFAULT_HFOV_DEG)
        source = "assumed"
        note = f"no focal length known; assumed a {DEFAULT_HFOV_DEG:g} degree horizontal field of view"
    if not (fx > 0 and fy > 0):
        raise ValueError(f"focal lengths must be positive, got fx={fx}, fy={fy}")
    cx = (width - 1) / 2.0 if cx is None else cx
    cy = (height - 1) / 2.0 if cy is None else cy
    return Intrinsics(float(fx), float(fy), float(cx), float(cy), source, note)


def unproject(depth_n, rows_n, cols_n, intrinsics: Intrinsics) -> np.ndarray:
    """N x 3 float64 camera-frame points of pixels (rows, cols) with planar depths `depth_n` (OpenCV axes)."""
    z = np.asarray(depth_n, dtype=np.float64)
    x = (np.asarray(cols_n, dtype=np.float64) - intrinsics.cx) * z / intrinsics.fx
    y = (np.asarray(rows_n, dtype=np.float64) - intrinsics.cy) * z / intrinsics.fy
    return np.stack([x, y, z], axis=1)
