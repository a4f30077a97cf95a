"""Relative depth becomes distances here: from a near/far range, or fitted to points of known depth.

A relative model's output is inverse depth up to an unknown scale and shift: 1/Z = scale * d + shift. Nothing
in the image fixes the two numbers, so the user gives them, in one of two ways:

* `--near N --far F`: the map's smallest value is put at 1/F and its largest at 1/N;
* `--align-to points.csv`: pixels whose distance is known, fitted by weighted least squares in inverse-depth
  space with the normal equations of MiDaS's `compute_scale_and_shift`, the alignment upstream's evaluation
  uses for disparity.

Both give a `DisparityToDepth`, applied the same way to every output format (and to every frame of a video, so a
video is scaled once, consistently). Pure numpy, no I/O: the job reads the CSV and hands in its text.
"""

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

from dav2_cli.errors import UserError

MIN_POINTS = 2  # two unknowns: scale and shift


@dataclass(frozen=True)
class DisparityToDepth:
    """1/Z = scale * d + shift, with d the model's disparity (a relative map, or 1/Z of a metric one)."""

    scale: float
    shift: float
    method: str  # "near-far" or "points"
    details: dict = field(default_factory=dict)  # what the user gave, and the fit's residual

    def apply(self, disparity_hw) -> np.ndarray:
        """float32 depth, larger = farther; inf where the line puts a pixel beyond infinity (1/Z <= 0)."""
        inverse_hw = self.scale * np.asarray(disparity_hw, dtype=np.float64) + self.shift
        with np.errstate(divide="ignore", invalid="ignore"):
            depth_hw = np.where(inverse_hw > 0, 1.0 / inverse_hw, np.inf)
        depth_hw[np.isnan(inverse_hw)] = np.nan
        return depth_hw.astype(np.float32)

    def as_dict(self, farther: bool) -> dict:
        """The fit for a file's description; `farther`: whether the model's values grow with distance, which
        decides what d is."""
        return {"method": self.method, "inverse_depth": f"1/depth = scale * {disparity_name(farther)} + shift",
                "scale": self.scale,
                "shift": self.shift, **self.details}


def disparity_name(farther: bool) -> str:
    """d in the formula, in terms of the value the model wrote: the value itself (inverse depth), or 1 over a
    depth map's (metric, or DA3's relative depth)."""
    return "1/value" if farther else "value"


def model_disparity(values_hw, farther: bool) -> np.ndarray:
    """What the fit works on: an inverse-depth map as it is, a map that grows with distance (metric, or DA3's
    relative depth) as 1/Z (NaN where Z <= 0)."""
    values_hw = np.asarray(values_hw, dtype=np.float64)
    if not farther:
        return values_hw
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values_hw > 0, 1.0 / values_hw, np.nan)


def from_near_far(disparity_hw, near: float, far: float) -> DisparityToDepth:
    """The line through (min d, 1/far) and (max d, 1/near): the map's range spans near..far."""
    if not (0 < near < far and math.isfinite(far)):
        raise UserError(f"--near {near:g} --far {far:g}: need 0 < near < far")
    finite = np.asarray(disparity_hw, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0 or finite.min() == finite.max():
        raise UserError("--near/--far: the depth map is constant, so it has no range to spread between them")
    low, high = float(finite.min()), float(finite.max())
    scale = (1.0 / near - 1.0 / far) / (high - low)
    return DisparityToDepth(scale, 1.0 / far - scale * low, "near-far", {"near": near, "far": far})


@dataclass(frozen=True)
class KnownPoint:
    x: float  # pixels of the decoded image, pixel centres at integers
    y: float
    depth: float  # metres, planar (along the optical axis)
    frame: int | None = None  # a video frame (0-based index in the source video); None: any
    weight: float = 1.0
    image: str | None = None  # the input it was measured on, as the CSV names it; None: the one input


def parse_points(text: str, name: str) -> list[KnownPoint]:
    """Rows `x,y,depth_m` (and optionally `frame`), a header line allowed.

    Without a header the columns are x, y, depth_m[, frame]. A header names them in any order and may add a
    `weight` column (relative trust in each point; default 1) and an `image` column (which input the point was
    measured on; the job matches it to its inputs). Blank lines and lines starting with `#` are
    skipped. Each bad row is refused with its line number, so a typo never silently moves the fit.
    """
    rows = [(number, row) for number, row in enumerate(csv.reader(io.StringIO(text)), start=1)
            if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    if not rows:
        raise UserError(f"{name}: no points (expected rows of x,y,depth_m)")
    columns = ["x", "y", "depth_m", "frame"]
    first = [cell.strip().lower() for cell in rows[0][1]]
    if not _is_number(first[0]):
        missing = {"x", "y", "depth_m"} - set(first)
        if missing:
            raise UserError(f"{name}: line {rows[0][0]}: the header needs columns x, y and depth_m "
                            f"(missing {', '.join(sorted(missing))})")
        unknown = set(first) - {"x", "y", "depth_m", "frame", "weight", "image"}
        if unknown:
            raise UserError(f"{name}: line {rows[0][0]}: unknown column {sorted(unknown)[0]!r} "
                            f"(known: x, y, depth_m, frame, weight, image)")
        columns, rows = first, rows[1:]
    points = []
    for number, row in rows:
        cells = [cell.strip() for cell in row]
        if len(cells) < 3 or len(cells) > len(columns):
            raise UserError(f"{name}: line {number}: expected {','.join(columns[:3])}"
                            f"{'' if len(columns) == 3 else ' and optionally ' + ','.join(columns[3:])}")
        image = next((cell for column, cell in zip(columns, cells) if column == "image"), "")
        try:
            values = {column: float(cell) for column, cell in zip(columns, cells) if cell != "" and column != "image"}
        except ValueError:
            raise UserError(f"{name}: line {number}: not a number in {','.join(cells)}") from None
        if not {"x", "y", "depth_m"} <= set(values):
            raise UserError(f"{name}: line {number}: x, y and depth_m are required")
        frame = values.get("frame")
        if frame is not None and (frame != int(frame) or frame < 0):
            raise UserError(f"{name}: line {number}: frame must be a whole number >= 0, got {frame:g}")
        if "image" in columns and not image:
            raise UserError(f"{name}: line {number}: the image column is empty; name the image each point is on")
        points.append(KnownPoint(values["x"], values["y"], values["depth_m"],
                                 None if frame is None else int(frame), values.get("weight", 1.0), image or None))
    return points


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def first_frame_with_points(points: list[KnownPoint]) -> int | None:
    """The video frame a fit is made on: the smallest `frame` named; None when no point names one."""
    frames = [point.frame for point in points if point.frame is not None]
    return min(frames) if frames else None


def sample(values_hw, x, y) -> float:
    """Bilinear value at (x, y), pixel centres at integers; NaN outside the image or next to a NaN."""
    values_hw = np.asarray(values_hw)
    height, width = values_hw.shape
    if not (-0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5):
        return math.nan
    x, y = min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0)
    x0, y0 = min(int(x), width - 2) if width > 1 else 0, min(int(y), height - 2) if height > 1 else 0
    x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
    tx, ty = x - x0, y - y0
    top = (1 - tx) * values_hw[y0, x0] + tx * values_hw[y0, x1]
    bottom = (1 - tx) * values_hw[y1, x0] + tx * values_hw[y1, x1]
    return float((1 - ty) * top + ty * bottom)


def fit_points(disparity_hw, points: list[KnownPoint], name: str) -> DisparityToDepth:
    """Scale and shift so that 1/Z = scale * d + shift passes closest to the known points.

    Least squares on inverse depth, weighted by depth^2 times each point's weight: an error of dZ in 1/Z is
    dZ/Z^2, so this weighting makes every point's *relative* depth error count alike (otherwise the nearest
    points would decide the fit alone). Points outside the image, with a depth that is not positive, or on a
    pixel without a finite model value are not usable; fewer than 2 usable points is refused.
    """
    usable = []
    for point in points:
        d = sample(disparity_hw, point.x, point.y)
        if math.isfinite(d) and math.isfinite(point.depth) and point.depth > 0 and point.weight > 0:
            usable.append((d, point))
    if len(usable) < MIN_POINTS:
        left_out = len(points) - len(usable)
        reason = f" ({left_out} outside the image, not positive, or on a pixel without depth)" if left_out else ""
        raise UserError(f"{name}: {len(usable)} usable point{'s' if len(usable) != 1 else ''}{reason}; "
                        f"aligning scale and shift needs at least {MIN_POINTS} at different depths")
    d = np.array([value for value, _ in usable])
    depth = np.array([point.depth for _, point in usable])
    weight = np.array([point.weight for _, point in usable]) * depth ** 2
    target = 1.0 / depth
    # MiDaS's normal equations with the mask replaced by weights: A = [[sum w d^2, sum w d], [sum w d, sum w]]
    a00, a01, a11 = np.sum(weight * d * d), np.sum(weight * d), np.sum(weight)
    b0, b1 = np.sum(weight * d * target), np.sum(weight * target)
    det = a00 * a11 - a01 * a01
    if not det > 1e-12 * a00 * a11:
        raise UserError(f"{name}: the model gives the same value at every point, so scale and shift cannot be "
                        f"told apart; add points at different depths")
    scale = (a11 * b0 - a01 * b1) / det
    shift = (-a01 * b0 + a00 * b1) / det
    if not scale > 0:
        raise UserError(f"{name}: the points put nearer things farther than the model does (fitted scale "
                        f"{scale:.3g}); check that x,y are pixels of the image as displayed and depth_m is in metres")
    fitted = 1.0 / np.maximum(scale * d + shift, 1e-300)
    relative_error = (fitted - depth) / depth
    user_weight = weight / depth ** 2
    rms = float(np.sqrt(np.sum(user_weight * relative_error ** 2) / np.sum(user_weight)))
    return DisparityToDepth(float(scale), float(shift), "points", {
        "file": name, "points": len(usable), "rms_relative_error": rms,
        "max_relative_error": float(np.max(np.abs(relative_error)))})
