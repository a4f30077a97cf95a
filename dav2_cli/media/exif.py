"""The one EXIF fact a point cloud needs: the photo's 35 mm-equivalent focal length.

Cameras and phones write `FocalLengthIn35mmFilm` (tag 0xA405) into the Exif sub-IFD of a TIFF structure, which
JPEG carries in an APP1 segment ("Exif\\0\\0"), PNG in an `eXIf` chunk and WebP in an `EXIF` chunk; a TIFF file is
that structure itself. Read here by hand (a few dozen lines) rather than through a library, and read without
ever raising: a damaged or absent EXIF block only means the focal length is not known.

Orientation needs no care here: the 35 mm equivalent is defined on the frame's diagonal, which a quarter turn
does not change, so the focal in pixels is the same for the image as stored and as decoded (turned upright).
"""

import struct

from dav2_cli.outputs.metadata import webp_chunks

EXIF_IFD_POINTER = 0x8769
FOCAL_LENGTH_35MM = 0xA405
_SHORT, _LONG = 3, 4


def _tiff_focal_35mm(tiff: bytes) -> float | None:
    """FocalLengthIn35mmFilm from a TIFF structure (IFD0 → Exif sub-IFD); None when absent, 0 or unreadable."""
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"

    def entries(ifd_offset: int):
        (count,) = struct.unpack_from(order + "H", tiff, ifd_offset)
        for index in range(count):
            tag, kind, number = struct.unpack_from(order + "HHI", tiff, ifd_offset + 2 + 12 * index)
            yield tag, kind, number, ifd_offset + 2 + 12 * index + 8  # where a value of <= 4 bytes sits

    def value(kind: int, at: int) -> int | None:
        if kind == _SHORT:
            return struct.unpack_from(order + "H", tiff, at)[0]
        if kind == _LONG:
            return struct.unpack_from(order + "I", tiff, at)[0]
        return None

    try:
        (ifd0,) = struct.unpack_from(order + "I", tiff, 4)
        exif_ifd = next((value(kind, at) for tag, kind, _, at in entries(ifd0) if tag == EXIF_IFD_POINTER), None)
        if not exif_ifd:
            return None
        focal = next((value(kind, at) for tag, kind, _, at in entries(exif_ifd) if tag == FOCAL_LENGTH_35MM), None)
    except struct.error:  # an offset or count pointing past the end: damaged EXIF
        return None
    return float(focal) if focal else None  # 0 means "unknown" in the EXIF standard


def _jpeg_exif(data: bytes) -> bytes | None:
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after this
            return None
        (length,) = struct.unpack_from(">H", data, position + 2)
        body = data[position + 4:position + 2 + length]
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            return body[6:]
        position += 2 + length
    return None


def _png_exif(data: bytes) -> bytes | None:
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"eXIf":
            return data[position + 8:position + 8 + length]
        if kind in (b"IDAT", b"IEND"):  # eXIf must come before the image data
            return None
        position += 12 + length
    return None


def _webp_exif(data: bytes) -> bytes | None:
    for kind, body in webp_chunks(data):
        if kind == b"EXIF":
            return body[6:] if body.startswith(b"Exif\x00\x00") else body
    return None


def focal_length_35mm(data: bytes) -> float | None:
    """The photo's 35 mm-equivalent focal length in mm from its EXIF, or None when it does not say."""
    if data.startswith(b"\xff\xd8"):
        tiff = _jpeg_exif(data)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        tiff = _png_exif(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        tiff = _webp_exif(data)
    else:
        tiff = data  # a TIFF file is the structure itself; anything else fails the header check
    return _tiff_focal_35mm(tiff) if tiff else None
