"""Depth meshes as binary glTF (.glb): what browsers' model viewers, three.js and Blender open directly.

The mesh is the one `--format ply --mesh` writes (`depth.point_cloud.build_cloud`: the same intrinsics, edge filter,
near/far and alignment rules, the same faces), so both formats show the same surface. Differences are glTF's:

* axes are glTF's, y up and the camera looking along -z (OpenCV's points turned half a turn about x);
* the photo is a texture (a PNG inside the file) that every vertex samples at its own pixel's centre, rather
  than a colour per vertex, so the picture keeps its full resolution even on a thinned mesh;
* the material is unlit (KHR_materials_unlit): a photo already holds its lighting, and a viewer's lights would
  darken it a second time;
* faces are double-sided, since a depth mesh seen from behind is still the scene;
* dav2's description (`metadata.describe`) sits in `asset.extras`, where `dav2 info` reads it back.

Bytes in, bytes out; no I/O.
"""

import json
import struct
from dataclasses import replace

import numpy as np

from dav2_cli.depth.point_cloud import Cloud, build_cloud
from dav2_cli.outputs import png
from dav2_cli.outputs.formats import Request, check_extension

_MAGIC, _VERSION = b"glTF", 2
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942
_FLOAT, _UNSIGNED_INT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _CLAMP_TO_EDGE = 9729, 33071
_TRIANGLES, _POINTS = 4, 0


def _texture_png(image_bgr) -> bytes:
    image = np.asarray(image_bgr)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]  # a depth surface has no transparency to show
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)  # browsers' texture units are 8-bit
    return png.encode(np.ascontiguousarray(image))


def encode_glb(cloud: Cloud, image_bgr, description: dict) -> bytes:
    """The .glb file of `cloud`'s mesh, textured with `image_bgr` (the picture the cloud was built from)."""
    height, width = np.asarray(image_bgr).shape[:2]
    points = np.asarray(cloud.points_n3, dtype="<f4")
    if not cloud.y_up:
        points = points * np.array([1.0, -1.0, -1.0], dtype="<f4")  # OpenCV -> glTF: a half turn about x
    rows, cols = cloud.pixels_n2[:, 0], cloud.pixels_n2[:, 1]
    uv = np.stack([(cols + 0.5) / width, (rows + 0.5) / height], axis=1).astype("<f4")
    faces = cloud.faces_m3
    parts, views = [], []

    def add_view(data: bytes, target: int | None) -> int:
        offset = sum(len(part) for part in parts)
        parts.append(data + b"\0" * (-len(data) % 4))  # every view starts 4-byte aligned
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        return len(views) - 1

    accessors = []
    attributes = {}
    if len(points):
        accessors.append({"bufferView": add_view(points.tobytes(), _ARRAY_BUFFER), "componentType": _FLOAT,
                          "count": len(points), "type": "VEC3",
                          "min": points.min(axis=0).tolist(), "max": points.max(axis=0).tolist()})
        accessors.append({"bufferView": add_view(uv.tobytes(), _ARRAY_BUFFER), "componentType": _FLOAT,
                          "count": len(uv), "type": "VEC2"})
        attributes = {"POSITION": 0, "TEXCOORD_0": 1}
    image_view = add_view(_texture_png(image_bgr), None)
    primitive = {"attributes": attributes, "material": 0, "mode": _TRIANGLES}
    if faces is not None and len(faces):
        indices = np.asarray(faces, dtype="<u4").reshape(-1)
        accessors.append({"bufferView": add_view(indices.tobytes(), _ELEMENT_ARRAY_BUFFER),
                          "componentType": _UNSIGNED_INT, "count": len(indices), "type": "SCALAR"})
        primitive["indices"] = len(accessors) - 1
    else:
        primitive["mode"] = _POINTS  # nothing to join (every neighbour across an edge): the points alone
    binary = b"".join(parts)
    document = {
        "asset": {"version": "2.0", "generator": "dav2", "extras": description},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "depth"}],
        "meshes": [{"name": "depth", "primitives": [primitive] if attributes else []}],
        "materials": [{"name": "photo", "doubleSided": True, "extensions": {"KHR_materials_unlit": {}},
                       "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0,
                                                "roughnessFactor": 1.0}}],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": _LINEAR, "minFilter": _LINEAR, "wrapS": _CLAMP_TO_EDGE, "wrapT": _CLAMP_TO_EDGE}],
        "images": [{"bufferView": image_view, "mimeType": "image/png"}],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    if not attributes:  # a mesh needs a primitive: an image whose every depth was invalid has none to show
        document["nodes"] = [{"name": "depth"}]
        del document["meshes"]
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", _MAGIC, _VERSION, total), struct.pack("<I", len(text)),
                     struct.pack("<I", _JSON_CHUNK), text, struct.pack("<II", len(binary), _BIN_CHUNK), binary])


def encode_outputs(depth_hw, request: Request) -> list[tuple[str, bytes]]:
    """The .glb file of `request.cloud` (a ply.CloudRequest) as a mesh, whether or not --mesh was given (a glTF
    viewer shows points as specks); its depth must be a distance (metres), never relative inverse depth."""
    cloud = request.cloud
    if cloud is None:
        raise ValueError("a mesh needs a CloudRequest (intrinsics and colours)")
    check_extension(request.fmt, request.ext)
    mesh = build_cloud(depth_hw, cloud.colors_bgr, cloud.intrinsics, replace(cloud.options, mesh=True),
                       max_depth=cloud.max_depth)
    return [("", encode_glb(mesh, cloud.colors_bgr, request.description or {}))]


def glb_description(data: bytes) -> dict:
    """The description a .glb written by `encode_glb` carries (its asset.extras); {} for other glTF files."""
    if len(data) < 20:
        raise ValueError("not a binary glTF 2.0 file (truncated)")
    magic, version, _ = struct.unpack_from("<4sII", data)
    length, kind = struct.unpack_from("<II", data, 12)
    if magic != _MAGIC or version != _VERSION or kind != _JSON_CHUNK:
        raise ValueError("not a binary glTF 2.0 file")
    document = json.loads(data[20:20 + length])
    extras = document.get("asset", {}).get("extras", {})
    return extras if isinstance(extras, dict) else {}
