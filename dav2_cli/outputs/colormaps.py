"""The colormaps colour pictures are drawn with, as 256-entry BGR tables built once per process.

The names are importable without numpy or OpenCV (the CLI lists them in `--help`); the tables are built on
first use. `Spectral_r`, the default, is computed the way matplotlib computes it, so colour pictures equal
upstream's byte for byte; the others are OpenCV's own copies of the matplotlib/Google maps.
"""

import functools

from dav2_cli.errors import UserError

CMAPS = ("Spectral_r", "turbo", "inferno", "magma", "viridis", "gray", "plasma", "cividis", "jet", "bone")
_OPENCV_NAMES = {"turbo": "TURBO", "inferno": "INFERNO", "magma": "MAGMA", "viridis": "VIRIDIS", "plasma": "PLASMA",
                 "cividis": "CIVIDIS", "jet": "JET", "bone": "BONE"}  # cv2.COLORMAP_<name>

# ColorBrewer's 11-class Spectral, the control colours matplotlib's "Spectral" interpolates between.
_SPECTRAL_HEX = (
    0x9E0142, 0xD53E4F, 0xF46D43, 0xFDAE61, 0xFEE08B, 0xFFFFBF,
    0xE6F598, 0xABDDA4, 0x66C2A5, 0x3288BD, 0x5E4FA2,
)  # fmt: skip


def _spectral_r_rgb():
    """matplotlib's Spectral_r as 256 float RGB rows, computed as its LinearSegmentedColormap computes it.

    The control colours sit at evenly spaced positions (reversed for "_r": position 1 - x); entry i is the
    linear blend at i/255 between its two neighbours. The blend is written in matplotlib's arithmetic order
    (`t * (right - left) + left`) because upstream truncates `value * 255` to uint8, where a last-bit
    difference at a control point would change a byte.
    """
    import numpy as np

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
def colormap_table(cmap: str):
    """The 256x3 uint8 BGR table for `cmap`; UserError for a name not in CMAPS."""
    import cv2
    import numpy as np

    if cmap == "Spectral_r":  # truncated like upstream's `(cmap(x) * 255).astype(uint8)`, then RGB -> BGR
        return np.ascontiguousarray((_spectral_r_rgb() * 255)[:, ::-1].astype(np.uint8))
    if cmap == "gray":
        return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    if cmap in _OPENCV_NAMES:
        ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
        code = getattr(cv2, f"COLORMAP_{_OPENCV_NAMES[cmap]}")
        return np.ascontiguousarray(cv2.applyColorMap(ramp, code).reshape(256, 3))
    raise UserError(f"unknown colormap {cmap!r}; choose one of {', '.join(CMAPS)}")
