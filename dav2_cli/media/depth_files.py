"""Reading back the pictures and TIFF samples dav2 writes, for `dav2 info`, as stored.

EXR and npy are read by their own modules (`outputs.exr`, `outputs.npy`), which also write them.
"""

import cv2
import numpy as np

from dav2_cli.errors import UserError


def read_picture(data: bytes, name) -> np.ndarray:
    """PNG/JPEG/TIFF samples as stored (uint8, uint16 or float32; gray HxW or BGR HxWx3), nothing rescaled."""
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if picture is None:
        raise UserError(f"{name}: not a readable image (damaged or truncated data)")
    return picture
