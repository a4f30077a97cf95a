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

# A z-buffer entry is one int32: the nearness level in the high bits, and the source column (which of several
# sources of equal nearness wins) in the low ones. Half the memory traffic of int64, on the warp's hottest arrays.
_KEY_BITS = 31

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


def _warp_eye(image_flat, level_key_hw, shift_hw, direction: int, column_bits: int) -> np.ndarray:
    """One eye: the flat source index each output pixel shows, after a forward warp by `direction` * shift
    (nearest first) and a fill of the holes from their farther side."""
    height, width = level_key_hw.shape
    cols = np.arange(width, dtype=np.int32)
    target_hw = np.multiply(shift_hw, np.float32(direction))
    target_hw += cols
    np.rint(target_hw, out=target_hw)
    target_hw = target_hw.astype(np.int32)
    row_start = np.arange(0, height * width, width, dtype=np.int32)[:, None]
    outside = height * width  # one spare z-buffer slot takes every pixel that leaves the picture
    flat_target = np.where((target_hw >= 0) & (target_hw < width), target_hw + row_start, outside)
    # Among equal nearness the source nearer the moving edge wins (for the left eye, which moves right, the
    # leftmost); with rounding, this is also what a continuous warp would show.
    preference = (width - 1 - cols) if direction > 0 else cols
    zbuffer = np.full(height * width + 1, -1, dtype=np.int32)
    np.maximum.at(zbuffer, flat_target.ravel(), (level_key_hw | preference).ravel())
    zbuffer = zbuffer[:outside]
    landed = zbuffer >= 0
    source_col = zbuffer & ((1 << column_bits) - 1)
    if direction > 0:
        source_col = width - 1 - source_col
    source_flat = (source_col.reshape(height, width) + row_start).ravel()

    holes = np.flatnonzero(~landed)
    if holes.size:
        # Each hole's nearest landed pixels to the left and right in its row; it takes the farther one's source.
        filled = np.flatnonzero(landed)
        after = np.searchsorted(filled, holes)
        left = filled[np.maximum(after - 1, 0)]
        right = filled[np.minimum(after, filled.size - 1)]
        row = holes // width
        far = np.int32(np.iinfo(np.int32).max)
        left_level = np.where((after > 0) & (left // width == row), zbuffer[left] >> column_bits, far)
        right_level = np.where((after < filled.size) & (right // width == row), zbuffer[right] >> column_bits, far)
        source_flat[holes] = source_flat[np.where(left_level <= right_level, left, right)]
    return image_flat.take(source_flat, axis=0)


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
    column_bits = max(1, (width - 1).bit_length())
    levels = (1 << (_KEY_BITS - column_bits)) - 1  # 2^20 levels at 1080p: far finer than a pixel of shift
    level_key_hw = np.clip(grown_hw, 0.0, 1.0)
    level_key_hw *= levels
    level_key_hw = np.rint(level_key_hw, out=level_key_hw).astype(np.int32) << column_bits
    image = np.asarray(image)
    image_flat = image.reshape(height * width, -1)
    return tuple(_warp_eye(image_flat, level_key_hw, shift_hw, direction, column_bits).reshape(image.shape)
                 for direction in (+1, -1))
