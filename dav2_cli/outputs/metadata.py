"""What a depth file says about itself, and how each container carries it.

A depth map whose meaning is lost is useless for measuring: a gray16 PNG stretched over 0..65535 cannot be turned
back into depth without its range, and nobody can tell inverse depth from metres by looking at the numbers. So
every file dav2 writes carries one description (`describe`), in the place its format has for text:

* PNG: one `tEXt` chunk per key (`iTXt` when a value is not Latin-1), so `lo` and `hi` are keys of their own;
* JPEG: a `COM` segment holding the description as JSON;
* EXR: one `string` header attribute per key;
* TIFF: the `ImageDescription` tag, as JSON;
* WebP: an XMP packet whose `dc:description` is the JSON (the container is made extended, VP8X, to hold it);
* npy, gray16 PNG: a JSON sidecar (`OUT.json`) too, built by `sidecar`.

Values are strings or numbers; nested ones (intrinsics, alignment) are JSON. The readers undo exactly what the
writers do, so `dav2 info` prints what was written. Pure bytes in, bytes out: no I/O here.
"""

import html
import json
import re
import struct
import zlib

from dav2_cli.outputs import png

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
        description["source"] = printable_path(source)
    description.update({
        "model": printable_path(model),
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
        description["alignment"] = conversion.as_dict(metric)
    return description


def printable_path(name: str) -> str:
    """A path as text every format can hold: bytes of a file name that are not UTF-8 (which Python keeps as
    lone surrogates) written as \\xNN escapes, instead of failing the file that describes it."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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


def png_description_chunks(description: dict) -> list[bytes]:
    """One text chunk per key, for `png.encode` to place right after IHDR so readers see them before the pixels."""
    chunks = []
    for key, value in description.items():
        text = _text(value)
        try:
            chunks.append(png.chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1")))
        except UnicodeEncodeError:  # e.g. a source name in another script: iTXt holds UTF-8
            chunks.append(png.chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + text.encode()))
    return chunks


def png_text(data: bytes) -> dict:
    """The tEXt/iTXt (and zTXt) keys of a PNG, values decoded as written by `png_description_chunks`."""
    found, position = {}, 8
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body = data[position + 8:position + 8 + length]
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


# ------------------------------------------------------------------------------------------ WebP

_VP8X_XMP = 0x04  # VP8X flags: ICC 0x20, alpha 0x10, EXIF 0x08, XMP 0x04, animation 0x02
_VP8X_ALPHA = 0x10
_XMP_DESCRIPTION = re.compile(rb"<dc:description>\s*<rdf:Alt>\s*<rdf:li[^>]*>(.*?)</rdf:li>", re.DOTALL)


def webp_chunks(webp: bytes):
    """(fourcc, payload) of each chunk of a RIFF WebP file, in order (payloads without their padding byte)."""
    if webp[:4] != b"RIFF" or webp[8:12] != b"WEBP":
        raise ValueError("not a WebP file")
    position = 12
    while position + 8 <= len(webp):
        kind, length = struct.unpack_from("<4sI", webp, position)
        yield kind, webp[position + 8:position + 8 + length]
        position += 8 + length + (length & 1)


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def webp_with_xmp(webp: bytes, description: dict, width: int, height: int, *, alpha: bool = False) -> bytes:
    """`webp` (as OpenCV writes it: one still image of `width` x `height`) with the description in an XMP chunk.

    A simple file (a lone VP8/VP8L chunk) becomes an extended one: a VP8X header saying an XMP chunk follows
    the image, as the container's specification orders them.
    """
    chunks = [(kind, payload) for kind, payload in webp_chunks(webp) if kind != b"XMP "]
    if chunks[0][0] == b"VP8X":
        header = bytearray(chunks[0][1])
        header[0] |= _VP8X_XMP
        chunks[0] = (b"VP8X", bytes(header))
    else:
        flags = _VP8X_XMP | (_VP8X_ALPHA if alpha else 0)
        size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", bytes([flags, 0, 0, 0]) + size))
    text = html.escape(json.dumps(description, ensure_ascii=False), quote=False)
    packet = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
              '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
              f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{text}</rdf:li></rdf:Alt></dc:description>'
              '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
    chunks.append((b"XMP ", packet.encode()))
    body = b"WEBP" + b"".join(_riff_chunk(kind, payload) for kind, payload in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_description(webp: bytes) -> dict:
    """The description `webp_with_xmp` wrote; {} for a WebP without one."""
    for kind, payload in webp_chunks(webp):
        if kind == b"XMP " and (found := _XMP_DESCRIPTION.search(payload)):
            value = _value(html.unescape(found.group(1).decode("utf-8", "replace")))
            return value if isinstance(value, dict) else {"description": value}
    return {}
