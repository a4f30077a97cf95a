"""The 35 mm-equivalent focal length from EXIF: in files built here byte by byte from the EXIF/TIFF spec, each
checked by Pillow's EXIF reader too, and in files whose EXIF Pillow wrote."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from dav2_cli.depth.camera import focal_from_35mm, resolve_intrinsics
from dav2_cli.media.exif import focal_length_35mm
from dav2_cli.media.images import decode_image


def exif_tiff(focal_35mm, order="<", orientation=None):
    """A TIFF structure: IFD0 (orientation, Exif pointer) → Exif IFD (ExposureTime, FocalLengthIn35mmFilm)."""
    magic = b"II*\x00" if order == "<" else b"MM\x00*"

    def entry(tag, kind, count, value):
        packed = struct.pack(order + "H", value) + b"\0\0" if kind == 3 else struct.pack(order + "I", value)
        return struct.pack(order + "HHI", tag, kind, count) + packed

    ifd0_entries = ([entry(0x0112, 3, 1, orientation)] if orientation else []) + [None]
    ifd0_size = 2 + 12 * len(ifd0_entries) + 4
    exif_at = 8 + ifd0_size
    ifd0_entries[-1] = entry(0x8769, 4, 1, exif_at)
    rational_at = exif_at + 2 + 12 * 2 + 4
    exif_entries = [entry(0x829A, 5, 1, rational_at), entry(0xA405, 3, 1, focal_35mm)]
    return (magic + struct.pack(order + "I", 8)
            + struct.pack(order + "H", len(ifd0_entries)) + b"".join(ifd0_entries) + struct.pack(order + "I", 0)
            + struct.pack(order + "H", 2) + b"".join(exif_entries) + struct.pack(order + "I", 0)
            + struct.pack(order + "II", 1, 125))


def jpeg_with_exif(image, tiff):
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def png_with_exif(image, tiff):
    png = cv2.imencode(".png", image)[1].tobytes()
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    return png[:33] + chunk + png[33:]


def pillow_focal_35mm(data):
    return Image.open(io.BytesIO(data)).getexif().get_ifd(0x8769).get(0xA405)


@pytest.mark.parametrize("order", ["<", ">"])
def test_focal_from_a_hand_built_jpeg(order):
    image = np.zeros((20, 30, 3), np.uint8)
    built = [(jpeg_with_exif(image, exif_tiff(26, order)), 26), (png_with_exif(image, exif_tiff(50, order)), 50)]
    for data, focal in built:
        assert pillow_focal_35mm(data) == focal  # the hand-built file is EXIF as Pillow reads it
        assert focal_length_35mm(data) == float(focal)


@pytest.mark.parametrize("container", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_focal_from_exif_that_pillow_wrote(container):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation, in IFD0 before the Exif pointer
    exif.get_ifd(0x8769)[0xA405] = 35
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buffer, container, exif=exif.tobytes())
    assert focal_length_35mm(buffer.getvalue()) == 35.0
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buffer, container)  # no EXIF at all
    assert focal_length_35mm(buffer.getvalue()) is None


def test_markers_without_a_length_and_fill_bytes_before_the_exif_segment():
    # fill bytes and a TEM marker carry no length; a walk that reads one there loses every later segment
    data = jpeg_with_exif(np.zeros((20, 30, 3), np.uint8), exif_tiff(24))
    filled = data[:2] + b"\xff\xff" + data[2:]
    assert pillow_focal_35mm(filled) == 24
    assert focal_length_35mm(filled) == 24.0
    assert focal_length_35mm(data[:2] + b"\xff\x01" + filled[2:]) == 24.0


def test_absent_zero_or_damaged_exif_means_unknown():
    image = np.zeros((20, 30, 3), np.uint8)
    assert focal_length_35mm(cv2.imencode(".jpg", image)[1].tobytes()) is None
    assert focal_length_35mm(jpeg_with_exif(image, exif_tiff(0))) is None  # 0 is "unknown" in EXIF
    damaged = exif_tiff(26)[:30]  # the Exif IFD pointer points past the end
    assert focal_length_35mm(jpeg_with_exif(image, damaged)) is None
    assert focal_length_35mm(b"not an image at all") is None


def test_orientation_turns_the_image_and_the_focal_in_pixels_follows_the_diagonal():
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide as stored; orientation 6 shows it 20 wide, 40 tall
    data = jpeg_with_exif(stored, exif_tiff(28, orientation=6))
    decoded = decode_image(data, "photo.jpg")
    assert decoded.shape[:2] == (40, 20)
    intrinsics = resolve_intrinsics(decoded.shape[1], decoded.shape[0], focal_35mm=focal_length_35mm(data))
    assert intrinsics.fx == pytest.approx(focal_from_35mm(40, 20, 28.0))  # the diagonal does not turn
    assert (intrinsics.cx, intrinsics.cy) == (9.5, 19.5)  # the centre of the image as decoded
