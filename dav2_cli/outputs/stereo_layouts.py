"""Two eyes' views packed into one picture as 3D players and TVs expect them, and the names that tell players so.

Players decide how to show a file from its name (SKYBOX, DeoVR, Pigasus, Bino and friends look for tokens such
as LR, SBS, TB, Full_SBS, fulltb): a stereo file without them plays as a flat, doubled picture. So every layout
has the suffix its players detect (`SUFFIXES`), and `docs/stereo.md` says which player reads which.

* sbs: full side-by-side, left eye left, 2W x H;  half-sbs: each eye squeezed to half width, W x H;
* tb: full top-bottom, left eye on top, W x 2H;  half-tb: each eye squeezed to half height, W x H;
* cross: full side-by-side with the right eye left, for free viewing with crossed eyes;
* anaglyph: one W x H picture for red-cyan glasses (`anaglyph`).

Squeezes average pixels (OpenCV's area filter), so fine detail does not alias into moire. Pictures are OpenCV's
BGR, uint8 or uint16; no I/O here.
"""

import functools

import cv2
import numpy as np

LAYOUTS = ("sbs", "half-sbs", "tb", "half-tb", "cross", "anaglyph")
ANAGLYPHS = ("dubois", "color", "half-color", "gray")
DEFAULT_ANAGLYPH = "dubois"

SUFFIXES = {
    "sbs": "_LRF_Full_SBS",
    "half-sbs": "_LR",
    "tb": "_TBF_fulltb",
    "half-tb": "_TB",
    "cross": "_RLF_cross",
}

# E. Dubois, "A projection method to generate anaglyph stereo images" (ICASSP 2001), least-squares matrices
# for red-cyan glasses as revised on his site in 2009. Rows give the output's R, G, B; columns weigh the eye's
# linear-light R, G, B. Each eye's term is clipped to 0..1 before the two are added, as in his method.
DUBOIS_LEFT = np.array([[0.437, 0.449, 0.164],
                        [-0.062, -0.062, -0.024],
                        [-0.048, -0.050, -0.017]], dtype=np.float32)
DUBOIS_RIGHT = np.array([[-0.011, -0.032, -0.007],
                         [0.377, 0.761, 0.009],
                         [-0.026, -0.093, 1.234]], dtype=np.float32)
BT601_LUMA_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float32)  # weights of B, G, R


def suffix(layout: str, anaglyph: str = DEFAULT_ANAGLYPH) -> str:
    """The name suffix players detect for `layout` (before the extension): movie.mp4 -> movie_LR.mp4."""
    if layout == "anaglyph":
        check_anaglyph(anaglyph)
        return f"_redcyan_{anaglyph}"
    if layout not in SUFFIXES:
        raise ValueError(f"unknown stereo layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return SUFFIXES[layout]


def check_anaglyph(anaglyph: str) -> None:
    if anaglyph not in ANAGLYPHS:
        raise ValueError(f"unknown anaglyph type {anaglyph!r}; choose one of {', '.join(ANAGLYPHS)}")


def frame_size(layout: str, width: int, height: int) -> tuple[int, int]:
    """(width, height) of the packed picture of two W x H eyes. Half layouts give each eye floor(W/2) (or H/2),
    so an odd side loses one pixel rather than the two eyes getting different sizes."""
    if layout in ("sbs", "cross"):
        return 2 * width, height
    if layout == "tb":
        return width, 2 * height
    if layout == "half-sbs":
        return 2 * max(1, width // 2), height
    if layout == "half-tb":
        return width, 2 * max(1, height // 2)
    if layout == "anaglyph":
        return width, height
    raise ValueError(f"unknown stereo layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def _squeeze(picture, width: int, height: int):
    return cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)


def _three_channels(picture):
    picture = np.asarray(picture)
    if picture.ndim == 2:
        return np.repeat(picture[:, :, None], 3, axis=2)
    return picture[:, :, :3]


def pack(left, right, layout: str, anaglyph: str = DEFAULT_ANAGLYPH) -> np.ndarray:
    """The one picture of `layout` holding the `left` and `right` eyes' views (same size and dtype)."""
    if left.shape != right.shape or left.dtype != right.dtype:
        raise ValueError(f"the eyes differ: {left.shape} {left.dtype} and {right.shape} {right.dtype}")
    height, width = left.shape[:2]
    if layout == "anaglyph":
        return compose_anaglyph(left, right, anaglyph)
    if layout in ("sbs", "cross"):
        first, second = (left, right) if layout == "sbs" else (right, left)
        return np.concatenate([first, second], axis=1)
    if layout == "tb":
        return np.concatenate([left, right], axis=0)
    if layout == "half-sbs":
        eye_width = max(1, width // 2)
        return np.concatenate([_squeeze(left, eye_width, height), _squeeze(right, eye_width, height)], axis=1)
    if layout == "half-tb":
        eye_height = max(1, height // 2)
        return np.concatenate([_squeeze(left, width, eye_height), _squeeze(right, width, eye_height)], axis=0)
    raise ValueError(f"unknown stereo layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


@functools.cache
def _to_linear_table(levels: int) -> np.ndarray:
    """float32 linear light of every sRGB code value 0..levels-1 (IEC 61966-2-1's curve)."""
    encoded = np.arange(levels, dtype=np.float64) / (levels - 1)
    linear = np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
    return linear.astype(np.float32)


_ENCODE_STEPS = 1 << 16  # 8-bit results look linear light up in a table this fine: under 0.1 code value off


@functools.cache
def _to_srgb8_table() -> np.ndarray:
    """8-bit sRGB code values of linear light k/(_ENCODE_STEPS-1), rounded."""
    return _encode_srgb(np.arange(_ENCODE_STEPS, dtype=np.float64) / (_ENCODE_STEPS - 1), 255).astype(np.uint8)


def _encode_srgb(linear, top: int):
    encoded = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return np.rint(encoded * top)


def _dubois(left_bgr, right_bgr):
    levels = 65536 if left_bgr.dtype == np.uint16 else 256
    to_linear = _to_linear_table(levels)
    # The matrices are written for RGB; reversed on both sides they act on BGR directly. OpenCV's transform
    # applies a 3x3 matrix per pixel several times faster than a numpy matmul over a picture.
    def linear(picture):  # OpenCV's table lookup is several times faster than numpy's indexing, for 8 bits
        return cv2.LUT(picture, to_linear) if levels == 256 else to_linear[picture]

    left_term = cv2.transform(linear(left_bgr), np.ascontiguousarray(DUBOIS_LEFT[::-1, ::-1]))
    right_term = cv2.transform(linear(right_bgr), np.ascontiguousarray(DUBOIS_RIGHT[::-1, ::-1]))
    np.clip(left_term, 0.0, 1.0, out=left_term)
    np.clip(right_term, 0.0, 1.0, out=right_term)
    left_term += right_term
    np.clip(left_term, 0.0, 1.0, out=left_term)
    if levels > 256:  # a table fine enough for 16 bits near black would be huge: the curve itself
        return _encode_srgb(left_term, levels - 1).astype(np.uint16)
    left_term *= _ENCODE_STEPS - 1
    left_term += 0.5  # every value is >= 0, so truncating rounds
    return _to_srgb8_table()[left_term.astype(np.uint16)]


def _luma(picture_bgr):
    luma = picture_bgr.astype(np.float32) @ BT601_LUMA_BGR
    return np.rint(luma).astype(picture_bgr.dtype)


def compose_anaglyph(left, right, anaglyph: str = DEFAULT_ANAGLYPH) -> np.ndarray:
    """A red-cyan anaglyph (BGR): red from the left eye, green and blue from the right.

    dubois: Dubois' least-squares projection in linear light (least ghosting, colours shifted);
    color: the left eye's red and the right eye's green and blue as they are (full colour, more ghosting);
    half-color: the left eye's BT.601 luma as red (less retinal rivalry on red objects);
    gray: each eye's luma (no colour, least rivalry).
    """
    check_anaglyph(anaglyph)
    left, right = _three_channels(left), _three_channels(right)
    if anaglyph == "dubois":
        return _dubois(left, right)
    picture = right.copy()
    if anaglyph == "color":
        picture[:, :, 2] = left[:, :, 2]
    elif anaglyph == "half-color":
        picture[:, :, 2] = _luma(left)
    else:  # gray
        right_luma = _luma(right)
        picture[:, :, 0] = right_luma
        picture[:, :, 1] = right_luma
        picture[:, :, 2] = _luma(left)
    return picture
