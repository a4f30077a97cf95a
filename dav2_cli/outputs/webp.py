"""WebP's RIFF chunk layout, read and written in this one place: the description's XMP packet, the EXIF chunk
and the canvas size, for the writers, `dav2 info` and the image reader alike.

The description goes into an XMP packet whose `dc:description` is the JSON; a simple file (a lone VP8/VP8L
chunk) is made extended (VP8X) to hold it, as the container's specification requires.
"""

import html
import json
import re
import struct

from dav2_cli.outputs.metadata import from_text

_VP8X_XMP = 0x04  # VP8X flags: ICC 0x20, alpha 0x10, EXIF 0x08, XMP 0x04, animation 0x02
_VP8X_ALPHA = 0x10
_XMP_DESCRIPTION = re.compile(rb"<dc:description>\s*<rdf:Alt>\s*<rdf:li[^>]*>(.*?)</rdf:li>", re.DOTALL)
_EXIF_HEADER = b"Exif\x00\x00"


def is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def chunks(webp: bytes):
    """(fourcc, payload) of each chunk of a RIFF WebP file, in order (payloads without their padding byte)."""
    if not is_webp(webp):
        raise ValueError("not a WebP file")
    position = 12
    while position + 8 <= len(webp):
        kind, length = struct.unpack_from("<4sI", webp, position)
        yield kind, webp[position + 8:position + 8 + length]
        position += 8 + length + (length & 1)


def size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of the canvas (extended files) or the one image, from the first chunk's header."""
    def little(offset: int, count: int) -> int:
        return int.from_bytes(data[offset:offset + count], "little")

    chunk = data[12:16]
    if chunk == b"VP8X":  # extended format: the canvas size, 24 bits each, minus one
        return little(24, 3) + 1, little(27, 3) + 1
    if chunk == b"VP8L" and data[20:21] == b"\x2f":  # lossless: 14 bits each, minus one
        bits = little(21, 4)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14 bits each
        return little(26, 2) & 0x3FFF, little(28, 2) & 0x3FFF
    return None


def exif_block(data: bytes) -> bytes | None:
    """The TIFF structure in the `EXIF` chunk (with or without the "Exif\\0\\0" header some writers add), or None."""
    for kind, body in chunks(data):
        if kind == b"EXIF":
            return body[len(_EXIF_HEADER):] if body.startswith(_EXIF_HEADER) else body
    return None


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def with_description(webp: bytes, description: dict, width: int, height: int, *, alpha: bool = False) -> bytes:
    """`webp` (as OpenCV writes it: one still image of `width` x `height`) with the description in an XMP chunk.

    A simple file (a lone VP8/VP8L chunk) becomes an extended one: a VP8X header saying an XMP chunk follows
    the image, as the container's specification orders them.
    """
    kept = [(kind, payload) for kind, payload in chunks(webp) if kind != b"XMP "]
    if kept[0][0] == b"VP8X":
        header = bytearray(kept[0][1])
        header[0] |= _VP8X_XMP
        kept[0] = (b"VP8X", bytes(header))
    else:
        flags = _VP8X_XMP | (_VP8X_ALPHA if alpha else 0)
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        kept.insert(0, (b"VP8X", bytes([flags, 0, 0, 0]) + canvas))
    text = html.escape(json.dumps(description, ensure_ascii=False), quote=False)
    packet = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
              '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
              f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{text}</rdf:li></rdf:Alt></dc:description>'
              '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
    kept.append((b"XMP ", packet.encode()))
    body = b"WEBP" + b"".join(_riff_chunk(kind, payload) for kind, payload in kept)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def read_description(webp: bytes) -> dict:
    """The description `with_description` wrote; {} for a WebP without one."""
    for kind, payload in chunks(webp):
        if kind == b"XMP " and (found := _XMP_DESCRIPTION.search(payload)):
            value = from_text(html.unescape(found.group(1).decode("utf-8", "replace")))
            return value if isinstance(value, dict) else {"description": value}
    return {}
