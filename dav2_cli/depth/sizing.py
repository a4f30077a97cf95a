"""Sizing and normalisation: upstream's preprocessing, with every side a multiple of 28.

Upstream (`infer_image`) scales the image so its shorter side reaches `input_size`, rounds each side to a
multiple of 14 (numpy's round-half-to-even, then up if that fell below `input_size`), resizes with bicubic
interpolation and normalises with ImageNet statistics. We use the same arithmetic with multiples of 28, so the
patch grid is always even and the decoder's 2x steps are exact; wherever upstream's grid is already even the
sizes, and therefore the outputs, are identical. 518 (upstream's default) is not a multiple of 28, so our
default is 504, the nearest even grid below it (36 patches on the short side; 518 → 532 if asked for).
"""

import numpy as np

from dav2_cli.depth.input_size import (
    DEFAULT_INPUT_SIZE,
    MAX_ASPECT_RATIO,
    MAX_INPUT_SIZE,
    MIN_INPUT_SIZE,
    SIZE_MULTIPLE,
)
from dav2_cli.errors import UserError

IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def check_sizing(name: str, image_hw: tuple[int, int], input_size: int = DEFAULT_INPUT_SIZE) -> None:
    """What `model_size` can size: an input size in range, and an image with pixels and at most 16:1."""
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or \
            not MIN_INPUT_SIZE <= input_size <= MAX_INPUT_SIZE:
        raise UserError(f"input size {input_size!r}: expected a whole number from {MIN_INPUT_SIZE} to "
                        f"{MAX_INPUT_SIZE}")
    height, width = image_hw
    if height < 1 or width < 1:
        raise UserError(f"{name}: {width}x{height} has no pixels")
    long_side, short_side = max(image_hw), min(image_hw)
    if long_side > MAX_ASPECT_RATIO * short_side:
        raise UserError(f"{name}: {width}x{height} is more than {MAX_ASPECT_RATIO}:1; the model would see a "
                        f"{long_side / short_side:.0f} times longer side than --input-size (crop it first)")


def model_size(image_hw: tuple[int, int], input_size: int = DEFAULT_INPUT_SIZE) -> tuple[int, int]:
    """The (height, width) the model sees for an image of `image_hw`."""
    height, width = image_hw
    scale = max(input_size / height, input_size / width)  # the shorter side reaches input_size

    def to_multiple(side: float) -> int:
        rounded = int(np.round(side / SIZE_MULTIPLE) * SIZE_MULTIPLE)
        return rounded if rounded >= input_size else int(np.ceil(side / SIZE_MULTIPLE) * SIZE_MULTIPLE)

    return to_multiple(scale * height), to_multiple(scale * width)


def to_model_input(image_bgr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """BGR image (uint8 or uint16, HxWx3) → normalised float32 RGB, CHW, at `size_hw`.

    Bicubic resizing is linear, so resizing the raw values and then scaling by 1/255 equals upstream's
    scale-then-resize up to float rounding, while touching the full-size image only once.
    """
    full_scale = 65535.0 if image_bgr.dtype == np.uint16 else 255.0
    if image_bgr.shape[:2] != tuple(size_hw):
        image_f32 = _resized_bicubic(image_bgr, size_hw)
    else:
        image_f32 = image_bgr.astype(np.float32)
    scale_rgb = 1.0 / (full_scale * IMAGENET_STD_RGB)
    offset_rgb = IMAGENET_MEAN_RGB / IMAGENET_STD_RGB
    normalised_hwc = image_f32[:, :, ::-1] * scale_rgb - offset_rgb
    return np.ascontiguousarray(normalised_hwc.transpose(2, 0, 1), dtype=np.float32)


_STRIP_BYTES = 1 << 20  # a strip of float32 rows stays in cache
_ONE_PASS_BYTES = 4 << 20


def _resized_bicubic(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """OpenCV's float32 bicubic resize of `image`, without a float32 copy of the whole image.

    Bicubic resizing is separable, and a pass whose scale is 1 leaves values unchanged (the taps weigh
    0, 1, 0, 0), so the rows are widened to float32 a strip at a time, each strip resized across in cache,
    then the narrow result resized down. The full-size float32 copy this replaces (36 MB for a 3-megapixel
    photo) cost more than the resize itself: a third of a folder job's work beside the model at input size
    280. The result differs from one full resize only by float rounding (a few 1e-7 of the range). Small
    images, and images narrower than the kernel's four taps (which OpenCV borders differently in one pass),
    are resized in one pass.
    """
    import cv2  # here, not at the top: the CLI reads this module's size limits for --help without OpenCV

    height, width = image.shape[:2]
    out_height, out_width = size_hw
    if width < 4 or 4 * image.size <= _ONE_PASS_BYTES:
        return cv2.resize(image.astype(np.float32), (out_width, out_height), interpolation=cv2.INTER_CUBIC)
    across = np.empty((height, out_width) + image.shape[2:], dtype=np.float32)
    rows = max(1, _STRIP_BYTES // (4 * image[0].size))
    strip = np.empty((rows,) + image.shape[1:], dtype=np.float32)
    for top in range(0, height, rows):
        count = min(rows, height - top)
        np.copyto(strip[:count], image[top:top + count])
        cv2.resize(strip[:count], (out_width, count), dst=across[top:top + count], interpolation=cv2.INTER_CUBIC)
    return cv2.resize(across, (out_width, out_height), interpolation=cv2.INTER_CUBIC)


def to_image_size(depth_bhw, image_hw: tuple[int, int]):
    """Model-resolution depth (a torch tensor, B,H,W) → the image's own size (upstream: bilinear,
    align_corners=True)."""
    import torch.nn.functional as F  # here: planning a job imports this module, and must not wait for torch

    if tuple(depth_bhw.shape[1:]) == tuple(image_hw):
        return depth_bhw
    return F.interpolate(depth_bhw[:, None], size=image_hw, mode="bilinear", align_corners=True)[:, 0]
