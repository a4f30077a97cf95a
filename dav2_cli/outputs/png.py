"""PNG pictures written with ISA-L's deflate: the pixels OpenCV's encoder would store, four times sooner.

In a folder job at a small input size, encoding the full-size depth picture was the largest cost beside the
model: OpenCV's fastest PNG settings took 53 ms for a 2048x1362 colour picture and 23 ms for a gray one on a
2-core Zen 4, a sixth of the forward pass at input size 280, on cores the model needs. ISA-L's level-1 deflate
(the `isal` package) does the same stream in 12 and 5 ms, and with every row Up-filtered (each byte minus the
one above it, one vectorised subtraction; depth varies smoothly down a picture) the files also come out
15-30% smaller than OpenCV's. PNG is lossless, so any reader decodes exactly the pixels given. Where `isal` has
no wheel (it is required only on the common 64-bit machines), Python's zlib writes the same kind of stream, slower.

This is also the one place PNG's chunk layout is read: the description's text chunks (written by
`description_chunks`, read by `read_description`), the header's size and the EXIF chunk, for the writers,
`dav2 info` and the image reader alike.
"""

import struct
import zlib

import cv2
import numpy as np

from dav2_cli.outputs.metadata import as_text, from_text

try:
    from isal import isal_zlib as deflate
except ImportError:  # no ISA-L build for this machine: the standard library's zlib, same calls, ~4x slower
    import zlib as deflate

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DEFLATE_LEVEL = 1  # ISA-L's levels 0-3: 1 took ~10% longer than 0 for files ~14% smaller; 2 gained under 1%
_FILTER_UP = 2
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: gray, RGB, RGBA


def chunk(kind: bytes, body) -> bytes:
    """One PNG chunk: length, type, body, and the CRC of type and body."""
    crc = deflate.crc32(body, deflate.crc32(kind))
    return struct.pack(">I", len(body)) + kind + bytes(body) + struct.pack(">I", crc)


def encode(picture: np.ndarray, extra_chunks: list[bytes] = ()) -> bytes:
    """A PNG file of `picture`: uint8 or uint16, HxW (gray), HxWx3 (BGR) or HxWx4 (BGRA), as OpenCV orders them;
    `extra_chunks` (whole chunks, such as text) go right after the header, before the pixels."""
    if picture.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"a PNG holds 8- or 16-bit samples, not {picture.dtype}")
    if picture.ndim == 2:
        picture = picture[:, :, None]
    height, width, channels = picture.shape
    if channels not in _COLOUR_TYPES or height == 0 or width == 0:
        raise ValueError(f"cannot write a {picture.shape} picture as PNG")
    if channels >= 3:  # PNG stores RGB(A); OpenCV's swap is several times faster than numpy's fancy indexing
        picture = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA)
    samples = picture.astype(">u2", copy=False) if picture.dtype == np.uint16 else picture  # big-endian
    rows = np.ascontiguousarray(samples).view(np.uint8).reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = _FILTER_UP
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as the filter is defined
    header = struct.pack(">IIBBBBB", width, height, 8 * picture.itemsize, _COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join([SIGNATURE, chunk(b"IHDR", header), *extra_chunks,
                     chunk(b"IDAT", deflate.compress(filtered, _DEFLATE_LEVEL)), chunk(b"IEND", b"")])


def mask_picture(mask_hw) -> np.ndarray:
    """A bool mask as the 8-bit gray picture dav2 writes masks as (the sky's, beside an npy or in a TIFF page):
    255 where true, 0 elsewhere, so that any viewer shows it and `picture > 127` reads it back."""
    return np.where(mask_hw, np.uint8(255), np.uint8(0))


def chunks(data: bytes):
    """(type, start, end) of each chunk of a PNG file in order: the chunk is data[start:end] (length, type, body,
    CRC), its body data[start + 8:end - 4]. Stops at IEND or where fewer than 12 bytes are left; a chunk that
    runs past the end is still given, so callers can tell a truncated file (end > len(data))."""
    position = len(SIGNATURE)
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = bytes(data[position + 4:position + 8])
        end = position + 12 + length
        yield kind, position, end
        if kind == b"IEND":
            return
        position = end


def size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header chunk, or None when the file does not start with one."""
    if not data.startswith(SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    return struct.unpack_from(">II", data, 16)


def description_chunks(description: dict) -> list[bytes]:
    """One text chunk per key, for `encode` to place right after IHDR so readers see them before the pixels."""
    found = []
    for key, value in description.items():
        text = as_text(value)
        try:
            found.append(chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1")))
        except UnicodeEncodeError:  # e.g. a source name in another script: iTXt holds UTF-8
            found.append(chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + text.encode()))
    return found


def read_description(data: bytes) -> dict:
    """The tEXt/iTXt (and zTXt) keys of a PNG, values decoded as written by `description_chunks`."""
    found = {}
    for kind, start, end in chunks(data):
        body = data[start + 8:end - 4]
        if kind in (b"tEXt", b"zTXt", b"iTXt") and b"\0" in body:
            key, rest = body.split(b"\0", 1)
            if kind == b"tEXt":
                text = rest.decode("latin-1")
            elif kind == b"zTXt":
                text = zlib.decompress(rest[1:]).decode("latin-1")
            else:
                compressed, rest = rest[0], rest[2:]
                rest = rest.split(b"\0", 2)[2]  # language tag, translated keyword
                text = (zlib.decompress(rest) if compressed else rest).decode("utf-8", "replace")
            found[key.decode("latin-1")] = from_text(text)
    return found


def exif_block(data: bytes) -> bytes | None:
    """The TIFF structure of the `eXIf` chunk, or None (the chunk must come before the image data)."""
    for kind, start, end in chunks(data):
        if kind == b"eXIf":
            return data[start + 8:end - 4]
        if kind in (b"IDAT", b"IEND"):
            return None
    return None
