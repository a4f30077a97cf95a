"""TIFF's layout, read and written in this one place: float32 depth files with their description in
ImageDescription, the EXIF structure cameras write (which is a TIFF structure too), and a first page's size,
for the writers, `dav2 info`, the image reader and the EXIF reader alike.

OpenCV writes the pixels (IEEE-float samples); the description is added by rewriting the first directory (IFD)
at the end of the file, so the pixel data and everything the old directory pointed to stay where they are. With
`--sky mask` the sky mask is the file's second page (8-bit gray, 255 = sky), which readers that take the first
page only never see.
Classic and BigTIFF directories are both read.
"""

import json
import struct

from dav2_cli.errors import UserError
from dav2_cli.outputs.formats import Request, check_extension
from dav2_cli.outputs.metadata import from_text
from dav2_cli.outputs.png import mask_picture

IMAGE_WIDTH, IMAGE_LENGTH, IMAGE_DESCRIPTION = 256, 257, 270
EXIF_IFD_POINTER = 0x8769
_ASCII, _SHORT, _LONG, _LONG8 = 2, 3, 4, 16
_VALUE_SIZES = {_SHORT: 2, _LONG: 4, _LONG8: 8}
CLASSIC = (b"II*\x00", b"MM\x00*")
BIG = (b"II+\x00", b"MM\x00+")


def is_tiff(data: bytes) -> bool:
    return data[:4] in CLASSIC + BIG


def _order(tiff: bytes) -> str:
    if not is_tiff(tiff):
        raise ValueError("not a TIFF structure")
    return "<" if tiff[:2] == b"II" else ">"


def first_ifd(tiff: bytes) -> int:
    """Where the first image file directory starts."""
    order = _order(tiff)
    return struct.unpack_from(order + ("Q" if tiff[:4] in BIG else "I"), tiff, 8 if tiff[:4] in BIG else 4)[0]


def entries(tiff: bytes, ifd: int):
    """(tag, type, count, where the value or its offset sits) of each entry of the directory at `ifd`; entries
    past the end of the data are left out. struct.error when `ifd` itself lies past the end."""
    order, big = _order(tiff), tiff[:4] in BIG
    count_format, entry_size, value_at = ("Q", 20, 12) if big else ("H", 12, 8)
    (count,) = struct.unpack_from(order + count_format, tiff, ifd)
    first = ifd + struct.calcsize(count_format)
    for index in range(min(count, (len(tiff) - first) // entry_size)):
        entry = first + index * entry_size
        tag, kind = struct.unpack_from(order + "HH", tiff, entry)
        (number,) = struct.unpack_from(order + ("Q" if big else "I"), tiff, entry + 4)
        yield tag, kind, number, entry + value_at


def number(tiff: bytes, kind: int, at: int) -> int | None:
    """A SHORT, LONG or LONG8 value stored at `at`; None for other types."""
    size = _VALUE_SIZES.get(kind)
    return int.from_bytes(tiff[at:at + size], "little" if tiff[:2] == b"II" else "big") if size else None


def size(tiff: bytes) -> tuple[int, int] | None:
    """(width, height) of the first page, or None when its directory does not say."""
    try:
        sides = {tag: number(tiff, kind, at) for tag, kind, _, at in entries(tiff, first_ifd(tiff))
                 if tag in (IMAGE_WIDTH, IMAGE_LENGTH)}
    except (struct.error, ValueError):
        return None
    width, height = sides.get(IMAGE_WIDTH), sides.get(IMAGE_LENGTH)
    return (width, height) if width is not None and height is not None else None


def exif_value(tiff: bytes, tag: int) -> int | None:
    """A SHORT or LONG tag of the Exif sub-directory (IFD0 -> ExifIFDPointer), or None when absent or damaged:
    unreadable EXIF only means the fact is not known."""
    try:
        ifd0 = first_ifd(tiff)
        exif_ifd = next((number(tiff, kind, at) for found, kind, _, at in entries(tiff, ifd0)
                         if found == EXIF_IFD_POINTER), None)
        if not exif_ifd:
            return None
        return next((number(tiff, kind, at) for found, kind, _, at in entries(tiff, exif_ifd) if found == tag), None)
    except (struct.error, ValueError):  # an offset or count pointing past the end: damaged EXIF
        return None


def with_description(tiff: bytes, description: dict) -> bytes:
    """Classic `tiff` with ImageDescription (JSON) in its first IFD, rewritten at the end with the tag in order."""
    order = _order(tiff)
    ifd = first_ifd(tiff)
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    kept = [tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i] for i in range(count)]
    (next_ifd,) = struct.unpack_from(order + "I", tiff, ifd + 2 + 12 * count)
    kept = [entry for entry in kept if struct.unpack_from(order + "H", entry)[0] != IMAGE_DESCRIPTION]
    text = json.dumps(description).encode() + b"\0"
    body = tiff + b"\0" * (len(tiff) & 1)
    text_at = len(body)
    body += text + b"\0" * (len(text) & 1)
    kept.append(struct.pack(order + "HHII", IMAGE_DESCRIPTION, _ASCII, len(text), text_at))
    kept.sort(key=lambda entry: struct.unpack_from(order + "H", entry)[0])
    new_ifd = len(body)
    body += struct.pack(order + "H", len(kept)) + b"".join(kept) + struct.pack(order + "I", next_ifd)
    return body[:4] + struct.pack(order + "I", new_ifd) + body[8:]


def read_description(tiff: bytes) -> dict:
    """The description `with_description` wrote; {} when the first page has no ImageDescription."""
    big = tiff[:4] in BIG
    for tag, kind, count, at in entries(tiff, first_ifd(tiff)):
        if tag == IMAGE_DESCRIPTION and kind == _ASCII:
            if count > (8 if big else 4):  # too long to sit in the entry: the entry holds its offset
                offset = number(tiff, _LONG8 if big else _LONG, at)
                raw = tiff[offset:offset + count]
            else:
                raw = tiff[at:at + count]
            value = from_text(raw.rstrip(b"\0").decode("utf-8", "replace"))
            return value if isinstance(value, dict) else {"description": value}
    return {}


def encode(depth_hw, description: dict | None = None, sky_hw=None) -> bytes:
    """A float32 TIFF of `depth_hw` (values untouched), described when `description` is given, with `sky_hw` (a
    bool mask) as its second page when given."""
    import cv2

    if sky_hw is None:
        ok, data = cv2.imencode(".tiff", depth_hw)  # OpenCV stores float32 as IEEE-float samples
    else:
        ok, data = cv2.imencodemulti(".tiff", [depth_hw, mask_picture(sky_hw)])
    if not ok:
        raise UserError("OpenCV could not encode the depth map as a float32 TIFF")
    return with_description(data.tobytes(), description) if description else data.tobytes()


def encode_outputs(depth_hw, request: Request) -> list[tuple[str, bytes]]:
    check_extension(request.fmt, request.ext)
    return [("", encode(depth_hw, request.description, request.sky_hw))]
