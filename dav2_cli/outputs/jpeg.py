"""JPEG's segment layout, read and written in this one place: the description's comment segment, the EXIF
segment and the frame size, for the writers, `dav2 info` and the image reader alike.

The description goes into a `COM` segment as JSON, right after the start-of-image marker; the pixels OpenCV
encoded are not touched.
"""

import json
import struct

from dav2_cli.outputs.metadata import from_text

SIGNATURE = b"\xff\xd8"
_COMMENT, _APP1 = 0xFE, 0xE1
_EXIF_HEADER = b"Exif\x00\x00"


def segments(data: bytes):
    """(marker, start, end) of each segment before the scan data: its body is data[start + 4:end].

    Fill bytes are skipped and markers without a length (restart, TEM) passed over; the walk ends at the
    start of scan or end of image, after which no metadata comes, and at the first byte that is not a marker.
    """
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        if marker in (0xD9, 0xDA):
            return
        (length,) = struct.unpack_from(">H", data, position + 2)
        yield marker, position, position + 2 + length
        position += 2 + length


def size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame segment, or None when none comes before the scan."""
    for marker, start, _ in segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn; not DHT, JPG, DAC
            if start + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, start + 5)
            return width, height
    return None


def with_description(jpeg: bytes, description: dict) -> bytes:
    """`jpeg` with a COM segment (the description as JSON) right after the start-of-image marker."""
    body = json.dumps(description).encode()
    if len(body) > 65533:
        raise ValueError("description too long for one JPEG comment")
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def read_description(jpeg: bytes) -> dict:
    """The description `with_description` wrote; {} for a JPEG without one."""
    for marker, start, end in segments(jpeg):
        if marker == _COMMENT:
            value = from_text(jpeg[start + 4:end].decode("utf-8", "replace"))
            if isinstance(value, dict):
                return value
    return {}


def exif_block(data: bytes) -> bytes | None:
    """The TIFF structure in the APP1 "Exif" segment, or None."""
    for marker, start, end in segments(data):
        body = data[start + 4:end]
        if marker == _APP1 and body.startswith(_EXIF_HEADER):
            return body[len(_EXIF_HEADER):]
    return None
