"""Stereo pictures as files: PNG, JPEG or WebP, each carrying its description where the format keeps text.

The description (`metadata.describe` plus the stereo keys) says which model's depth made the views and with
which layout, divergence and convergence, so `dav2 info` can say how a 3D picture was made and a user can
re-render it with other settings (`dav2 image photo.jpg --depth photo.npy --stereo ...`). No I/O here.
"""

import cv2
import numpy as np

from dav2_cli.errors import UserError
from dav2_cli.outputs import jpeg, png, webp

PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
_EIGHT_BIT = (".jpg", ".jpeg", ".webp")


def encode_stereo_picture(picture: np.ndarray, ext: str | None, description: dict) -> bytes:
    """The file of a packed stereo picture (BGR, uint8 or uint16) in the container `ext` names (PNG if None)."""
    ext = (ext or ".png").lower()
    if ext not in PICTURE_EXTENSIONS:
        raise UserError(f"a stereo picture cannot be written as a {ext} file; use {', '.join(PICTURE_EXTENSIONS)}")
    if ext == ".png":
        return png.encode(picture, png.description_chunks(description))
    if picture.dtype == np.uint16:  # JPEG and WebP hold 8 bits
        picture = ((picture.astype(np.uint32) + 128) // 257).astype(np.uint8)
    ok, data = cv2.imencode(ext, picture)
    if not ok:
        raise UserError(f"OpenCV could not encode the stereo picture as {ext}")
    if ext == ".webp":
        return webp.with_description(data.tobytes(), description, picture.shape[1], picture.shape[0])
    return jpeg.with_description(data.tobytes(), description)
