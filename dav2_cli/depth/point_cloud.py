"""Point clouds and meshes from a depth map: which points to trust, and how neighbours are joined.

A point is kept only where the depth is finite, positive, below a metric model's saturated far end, and not
smeared across a depth edge (`edge_strength`); thinning happens after that judgement, on the full-resolution
map. Pure numpy, no I/O: the job hands in arrays and gets arrays back (`outputs.ply` and `outputs.glb` write them).
"""

import math
from dataclasses import dataclass

import numpy as np

from dav2_cli.depth.camera import Intrinsics, unproject

# A point is a flying pixel when ln Z changes faster than this per radian of viewing angle between it and a
# neighbour. For a local plane that rate is about tan(angle between its normal and the line of sight), so 20
# drops surfaces seen within ~3 degrees of edge-on: the ramps the model smears across depth edges (1-2 patches
# wide), and a floor beyond ~30 m under a camera 1.5 m above it. 0 keeps every point.
DEFAULT_EDGE_THRESHOLD = 20.0

# Metric models put a sigmoid times max_depth last; values this close to max_depth mean "at the far end or
# beyond" (sigmoid above 0.999), not a measured distance.
SATURATED_FRACTION = 0.999


def valid_depth(depth_hw, max_depth: float | None = None) -> np.ndarray:
    """Where a depth is a distance: finite, positive, and (metric models) short of the saturated far end."""
    depth_hw = np.asarray(depth_hw)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth_hw) & (depth_hw > 0)
        if max_depth is not None:
            valid &= depth_hw < SATURATED_FRACTION * max_depth
    return valid


def _log_depth(depth_hw, valid_hw) -> np.ndarray:
    log_hw = np.full(depth_hw.shape, np.nan)
    log_hw[valid_hw] = np.log(np.asarray(depth_hw, dtype=np.float64)[valid_hw])
    return log_hw


def edge_strength(depth_hw, intrinsics: Intrinsics, valid_hw=None) -> np.ndarray:
    """Per pixel, the largest |change of ln Z| to a 4-neighbour per radian of viewing angle between them.

    Neighbours u and u+1 are 1/fx radians apart (near the axis), so the rate is |d ln Z| * fx across and
    |d ln Z| * fy down. Measured per angle rather than per pixel, it does not depend on the image's resolution:
    the model smears an edge over about the same angle whatever the image size. Invalid neighbours count as 0.
    """
    valid_hw = valid_depth(depth_hw) if valid_hw is None else valid_hw
    log_hw = _log_depth(depth_hw, valid_hw)
    strength = np.zeros(log_hw.shape)
    across = np.nan_to_num(np.abs(np.diff(log_hw, axis=1)), nan=0.0) * intrinsics.fx
    down = np.nan_to_num(np.abs(np.diff(log_hw, axis=0)), nan=0.0) * intrinsics.fy
    np.maximum(strength[:, :-1], across, out=strength[:, :-1])
    np.maximum(strength[:, 1:], across, out=strength[:, 1:])
    np.maximum(strength[:-1, :], down, out=strength[:-1, :])
    np.maximum(strength[1:, :], down, out=strength[1:, :])
    return strength


def choose_stride(height: int, width: int, stride: int = 1, max_points: int | None = None) -> int:
    """The smallest step >= `stride` whose grid (every step-th row and column) has at most `max_points` pixels."""
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if max_points is None:
        return stride
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    step = max(stride, int(math.sqrt(height * width / max_points)))  # no smaller step can fit
    while -(-height // step) * -(-width // step) > max_points:
        step += 1
    return step


@dataclass(frozen=True)
class CloudOptions:
    """What to keep and how to lay out the points; the defaults are the documented ones."""

    edge_threshold: float = DEFAULT_EDGE_THRESHOLD  # 0 keeps every valid point and joins every neighbour
    stride: int = 1
    max_points: int | None = None
    mesh: bool = False
    y_up: bool = False  # y up, z back (Blender, three.js) instead of OpenCV's y down, z forward


@dataclass(frozen=True)
class Cloud:
    points_n3: np.ndarray  # float32, in the axes `y_up` chose
    colors_n3: np.ndarray  # uint8 RGB, each vertex's pixel's colour
    pixels_n2: np.ndarray  # int64 (row, col) of each vertex's pixel in the decoded image
    faces_m3: np.ndarray | None  # int32 vertex indices, counter-clockwise seen from the camera
    stride: int
    y_up: bool


def _to_rgb8(image_bgr) -> np.ndarray:
    image = np.asarray(image_bgr)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = image[:, :, 2::-1]  # BGR(A) -> RGB
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return image.astype(np.uint8)


def _link_ok(log_a, log_b, keep_a, keep_b, angle: float, threshold: float) -> np.ndarray:
    """Whether two kept grid points `angle` radians apart may be joined: their ln Z changes slowly enough."""
    ok = keep_a & keep_b
    if threshold > 0:
        with np.errstate(invalid="ignore"):
            ok &= np.abs(log_a - log_b) <= threshold * angle
    return ok


def mesh_faces(log_hw, keep_hw, index_hw, intrinsics: Intrinsics, step: int, threshold: float) -> np.ndarray:
    """Triangles between neighbouring kept grid points, none of whose sides crosses a depth edge.

    Each grid square is split along one diagonal: top-right to bottom-left when either of its two triangles
    is whole, else top-left to bottom-right (a square missing one corner still gets the triangle of the other
    three). Triangles run counter-clockwise as seen from the camera, so viewers light their front faces.
    """
    ax, ay = step / intrinsics.fx, step / intrinsics.fy  # one grid step in radians, across and down
    diagonal = math.hypot(ax, ay)
    a_log, b_log, c_log, d_log = log_hw[:-1, :-1], log_hw[:-1, 1:], log_hw[1:, :-1], log_hw[1:, 1:]
    a_keep, b_keep, c_keep, d_keep = keep_hw[:-1, :-1], keep_hw[:-1, 1:], keep_hw[1:, :-1], keep_hw[1:, 1:]
    top = _link_ok(a_log, b_log, a_keep, b_keep, ax, threshold)
    bottom = _link_ok(c_log, d_log, c_keep, d_keep, ax, threshold)
    left = _link_ok(a_log, c_log, a_keep, c_keep, ay, threshold)
    right = _link_ok(b_log, d_log, b_keep, d_keep, ay, threshold)
    rising = _link_ok(b_log, c_log, b_keep, c_keep, diagonal, threshold)  # top-right to bottom-left
    falling = _link_ok(a_log, d_log, a_keep, d_keep, diagonal, threshold)  # top-left to bottom-right
    t1 = left & rising & top  # a, c, b
    t2 = rising & bottom & right  # b, c, d
    other_split = ~(t1 | t2)
    t3 = other_split & left & bottom & falling  # a, c, d
    t4 = other_split & falling & right & top  # a, d, b
    a, b = index_hw[:-1, :-1], index_hw[:-1, 1:]
    c, d = index_hw[1:, :-1], index_hw[1:, 1:]
    faces = [np.stack([p[m], q[m], r[m]], axis=1)
             for m, (p, q, r) in ((t1, (a, c, b)), (t2, (b, c, d)), (t3, (a, c, d)), (t4, (a, d, b)))]
    return np.concatenate(faces).astype(np.int32)


def build_cloud(depth_hw, image_bgr, intrinsics: Intrinsics, options: CloudOptions = CloudOptions(), *,
                max_depth: float | None = None) -> Cloud:
    """The coloured points (and optionally faces) of planar depth `depth_hw` seen through `intrinsics`.

    `depth_hw` must already be a distance (metres for metric models, or a relative map converted by
    `align`); `max_depth` is a metric model's saturation limit. Flying pixels are judged on the full-resolution
    map before the grid is thinned by `stride`/`max_points`, so thinning never lets an edge pixel through.
    """
    depth_hw = np.asarray(depth_hw, dtype=np.float32)
    height, width = depth_hw.shape
    if np.asarray(image_bgr).shape[:2] != (height, width):
        raise ValueError(f"image {np.asarray(image_bgr).shape[:2]} and depth {depth_hw.shape} differ in size")
    if options.edge_threshold < 0:
        raise ValueError(f"edge threshold must be >= 0, got {options.edge_threshold}")
    keep_hw = valid_depth(depth_hw, max_depth)
    if options.edge_threshold > 0:
        keep_hw &= edge_strength(depth_hw, intrinsics, keep_hw) <= options.edge_threshold
    step = choose_stride(height, width, options.stride, options.max_points)
    rows = np.arange(0, height, step)
    cols = np.arange(0, width, step)
    grid_keep = keep_hw[::step, ::step]
    grid_rows, grid_cols = np.nonzero(grid_keep)
    pixel_rows, pixel_cols = rows[grid_rows], cols[grid_cols]
    depth_n = depth_hw[pixel_rows, pixel_cols]
    points = unproject(depth_n, pixel_rows, pixel_cols, intrinsics)
    if options.y_up:
        points[:, 1:] *= -1.0  # a half turn about x: y up, z towards the viewer (keeps handedness)
    colors = _to_rgb8(image_bgr)[pixel_rows, pixel_cols]
    faces = None
    if options.mesh:
        index_hw = np.full(grid_keep.shape, -1, dtype=np.int64)
        index_hw[grid_rows, grid_cols] = np.arange(grid_rows.size)
        log_hw = _log_depth(depth_hw[::step, ::step], grid_keep)
        faces = mesh_faces(log_hw, grid_keep, index_hw, intrinsics, step, options.edge_threshold)
    return Cloud(points.astype(np.float32), np.ascontiguousarray(colors), np.stack([pixel_rows, pixel_cols], 1),
                 faces, step, options.y_up)
