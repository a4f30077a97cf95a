"""The one EXIF fact a point cloud needs: the photo's 35 mm-equivalent focal length.

Cameras and phones write `FocalLengthIn35mmFilm` (tag 0xA405) into the Exif sub-IFD of a TIFF structure, which
JPEG carries in an APP1 segment, PNG in an `eXIf` chunk and WebP in an `EXIF` chunk; a TIFF file is that
structure itself. Each container's module finds the block; it is read without ever raising: a damaged or absent
EXIF block only means the focal length is not known.

Orientation needs no care here: the 35 mm equivalent is defined on the frame's diagonal, which a quarter turn
does not change, so the focal in pixels is the same for the image as stored and as decoded (turned upright).
"""

from dav2_cli.outputs import jpeg, png, tiff, webp

FOCAL_LENGTH_35MM = 0xA405


def focal_length_35mm(data: bytes) -> float | None:
    """The photo's 35 mm-equivalent focal length in mm from its EXIF, or None when it does not say."""
    if data.startswith(jpeg.SIGNATURE):
        block = jpeg.exif_block(data)
    elif data.startswith(png.SIGNATURE):
        block = png.exif_block(data)
    elif webp.is_webp(data):
        block = webp.exif_block(data)
    else:
        block = data  # a TIFF file is the structure itself; anything else fails the header check
    focal = tiff.exif_value(block, FOCAL_LENGTH_35MM) if block else None
    return float(focal) if focal else None  # 0 means "unknown" in the EXIF standard
