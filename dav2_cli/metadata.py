"""What a depth file says about itself, and how each container carries it.

A depth map whose meaning is lost is useless for measuring: a gray16 PNG stretched over 0..65535 cannot be turned
back into depth without its range, and nobody can tell inverse depth from metres by looking at the numbers. So
every file dav2 writes carries one description (`describe`), in the place its format has for text:

* PNG: one `tEXt` chunk per key (`iTXt` when a value is not Latin-1), so `lo` and `hi` are keys of their own;
* JPEG: a `COM` segment holding the description as JSON;
* EXR: one `string` header attribute per key;
* TIFF: the `ImageDescription` tag, as JSON;
* npy, gray16 PNG: a JSON sidecar (`OUT.json`) too, built by `sidecar`.

Values are strings or numbers; nested ones (intrinsics, alignment) are JSON. The readers undo exactly what the
writers do, so `dav2 info` prints what was written. Pure bytes in, bytes out: no I/O here.
"""

import json
import struct
import zlib

RELATIVE_UNIT = "none (relative inverse depth)"
METRIC_UNIT = "meters"


def describe(*, model: str, metric: bool, input_size: int, width: int, height: int, source: str | None = None,
             max_depth: float | None = None, conversion=None, intrinsics=None) -> dict:
    """The description every output of one depth map carries, with the keys of the gray16 video's sidecar.

    `kind` is the model's (relative or metric); `unit` and `larger` describe the stored values, which are
    metres (larger = farther) once a relative map has been converted by `conversion` (an `align`
    DisparityToDepth), whose fit is then included as `alignment`.
    """
    converted = conversion is not None
    description = {}
    if source is not None:
        description["source"] = source
    description.update({
        "model": model,
        "kind": "metric" if metric else "relative",
        "unit": METRIC_UNIT if metric or converted else RELATIVE_UNIT,
        "larger": "farther" if metric or converted else "nearer",
        "input_size": input_size,
        "width": width,
        "height": height,
    })
    if max_depth is not None:
        description["max_depth"] = max_depth
    if intrinsics is not None:
        description["intrinsics"] = intrinsics.as_dict()
    if converted:
        description["alignment"] = conversion.as_dict()
    return description


def sidecar(description: dict) -> bytes:
    return (json.dumps(description, indent=2) + "\n").encode()


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


# ------------------------------------------------------------------------------------------ PNG


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_text(png: bytes, description: dict) -> bytes:
    """`png` with one text chunk per key, placed right after IHDR so readers see it before the pixels."""
    chunks = []
    for key, value in description.items():
        text = _text(value)
        try:
            chunks.append(_png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1")))
        except UnicodeEncodeError:  # e.g. a source name in another script: iTXt holds UTF-8
            chunks.append(_png_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + text.encode()))
    end_of_ihdr = 8 + 12 + struct.unpack_from(">I", png, 8)[0]
    return png[:end_of_ihdr] + b"".join(chunks) + png[end_of_ihdr:]


def png_text(png: bytes) -> dict:
    """The tEXt/iTXt (and zTXt) keys of a PNG, values decoded as written by `png_with_text`."""
    found, position = {}, 8
    while position + 8 <= len(png):
        length, kind = struct.unpack_from(">I4s", png, position)
        body = png[position + 8:position + 8 + length]
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
            found[key.decode("latin-1")] = _value(text)
        if kind == b"IEND":
            break
        position += 12 + length
    return found


# ------------------------------------------------------------------------------------------ JPEG


def jpeg_with_comment(jpeg: bytes, description: dict) -> bytes:
    """`jpeg` with a COM segment (the description as JSON) right after the start-of-image marker."""
    body = json.dumps(description).encode()
    if len(body) > 65533:
        raise ValueError("description too long for one JPEG comment")
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def jpeg_comment(jpeg: bytes) -> dict:
    position = 2
    while position + 4 <= len(jpeg) and jpeg[position] == 0xFF:
        marker = jpeg[position + 1]
        if marker in (0xD9, 0xDA):
            break
        (length,) = struct.unpack_from(">H", jpeg, position + 2)
        if marker == 0xFE:
            value = _value(jpeg[position + 4:position + 2 + length].decode("utf-8", "replace"))
            if isinstance(value, dict):
                return value
        position += 2 + length
    return {}


# ------------------------------------------------------------------------------------------ EXR


def exr_attribute(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def exr_string_attributes(description: dict) -> bytes:
    return b"".join(exr_attribute(key, "string", _text(value).encode()) for key, value in description.items())


def exr_header(exr: bytes) -> tuple[dict, int]:
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


def exr_strings(exr: bytes) -> dict:
    attributes, _ = exr_header(exr)
    return {name: _value(value.decode("utf-8", "replace"))
            for name, (kind, value) in attributes.items() if kind == "string"}


# ------------------------------------------------------------------------------------------ TIFF

_IMAGE_DESCRIPTION = 270
_ASCII = 2


def _tiff_order(tiff: bytes) -> str:
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        raise ValueError("not a classic TIFF")
    return "<" if tiff[:2] == b"II" else ">"


def tiff_with_description(tiff: bytes, description: dict) -> bytes:
    """`tiff` with ImageDescription (JSON) in its first IFD.

    The first IFD is rewritten at the end of the file with the tag added in order, and the header pointed at
    it; the pixel data and every value the old IFD pointed to stay where they are, so nothing else moves.
    """
    order = _tiff_order(tiff)
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    entries = [tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i] for i in range(count)]
    (next_ifd,) = struct.unpack_from(order + "I", tiff, ifd + 2 + 12 * count)
    entries = [entry for entry in entries if struct.unpack_from(order + "H", entry)[0] != _IMAGE_DESCRIPTION]
    text = json.dumps(description).encode() + b"\0"
    body = tiff + b"\0" * (len(tiff) & 1)
    text_at = len(body)
    body += text + b"\0" * (len(text) & 1)
    entries.append(struct.pack(order + "HHII", _IMAGE_DESCRIPTION, _ASCII, len(text), text_at))
    entries.sort(key=lambda entry: struct.unpack_from(order + "H", entry)[0])
    new_ifd = len(body)
    body += struct.pack(order + "H", len(entries)) + b"".join(entries) + struct.pack(order + "I", next_ifd)
    return body[:4] + struct.pack(order + "I", new_ifd) + body[8:]


def tiff_description(tiff: bytes) -> dict:
    order = _tiff_order(tiff)
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for index in range(count):
        tag, kind, number, offset = struct.unpack_from(order + "HHII", tiff, ifd + 2 + 12 * index)
        if tag == _IMAGE_DESCRIPTION and kind == _ASCII:
            raw = tiff[offset:offset + number] if number > 4 else tiff[ifd + 10 + 12 * index:][:number]
            value = _value(raw.rstrip(b"\0").decode("utf-8", "replace"))
            return value if isinstance(value, dict) else {"description": value}
    return {}
