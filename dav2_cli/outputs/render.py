"""Depth maps become files here, and nowhere else: the one entry from a depth map to the bytes of its output.

Every output a user can ask for goes through `encode_outputs`, so a photo, a folder and a video frame come out
identically. It checks what holds for every format, then hands the map to the writer the format table names
(`formats.TABLE`): pictures (`picture_files`), raw float32 files (`npy`, `exr`, `tiff`) and point clouds (`ply`).
Given a description (`metadata.describe`), every file says what it holds and how to get the depth back from it;
sidecars come back as extra (suffix, bytes) outputs for the job to write, so nothing here touches the file system.
"""

import importlib

import numpy as np

from dav2_cli.outputs.formats import BY_NAME, Request, canonical_format, check_side_by_side, check_sky_mask


def encode_outputs(depth_hw, fmt, *, ext=None, cmap="Spectral_r", invert=False, metric=False, value_range=None,
                   image_bgr=None, description=None, cloud=None, sky_hw=None) -> list[tuple[str, bytes]]:
    """Every file one output of `depth_hw` in format `fmt` consists of: [(suffix, bytes), ...].

    The first entry (suffix "") is the output itself; a sidecar follows as (".json", bytes), to be written
    beside it as OUT.json. With a `description` (`metadata.describe`) each file says what it holds: pictures in
    their text chunks (gray16 also in a sidecar, since it is the one to read back), EXR in header attributes,
    TIFF in ImageDescription, npy in a sidecar, ply in header comments. Pictures are PNG unless `ext` names
    another container (".jpg", ".jpeg", ".webp"; 8-bit only, so not for gray16); `cmap`, `invert`, `metric` and
    `value_range` are `pictures.to_visual`'s, and with `image_bgr` the picture is `pictures.side_by_side`.
    `ply` needs `cloud` (a ply.CloudRequest); its depth must be a distance (metres), never inverse depth.
    `sky_hw` (bool HxW, `--sky mask`) is written with the depth by the formats that have room for it
    (formats.SKY_MASK_FORMATS: an EXR channel, a TIFF page, an npy's sidecar PNG) and refused by the others.
    """
    name = canonical_format(fmt)
    depth_hw = np.asarray(depth_hw, dtype=np.float32)
    if depth_hw.ndim != 2 or depth_hw.size == 0:
        raise ValueError(f"depth map must be a non-empty HxW array, got shape {depth_hw.shape}")
    check_side_by_side(name, image_bgr is not None)
    if sky_hw is not None:
        check_sky_mask(name, "mask")
        sky_hw = np.asarray(sky_hw, dtype=bool)
        if sky_hw.shape != depth_hw.shape:
            raise ValueError(f"sky mask of shape {sky_hw.shape} for a depth map of shape {depth_hw.shape}")
    request = Request(name, ext=ext, cmap=cmap, invert=invert, metric=metric, value_range=value_range,
                      image_bgr=image_bgr, description=description, cloud=cloud, sky_hw=sky_hw)
    writer = importlib.import_module(f"dav2_cli.outputs.{BY_NAME[name].writer}")
    return writer.encode_outputs(depth_hw, request)


def encode(depth_hw, fmt, **options) -> bytes:
    """The complete bytes of one output file for `depth_hw` in format `fmt` (no sidecar; see encode_outputs)."""
    return encode_outputs(depth_hw, fmt, **options)[0][1]
