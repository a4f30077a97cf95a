"""Reading images: files, stdin, folders and lists, each failure one line naming the file.

Images are decoded from bytes (not by path) so files, stdin and unusual file names are handled alike, and the
format is decided by content, never by the extension. Image dimensions are read from the header before
decoding, so a small file that claims a gigantic image is refused instead of exhausting memory.
"""

import os
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from dav2_cli.errors import UserError
from dav2_cli.outputs import jpeg, png, tiff, webp
from dav2_cli.outputs.atomic import STDIO, describe_os_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# The decoded image, its float32 copy for resizing and the full-size depth map cost about 30 bytes a pixel, so
# 200 megapixels (e.g. 16000x12500) stays near 6 GB at peak; every camera, even 150 MP medium format, is below.
DEFAULT_MAX_MEGAPIXELS = 200



def read_input_bytes(source) -> bytes:
    if str(source) == STDIO:
        return sys.stdin.buffer.read()
    try:
        with open(source, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise UserError(describe_os_error(source, exc)) from None
    except ValueError:  # a NUL character, which no file name can hold (a damaged list file)
        raise UserError(f"{source!r}: not a possible file name") from None


def image_header(data: bytes) -> tuple[str, tuple[int, int] | None]:
    """(format name, (width, height) or None) from the first bytes, for the formats cameras and tools write.

    Only the header is read; the size is None when the header is too damaged to tell. Unknown formats give
    ("", None) and are left to OpenCV.
    """
    if data.startswith(png.SIGNATURE):
        return "PNG", png.size(data)
    if data.startswith(jpeg.SIGNATURE):
        return "JPEG", jpeg.size(data)
    if tiff.is_tiff(data):
        return "TIFF", tiff.size(data)
    if webp.is_webp(data):
        return "WebP", webp.size(data)
    if data.startswith(b"BM") and len(data) >= 26:
        if struct.unpack_from("<I", data, 14)[0] == 12:  # the old OS/2 header: 16-bit sides
            return "BMP", struct.unpack_from("<HH", data, 18)
        width, height = struct.unpack_from("<ii", data, 18)
        return "BMP", (abs(width), abs(height))
    return "", None


# ancillary PNG chunks that change what OpenCV decodes: transparency (dropped later, but kept for libpng's sake)
# and EXIF, whose orientation OpenCV applies; the rest only describe the image, and OpenCV ignores them
DECODED_PNG_CHUNKS = (b"tRNS", b"eXIf")


def png_for_decoding(data: bytes) -> bytes | None:
    """The PNG as OpenCV decodes it: every critical chunk (header, palette, pixels) and DECODED_PNG_CHUNKS, or None
    when its chunks stop short of IEND or a critical one fails its CRC-32.

    libpng writes its complaints to stderr itself, beside dav2's one line: errors about a truncated or damaged
    file, and warnings about malformed descriptive chunks in files that decode fine (the well-known "iCCP: known
    incorrect sRGB profile"), which would fill a folder job's stderr. So damage is found here first, and libpng
    never sees the descriptive chunks. The walk costs ~12 ms for an 18 MB file.
    """
    view, dropped = memoryview(data), False
    kept = [view[:8]]
    for kind, start, end in png.chunks(data):
        if end > len(data):
            return None
        critical = not kind[0] & 0x20  # an upper-case first letter
        if critical or kind in DECODED_PNG_CHUNKS:
            if zlib.crc32(view[start + 4:end - 4]) == int.from_bytes(data[end - 4:end], "big"):
                kept.append(view[start:end])
            elif critical:
                return None
            else:
                dropped = True  # libpng would warn and skip it
        else:
            dropped = True
        if kind == b"IEND":
            return b"".join(kept) if dropped else data
    return None


def max_megapixels() -> float:
    """The size limit: DAV2_MAX_MEGAPIXELS when set (for machines with the memory), else the default."""
    setting = os.environ.get("DAV2_MAX_MEGAPIXELS", "").strip()
    if not setting:
        return DEFAULT_MAX_MEGAPIXELS
    try:
        limit = float(setting)
    except ValueError:
        limit = float("nan")
    if not limit > 0:
        raise UserError(f"DAV2_MAX_MEGAPIXELS={setting}: expected a positive number of megapixels")
    return limit


def check_pixel_count(name, width: int, height: int) -> None:
    limit, megapixels = max_megapixels(), width * height / 1e6
    if megapixels > limit:
        shown = f"{megapixels:.0f}" if megapixels >= 10 else f"{megapixels:.2g}"
        raise UserError(f"{name}: {width}x{height} is {shown} megapixels, above the "
                        f"{limit:g}-megapixel limit (downscale it, or raise DAV2_MAX_MEGAPIXELS)")


def decode_image(data: bytes, name) -> np.ndarray:
    """Encoded bytes → BGR uint8 or uint16 HxWx3, EXIF orientation applied, alpha dropped.

    Any damage, whatever the bytes, ends in a UserError naming `name`; images above `max_megapixels()` are refused
    from their header, before any pixel is decoded.
    """
    if not data:
        raise UserError(f"{name}: empty file")
    kind, size = image_header(data)
    if size is not None:
        check_pixel_count(name, *size)
    try:
        image, decodable = None, png_for_decoding(data) if kind == "PNG" else data
        if decodable is not None:
            image = cv2.imdecode(np.frombuffer(decodable, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error:  # OpenCV's own size limit, or a decoder that gave up with an exception
        pass
    if image is None or image.size == 0:
        damaged = f"damaged or truncated {kind} data" if kind else "unknown format or damaged data"
        raise UserError(f"{name}: not a readable image ({damaged})")
    check_pixel_count(name, image.shape[1], image.shape[0])  # formats whose header is not read above
    if image.dtype not in (np.uint8, np.uint16):
        # float or signed images: assume the usual 0..1 range and keep 16 bits of it
        image = (np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0) * 65535.0).astype(np.uint16)
    return image


def read_image(source) -> np.ndarray:
    return decode_image(read_input_bytes(source), "<stdin>" if str(source) == STDIO else source)


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def scan_folder(root: Path, *, recursive: bool = True, exclude: Path | None = None,
                keep: Callable[[str], bool] = is_image_name) -> tuple[list[Path], list[str]]:
    """Image files (or the files `keep` takes by name) under `root` as paths relative to it, sorted, and one
    message per folder that can't be listed.

    Images are chosen by extension (any case); hidden files and folders are skipped, and so is `exclude` (the
    output folder, when it lies inside `root`). Symbolic links to files count as the files; linked folders are
    not entered, so a link loop cannot trap the scan.
    """
    excluded = os.path.realpath(exclude) if exclude is not None else None
    problems: list[str] = []

    def note(exc: OSError) -> None:
        if os.path.realpath(exc.filename) != os.path.realpath(root):
            problems.append(describe_os_error(exc.filename, exc))
        else:
            raise UserError(describe_os_error(root, exc))

    def enter(folder: str, name: str) -> bool:
        return recursive and not name.startswith(".") and \
            (excluded is None or os.path.realpath(os.path.join(folder, name)) != excluded)

    found = []
    for folder, subfolders, files in os.walk(root, onerror=note, followlinks=False):
        subfolders[:] = [name for name in subfolders if enter(folder, name)]  # os.walk descends into these only
        base = Path(folder).relative_to(root)
        found.extend(base / name for name in files if keep(name))
    return sorted(found, key=lambda rel: rel.parts), problems


def read_path_list(list_file: Path) -> list[Path]:
    """The image paths a text file names, one per line, relative to the file's folder; `#` lines are comments."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(describe_os_error(list_file, exc)) from None
    except UnicodeDecodeError:
        raise UserError(f"{list_file}: not a UTF-8 text file of image paths") from None
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(list_file.parent / line)
    return entries
