"""OpenEXR files of float32 depth, written and read in this one place (the writer, `dav2 info`'s reader and the
description's attributes share one header codec).

Written by hand because the OpenCV wheels we install are built without OpenEXR. Layout per the OpenEXR
file-layout spec: magic, version 2 (single-part scanline), header attributes (name, type, size, value) ended by a
NUL, one offset per block, then blocks of (first line, byte count, data). One FLOAT channel "Y" (with `--sky
mask`, a second FLOAT channel "sky": 1 = sky, 0 = not; each line holds the channels in the list's alphabetical
order, "Y" then "sky"), ZIP-compressed in 16-line blocks: the block's little-endian bytes split into even/odd
bytes, delta-coded (+128 mod 256), then zlib; a block that would not shrink is stored raw, which readers recognise
by its size. The description is one `string` attribute per key.
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
DEPTH_CHANNEL, SKY_CHANNEL = "Y", "sky"  # in the order the channel list must have (sorted by name)
_CHANNEL_LAYOUT = 16  # bytes after a channel's name: pixel type, linear flag, 3 reserved, x and y sampling


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


def channel_list(names) -> bytes:
    """The `chlist` attribute's value: each FLOAT channel's name, linear flag 0, 3 reserved bytes, x/y sampling 1,
    then the list's closing NUL."""
    return b"".join(name.encode() + b"\0" + struct.pack("<iB3xii", _FLOAT, 0, 1, 1) for name in names) + b"\0"


def read_channels(chlist: bytes) -> list[tuple[str, int]]:
    """(name, pixel type) of each channel of a `chlist` value, in its order."""
    channels, position = [], 0
    while chlist[position] != 0:
        name_end = chlist.index(b"\0", position)
        channels.append((chlist[position:name_end].decode(), struct.unpack_from("<i", chlist, name_end + 1)[0]))
        position = name_end + 1 + _CHANNEL_LAYOUT
    return channels


def encode(depth_hw, description: dict | None = None, sky_hw=None) -> bytes:
    """A float32 EXR of `depth_hw` (channel "Y"), ZIP-compressed, with `description` in its header and `sky_hw`
    (a bool mask) as a second channel "sky" when given."""
    height, width = depth_hw.shape
    planes = [depth_hw] if sky_hw is None else [depth_hw, np.asarray(sky_hw, dtype=np.float32)]
    names = [DEPTH_CHANNEL] if sky_hw is None else [DEPTH_CHANNEL, SKY_CHANNEL]
    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = b"".join(
        [
            MAGIC + struct.pack("<i", _VERSION),
            attribute("channels", "chlist", channel_list(names)),
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
    # each line holds every channel's row in the list's order: (lines, channels, width)
    little_hcw = np.stack(planes, axis=1).astype("<f4", copy=False)
    blocks = []
    for y in range(0, height, _ZIP_BLOCK_LINES):
        raw = np.frombuffer(little_hcw[y : y + _ZIP_BLOCK_LINES].tobytes(), dtype=np.uint8)
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
    """The depth (channel "Y") of a single-part scanline EXR dav2 wrote; UserError naming `name` otherwise."""
    return decode_channels(data, name)[DEPTH_CHANNEL]


def decode_channels(data: bytes, name) -> dict[str, np.ndarray]:
    """Every channel of a single-part scanline EXR of FLOAT channels (NONE, ZIPS or ZIP compression), one of them
    "Y", by name; UserError naming `name` for anything else or anything damaged."""
    try:
        attributes, position = read_header(data)
        channels = read_channels(attributes["channels"][1])
        if any(kind != _FLOAT for _, kind in channels) or DEPTH_CHANNEL not in dict(channels):
            raise UserError(f"{name}: an EXR without a float \"Y\" channel or with other than float channels; not "
                            f"a depth map dav2 wrote")
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
            raw_size = min(lines, height - block * lines) * width * 4 * len(channels)
            if size < raw_size:  # compressed: zlib, then undo the delta coding and the byte split
                split = _undelta(np.frombuffer(zlib.decompress(payload), dtype=np.uint8))
                half = (split.size + 1) // 2
                payload = np.empty(split.size, dtype=np.uint8)
                payload[0::2], payload[1::2] = split[:half], split[half:]
                payload = payload.tobytes()
            rows.append(np.frombuffer(payload, dtype="<f4").reshape(-1, len(channels), width))
    except (KeyError, IndexError, struct.error, zlib.error, ValueError) as exc:
        raise UserError(f"{name}: not a readable EXR depth map ({exc})") from None
    planes = np.concatenate(rows).astype(np.float32)
    return {channel: planes[:, index] for index, (channel, _) in enumerate(channels)}


def encode_outputs(depth_hw, request: Request) -> list[tuple[str, bytes]]:
    check_extension(request.fmt, request.ext)
    return [("", encode(depth_hw, request.description, request.sky_hw))]
