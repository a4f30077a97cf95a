"""Two eyes' views of one picture and its nearness: a forward warp with a z-buffer, filled from the background.

Geometry (iw3's, which VR players' users are used to): with nearness D (0 far .. 1 near), S = max(W, H),
divergence d in percent and convergence c, each eye is shifted by s = d/100 * S/2 * (D - c); the left eye's
pixel x lands at x + s, the right eye's at x - s. The total disparity d/100 * S * (D - c) puts D > c in front
of the screen, D = c on it and D < c behind it; a flat map only shifts both views by the convergence term.

Why a forward warp: sampling each output pixel from the source (a backward warp) copies the foreground's edge
into the background beside it (ghosts). Here every source pixel is sent to its target, and where several land
on one pixel the nearest wins (a z-buffer keyed by nearness). The pixels nobody lands on are the background
that the foreground hid from the other eye; they are filled from whichever side of the gap is farther, never by
stretching the foreground over them. Before the warp the nearness is dilated by `edge_radius` pixels, so the
foreground's edge pixels (which the model blurs over a pixel or two, mixing both depths) travel with the
foreground instead of tearing off and smearing into the gap.

All of it is whole-array numpy on rows: no Python loop over pixels.
"""

import cv2
import numpy as np

DEFAULT_DIVERGENCE = 2.0  # percent of the picture's larger side, as iw3
DEFAULT_CONVERGENCE = 0.5  # the nearness that sits on the screen plane
MAX_DIVERGENCE = 10.0  # beyond this the eyes cannot fuse the views (and the shifts tear the picture apart)

_DEPTH_LEVELS = 1 << 16  # nearness is quantised to this many z-buffer levels: far finer than a pixel of shift
_COLUMN_BITS = 24  # a z-buffer entry: (nearness level << _COLUMN_BITS) | preference among equal levels


def check_settings(divergence: float, convergence: float) -> None:
    """ValueError unless 0 <= divergence <= MAX_DIVERGENCE and 0 <= convergence <= 1."""
    if not 0.0 <= divergence <= MAX_DIVERGENCE:
        raise ValueError(f"divergence must be between 0 and {MAX_DIVERGENCE:g} (% of the picture), got {divergence}")
    if not 0.0 <= convergence <= 1.0:
        raise ValueError(f"convergence must be between 0 (far) and 1 (near), got {convergence}")


def edge_radius(width: int, height: int) -> int:
    """How far the foreground grows before the warp: one pixel up to 1080p, two at 4K (the model's edge blur
    scales with the picture)."""
    return max(1, round(max(width, height) / 2000))


def eye_shift(nearness_hw, divergence: float, convergence: float) -> np.ndarray:
    """float32 per-pixel shift s of the left eye (the right eye's is -s), in pixels."""
    height, width = nearness_hw.shape
    scale = np.float32(divergence / 100.0 * max(width, height) / 2.0)
    return (np.asarray(nearness_hw, dtype=np.float32) - np.float32(convergence)) * scale


def _warp_eye(image, level_hw, shift_hw, direction: int):
    """One eye: `image` forward-warped by `direction` * shift, nearest first, holes filled from the far side."""
    height, width = level_hw.shape
    cols = np.arange(width, dtype=np.int32)
    target_hw = np.rint(cols + direction * shift_hw).astype(np.int32)
    inside = (target_hw >= 0) & (target_hw < width)
    # Among equal nearness the source nearer the moving edge wins (for the left eye, which moves right, the
    # leftmost); with rounding this is also what a continuous warp would show.
    preference = (width - 1 - cols) if direction > 0 else cols
    key_hw = (level_hw.astype(np.int64) << _COLUMN_BITS) | preference
    rows = np.broadcast_to(np.arange(height, dtype=np.int64)[:, None] * width, (height, width))
    flat_target = (rows + target_hw)[inside]
    zbuffer = np.full(height * width, -1, dtype=np.int64)
    np.maximum.at(zbuffer, flat_target, key_hw[inside])
    zbuffer = zbuffer.reshape(height, width)
    landed = zbuffer >= 0
    winner = zbuffer & ((1 << _COLUMN_BITS) - 1)
    source_col = (width - 1 - winner) if direction > 0 else winner
    warped_level = zbuffer >> _COLUMN_BITS  # -1 where nothing landed

    # Nearest landed pixel to the left and to the right of each pixel, in the same row.
    left_col = np.maximum.accumulate(np.where(landed, cols, -1), axis=1)
    right_col = np.minimum.accumulate(np.where(landed, cols, width)[:, ::-1], axis=1)[:, ::-1]
    row_index = np.arange(height)[:, None]
    left_level = np.where(left_col >= 0, warped_level[row_index, np.maximum(left_col, 0)], _DEPTH_LEVELS)
    right_level = np.where(right_col < width, warped_level[row_index, np.minimum(right_col, width - 1)],
                           _DEPTH_LEVELS)
    from_left = left_level <= right_level  # the farther side is the background the gap belongs to
    fill_col = np.where(from_left, left_col, right_col)
    fill_col = np.clip(fill_col, 0, width - 1)  # only a row where nothing landed at all (impossible here)
    final_col = np.where(landed, source_col, source_col[row_index, fill_col])
    return image[row_index, final_col]


def stereo_views(image, nearness_hw, *, divergence: float = DEFAULT_DIVERGENCE,
                 convergence: float = DEFAULT_CONVERGENCE) -> tuple[np.ndarray, np.ndarray]:
    """(left eye, right eye) pictures of `image` (HxW or HxWxC, any dtype) seen with nearness `nearness_hw`.

    Every output pixel holds a source pixel's value: nothing is blended, nothing is left unfilled.
    """
    check_settings(divergence, convergence)
    nearness_hw = np.asarray(nearness_hw, dtype=np.float32)
    height, width = nearness_hw.shape
    if np.asarray(image).shape[:2] != (height, width):
        raise ValueError(f"image {np.asarray(image).shape[:2]} and nearness {nearness_hw.shape} differ in size")
    radius = edge_radius(width, height)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    grown_hw = cv2.dilate(nearness_hw, kernel)
    shift_hw = eye_shift(grown_hw, divergence, convergence)
    level_hw = np.rint(np.clip(grown_hw, 0.0, 1.0) * (_DEPTH_LEVELS - 1)).astype(np.int32)
    return _warp_eye(image, level_hw, shift_hw, +1), _warp_eye(image, level_hw, shift_hw, -1)
