"""OpenEXR files of float32 depth, written and read in this one place (the writer, `dav2 info`'s reader and the
description's attributes share one header codec).

Written by hand because the OpenCV wheels we install are built without OpenEXR. Layout per the OpenEXR
file-layout spec: magic, version 2 (single-part scanline), header attributes (name, type, size, value) ended by a
NUL, one offset per block, then blocks of (first line, byte count, data). One FLOAT channel "Y", ZIP-compressed
in 16-line blocks: the block's little-endian bytes split into even/odd bytes, delta-coded (+128 mod 256), then
zlib; a block that would not shrink is stored raw, which readers recognise by its size. The description is one
`string` attribute per key.
"""

import struct
import zlib

import numpy as np

from dav2_cli.errors import UserError
from dav2_cli.outputs.formats import Request, check_extension
from dav2_cli.outputs.metadata import as_text, from_text

MAGIC = b"\x76\x2f\x31\x01"  # 20000630, little-endian
_VERSION = 2  # single-part scanline, no flags
_FLOAT = 2  # channel pixel type
_LINES = {0: 1, 2: 1, 3: 16}  # compression -> scan lines per block: NONE, ZIPS, ZIP
_ZIP = 3
_ZIP_BLOCK_LINES = _LINES[_ZIP]


def attribute(name: str, kind: str, value: bytes) -> bytes:
    """One header attribute: name and type NUL-terminated, the value's size, the value."""
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def description_attributes(description: dict) -> bytes:
    return b"".join(attribute(key, "string", as_text(value).encode()) for key, value in description.items())


def read_header(exr: bytes) -> tuple[dict, int]:
    """({name: (type, raw bytes)}, offset just past the header) of a single-part EXR."""
    position, attributes = 8, {}
    while exr[position] != 0:
        name_end = exr.index(b"\0", position)
        kind_end = exr.index(b"\0", name_end + 1)
        (size,) = struct.unpack_from("<i", exr, kind_end + 1)
        value = exr[kind_end + 5:kind_end + 5 + size]
        attributes[exr[position:name_end].decode()] = (exr[name_end + 1:kind_end].decode(), value)
        position = kind_end + 5 + size
    return attributes, position + 1


def read_description(exr: bytes) -> dict:
    """The `string` attributes, values decoded as `description_attributes` wrote them."""
    attributes, _ = read_header(exr)
    return {name: from_text(value.decode("utf-8", "replace"))
            for name, (kind, value) in attributes.items() if kind == "string"}


def encode(depth_hw, description: dict | None = None) -> bytes:
    """A single-channel ("Y") float32 EXR of `depth_hw`, ZIP-compressed, with `description` in its header."""
    height, width = depth_hw.shape
    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = b"".join(
        [
            MAGIC + struct.pack("<i", _VERSION),
            # one FLOAT channel "Y", linear flag 0, 3 reserved bytes, x/y sampling 1, then the list's NUL
            attribute("channels", "chlist", b"Y\0" + struct.pack("<iB3xii", _FLOAT, 0, 1, 1) + b"\0"),
            attribute("compression", "compression", bytes([_ZIP])),
            attribute("dataWindow", "box2i", window),
            attribute("displayWindow", "box2i", window),
            attribute("lineOrder", "lineOrder", bytes([0])),  # INCREASING_Y
            attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
            attribute("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
            attribute("screenWindowWidth", "float", struct.pack("<f", 1.0)),
            description_attributes(description or {}),
            b"\0",
        ]
    )
    little_hw = depth_hw.astype("<f4", copy=False)
    blocks = []
    for y in range(0, height, _ZIP_BLOCK_LINES):
        raw = np.frombuffer(little_hw[y : y + _ZIP_BLOCK_LINES].tobytes(), dtype=np.uint8)
        split = np.concatenate([raw[0::2], raw[1::2]])
        split[1:] = np.diff(split) + 128  # uint8 arithmetic wraps mod 256, as the format wants
        packed = zlib.compress(split.tobytes())
        data = packed if len(packed) < raw.size else raw.tobytes()
        blocks.append(struct.pack("<ii", y, len(data)) + data)
    offset = len(header) + 8 * len(blocks)
    offsets = []
    for block in blocks:
        offsets.append(offset)
        offset += len(block)
    return header + struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(blocks)


def _undelta(delta: np.ndarray) -> np.ndarray:
    """OpenEXR's predictor in reverse: each byte is the previous plus (stored - 128), mod 256."""
    values = delta.astype(np.int64)
    values[1:] -= 128
    return (np.cumsum(values) % 256).astype(np.uint8)


def decode(data: bytes, name) -> np.ndarray:
    """The one float32 channel of a single-part scanline EXR (NONE, ZIPS or ZIP compression); UserError naming
    `name` for anything else or anything damaged."""
    try:
        attributes, position = read_header(data)
        channels = attributes["channels"][1]
        name_end = channels.index(b"\0")  # one channel: name, 16 bytes of layout, then the list's closing NUL
        if len(channels) != name_end + 18 or struct.unpack_from("<i", channels, name_end + 1)[0] != _FLOAT:
            raise UserError(f"{name}: an EXR with other than one float channel; not a depth map dav2 wrote")
        x0, y0, x1, y1 = struct.unpack("<4i", attributes["dataWindow"][1])
        compression = attributes["compression"][1][0]
        if compression not in _LINES:
            raise UserError(f"{name}: EXR compression {compression} is not one dav2 writes (none or ZIP)")
        width, height, lines = x1 - x0 + 1, y1 - y0 + 1, _LINES[compression]
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


def encode_outputs(depth_hw, request: Request) -> list[tuple[str, bytes]]:
    check_extension(request.fmt, request.ext)
    return [("", encode(depth_hw, request.description))]
