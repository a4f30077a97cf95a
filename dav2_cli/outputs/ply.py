"""Point clouds as PLY files: binary little-endian, coloured vertices, optional faces, and a header that says
which way the axes point.

PLY is what MeshLab, CloudCompare, Blender and Open3D all open. The layout is the most widely read one:
`vertex` with `float x, y, z` and `uchar red, green, blue`, and `face` with `list uchar int vertex_indices`.
The axis convention and the file's description (`metadata.describe`) go into `comment` lines, one key each, so
a reader that only knows PLY still sees them and `dav2 info` reads them back. No I/O: bytes out, bytes in.
"""

import json
from dataclasses import dataclass

import numpy as np

from dav2_cli.depth.camera import Intrinsics
from dav2_cli.depth.point_cloud import Cloud, CloudOptions, build_cloud
from dav2_cli.outputs.formats import Request, check_extension

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_VERTEX_PROPERTIES = ["float x", "float y", "float z", "uchar red", "uchar green", "uchar blue"]
_FACE = np.dtype([("count", "u1"), ("indices", "<i4", (3,))])
_COMMENT_KEY = "dav2 "

AXES_OPENCV = "x right, y down, z forward (OpenCV camera)"
AXES_Y_UP = "x right, y up, z backward (Blender, three.js: the camera looks along -z)"


@dataclass(frozen=True)
class CloudRequest:
    """What a point cloud needs beyond the depth: the camera, the colours, and which points to keep."""

    intrinsics: Intrinsics
    colors_bgr: np.ndarray  # the decoded image the depth belongs to
    options: CloudOptions = CloudOptions()
    max_depth: float | None = None  # a metric model's saturation limit: points at it are dropped


def axes_comment(y_up: bool) -> str:
    return AXES_Y_UP if y_up else AXES_OPENCV


def encode_ply(cloud: Cloud, description: dict) -> bytes:
    """The PLY file of `cloud`, its header commented with the axes, the unprojection and `description`."""
    flip = ", then (X, Y, Z) -> (X, -Y, -Z)" if cloud.y_up else ""
    comments = [
        "made by dav2 from a depth map",
        f"axes: {axes_comment(cloud.y_up)}",
        f"vertex of pixel (u, v) with planar depth Z: X = (u - cx) Z / fx, Y = (v - cy) Z / fy{flip}",
        f"{_COMMENT_KEY}axes={json.dumps('y-up' if cloud.y_up else 'opencv')}",
        f"{_COMMENT_KEY}stride={cloud.stride}",
        *(f"{_COMMENT_KEY}{key}={json.dumps(value)}" for key, value in description.items()),
    ]
    header = ["ply", "format binary_little_endian 1.0", *(f"comment {line}" for line in comments),
              f"element vertex {len(cloud.points_n3)}", *(f"property {p}" for p in _VERTEX_PROPERTIES)]
    if cloud.faces_m3 is not None:
        header += [f"element face {len(cloud.faces_m3)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    vertices = np.empty(len(cloud.points_n3), dtype=_VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = cloud.points_n3[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = cloud.colors_n3[:, channel]
    parts = [("\n".join(header) + "\n").encode("ascii", "replace"), vertices.tobytes()]
    if cloud.faces_m3 is not None:
        faces = np.empty(len(cloud.faces_m3), dtype=_FACE)
        faces["count"] = 3
        faces["indices"] = cloud.faces_m3
        parts.append(faces.tobytes())
    return b"".join(parts)


def encode_outputs(depth_hw, request: Request) -> list[tuple[str, bytes]]:
    """The PLY file of `request.cloud` (a CloudRequest); its depth must be a distance (metres), never relative
    inverse depth."""
    cloud = request.cloud
    if cloud is None:
        raise ValueError("a point cloud needs a CloudRequest (intrinsics and colours)")
    check_extension(request.fmt, request.ext)
    points = build_cloud(depth_hw, cloud.colors_bgr, cloud.intrinsics, cloud.options, max_depth=cloud.max_depth)
    return [("", encode_ply(points, request.description or {}))]


def read_ply(data: bytes) -> tuple[dict, np.ndarray]:
    """(the `dav2` comments as a dict, the vertex records) of a PLY file written by `encode_ply`."""
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError("not a PLY file")
    description, vertex_count, properties = {}, 0, []
    lines = data[:end].decode("ascii", "replace").splitlines()
    for number, line in enumerate(lines):
        if line.startswith("comment " + _COMMENT_KEY):
            key, _, value = line[len("comment " + _COMMENT_KEY):].partition("=")
            try:
                description[key] = json.loads(value)
            except ValueError:
                description[key] = value
        elif line.startswith("element vertex "):
            vertex_count = int(line.split()[2])
            properties = [" ".join(p.split()[1:]) for p in lines[number + 1:number + 7]]
        elif line.startswith("format ") and "binary_little_endian" not in line:
            raise ValueError("not a binary little-endian PLY file")
    if properties != _VERTEX_PROPERTIES:
        raise ValueError("its vertices are not float x, y, z and uchar red, green, blue")
    start = end + len(b"end_header\n")
    vertices = np.frombuffer(data, dtype=_VERTEX, count=vertex_count, offset=start)
    return description, vertices
