"""npy files of float32 depth: numpy's own format, written and read here. The format has no room for text, so a
described map gets its description in a JSON sidecar (OUT.npy.json), and with `--sky mask` the sky mask is a
sidecar picture (OUT.npy.sky.png, 255 = sky), so that `np.load` still gives the bare depth array."""

import io

import numpy as np

from dav2_cli.errors import UserError
from dav2_cli.outputs import png
from dav2_cli.outputs.formats import SIDECAR_SUFFIX, SKY_MASK_SUFFIX, Request, check_extension
from dav2_cli.outputs.metadata import sidecar

MAGIC = b"\x93NUMPY"


def encode(depth_hw) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, depth_hw, allow_pickle=False)
    return buffer.getvalue()


def decode(data: bytes, name) -> np.ndarray:
    """The HxW float32 map of an npy file; UserError naming `name` for anything else."""
    try:
        values = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{name}: not a readable .npy file ({exc})") from None
    if values.ndim != 2:
        raise UserError(f"{name}: holds an array of shape {values.shape}, not an HxW depth map")
    return values.astype(np.float32, copy=False)


def encode_outputs(depth_hw, request: Request) -> list[tuple[str, bytes]]:
    check_extension(request.fmt, request.ext)
    outputs = [("", encode(depth_hw))]
    if request.description is not None:
        outputs.append((SIDECAR_SUFFIX, sidecar(request.description)))
    if request.sky_hw is not None:
        # described as the npy is, so that a later `dav2 folder` over its folder knows it for dav2's own output
        chunks = png.description_chunks(request.description) if request.description is not None else []
        outputs.append((SKY_MASK_SUFFIX, png.encode(png.mask_picture(request.sky_hw), chunks)))
    return outputs
