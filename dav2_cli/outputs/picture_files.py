"""Depth pictures as files: PNG (8 or 16 bits), JPEG and WebP (8 bits), each described in its own container.

Colour and gray pictures may go in any of the three; gray16 only in PNG (see the format table). A described
picture carries its range, direction and decoding formula (`pictures.picture_description`); gray16, the one
meant to be read back, also gets a JSON sidecar.
"""

import cv2

from dav2_cli.errors import UserError
from dav2_cli.outputs import jpeg, png, webp
from dav2_cli.outputs.formats import SIDECAR_SUFFIX, Request, check_extension, extension_for
from dav2_cli.outputs.metadata import sidecar
from dav2_cli.outputs.pictures import depth_range, picture_description, side_by_side, to_visual


def _container(picture, ext: str, described: dict | None) -> bytes:
    if ext == ".png":
        return png.encode(picture, png.description_chunks(described) if described is not None else ())
    ok, data = cv2.imencode(ext, picture)
    if not ok:
        raise UserError(f"OpenCV could not encode the depth picture as {ext}")
    data = data.tobytes()
    if described is None:
        return data
    if ext in (".jpg", ".jpeg"):
        return jpeg.with_description(data, described)
    return webp.with_description(data, described, picture.shape[1], picture.shape[0])


def encode_outputs(depth_hw, request: Request) -> list[tuple[str, bytes]]:
    check_extension(request.fmt, request.ext)
    ext = (request.ext or extension_for(request.fmt)).lower()
    value_range = depth_range(depth_hw) if request.value_range is None else request.value_range
    picture = to_visual(depth_hw, request.fmt, cmap=request.cmap, invert=request.invert, metric=request.metric,
                        value_range=value_range)
    if request.image_bgr is not None:
        picture = side_by_side(request.image_bgr, picture)
    described = None if request.description is None else picture_description(
        request.description, request.fmt, cmap=request.cmap, invert=request.invert, metric=request.metric,
        value_range=value_range, side_by_side_width=depth_hw.shape[1] if request.image_bgr is not None else None)
    outputs = [("", _container(picture, ext, described))]
    if described is not None and request.fmt == "gray16":
        outputs.append((SIDECAR_SUFFIX, sidecar(described)))
    return outputs
