"""Reading back the raw depth files dav2 writes, for `dav2 info`: values as float32 HxW arrays.

OpenCV reads PNG and TIFF and numpy reads npy, but the OpenCV wheels have no OpenEXR, so the EXR reader is here,
written from the OpenEXR file-layout spec for what `render` writes: single-part scanline, one FLOAT channel,
no or ZIP compression.
"""

import io
import struct
import zlib

import cv2
import numpy as np

from dav2_cli.outputs import metadata
from dav2_cli.errors import UserError

_ZIP_LINES = {0: 1, 2: 1, 3: 16}  # compression → scan lines per block: NONE, ZIPS, ZIP


def read_exr(data: bytes, name) -> np.ndarray:
    """The one float32 channel of a single-part scanline EXR (NONE, ZIPS or ZIP compression)."""
    try:
        attributes, position = metadata.exr_header(data)
        channels = attributes["channels"][1]
        name_end = channels.index(b"\0")  # one channel: name, 16 bytes of layout, then the list's closing NUL
        if len(channels) != name_end + 18 or struct.unpack_from("<i", channels, name_end + 1)[0] != 2:
            raise UserError(f"{name}: an EXR with other than one float channel; not a depth map dav2 wrote")
        x0, y0, x1, y1 = struct.unpack("<4i", attributes["dataWindow"][1])
        compression = attributes["compression"][1][0]
        if compression not in _ZIP_LINES:
            raise UserError(f"{name}: EXR compression {compression} is not one dav2 writes (none or ZIP)")
        width, height, lines = x1 - x0 + 1, y1 - y0 + 1, _ZIP_LINES[compression]
        blocks = -(-height // lines)
        offsets = struct.unpack_from(f"<{blocks}Q", data, position)
        rows = []
        for block, offset in enumerate(offsets):
            _, size = struct.unpack_from("<ii", data, offset)
            payload = data[offset + 8:offset + 8 + size]
            raw_size = min(lines, height - block * lines) * width * 4
            if size < raw_size:  # compressed: zlib, then undo the delta coding and the byte split
                split = _undelta(np.frombuffer(zlib.decompress(payload), dtype=np.uint8))
                half = (split.size + 1) // 2
                payload = np.empty(split.size, dtype=np.uint8)
                payload[0::2], payload[1::2] = split[:half], split[half:]
                payload = payload.tobytes()
            rows.append(np.frombuffer(payload, dtype="<f4").reshape(-1, width))
    except (KeyError, IndexError, struct.error, zlib.error, ValueError) as exc:
        raise UserError(f"{name}: not a readable EXR depth map ({exc})") from None
    return np.concatenate(rows).astype(np.float32)


def _undelta(delta: np.ndarray) -> np.ndarray:
    """OpenEXR's predictor in reverse: each byte is the previous plus (stored - 128), mod 256."""
    values = delta.astype(np.int64)
    values[1:] -= 128
    return (np.cumsum(values) % 256).astype(np.uint8)


def read_npy(data: bytes, name) -> np.ndarray:
    try:
        values = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{name}: not a readable .npy file ({exc})") from None
    if values.ndim != 2:
        raise UserError(f"{name}: holds an array of shape {values.shape}, not an HxW depth map")
    return values.astype(np.float32, copy=False)


def read_picture(data: bytes, name) -> np.ndarray:
    """PNG/JPEG/TIFF samples as stored (uint8, uint16 or float32; gray HxW or BGR HxWx3), nothing rescaled."""
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if picture is None:
        raise UserError(f"{name}: not a readable image (damaged or truncated data)")
    return picture
