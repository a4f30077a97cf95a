"""GLB meshes read back by pygltflib, a glTF reader we did not write: counts, positions, texture, description."""

import numpy as np
import pygltflib
import pytest

from dav2_cli.depth.camera import resolve_intrinsics
from dav2_cli.depth.point_cloud import CloudOptions, build_cloud
from dav2_cli.outputs.glb import encode_glb, glb_description

HEIGHT, WIDTH = 24, 32


def scene():
    depth = np.full((HEIGHT, WIDTH), 4.0, dtype=np.float32)
    depth[8:16, 10:20] = 1.0  # a near box: its sides are depth edges the mesh drops and must not bridge
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, :, 1] = np.arange(WIDTH) * 8
    image[:, :, 2] = (np.arange(HEIGHT) * 10)[:, None]
    return depth, image


def accessor_array(gltf, binary, index, dtype, width):
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    data = binary[view.byteOffset:view.byteOffset + view.byteLength]
    return np.frombuffer(data, dtype=dtype).reshape(accessor.count, width) if width > 1 else \
        np.frombuffer(data, dtype=dtype)


@pytest.mark.parametrize("stride", [1, 3])
def test_glb_reads_back_with_the_mesh_positions_and_faces(tmp_path, stride):
    depth, image = scene()
    intrinsics = resolve_intrinsics(WIDTH, HEIGHT, hfov=60.0)
    cloud = build_cloud(depth, image, intrinsics, CloudOptions(mesh=True, stride=stride))
    path = tmp_path / "scene.glb"
    path.write_bytes(encode_glb(cloud, image, {"model": "vits", "kind": "metric"}))

    gltf = pygltflib.GLTF2().load(str(path))
    binary = gltf.binary_blob()
    primitive = gltf.meshes[0].primitives[0]
    positions = accessor_array(gltf, binary, primitive.attributes.POSITION, "<f4", 3)
    # The edge filter drops the pixels beside the box's outline (a 4-neighbour at 4x the depth), then the grid.
    other = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for axis in (0, 1):
        step = np.diff(depth, axis=axis) != 0
        lead = [slice(None)] * 2
        lead[axis] = slice(None, -1)
        trail = [slice(None)] * 2
        trail[axis] = slice(1, None)
        other[tuple(lead)] |= step
        other[tuple(trail)] |= step
    kept = ~other[::stride, ::stride]
    assert len(positions) == kept.sum()
    # Each vertex (u, v) of its texture coordinate, at planar depth Z, sits at glTF's (X, -Y, -Z) with
    # X = (u - cx) Z / fx and Y = (v - cy) Z / fy.
    uv = accessor_array(gltf, binary, primitive.attributes.TEXCOORD_0, "<f4", 2)
    u, v = np.rint(uv * [WIDTH, HEIGHT] - 0.5).astype(int).T
    assert np.allclose(uv * [WIDTH, HEIGHT] - 0.5, np.stack([u, v], 1), atol=1e-4)
    assert ((u % stride == 0) & (v % stride == 0)).all() and not other[v, u].any()
    z = depth[v, u]
    expected = np.stack([(u - intrinsics.cx) * z / intrinsics.fx, -(v - intrinsics.cy) * z / intrinsics.fy, -z], 1)
    assert np.allclose(positions, expected, atol=1e-5)
    faces = accessor_array(gltf, binary, primitive.indices, "<u4", 1).reshape(-1, 3)
    assert np.array_equal(faces, cloud.faces_m3)
    if stride == 1:  # no face joins the box to the wall behind it (a thinned grid judges over its longer step)
        assert np.ptp(positions[faces][:, :, 2], axis=1).max() < 1.0
    assert gltf.accessors[primitive.attributes.POSITION].min == pytest.approx(positions.min(axis=0).tolist())
    assert gltf.images[0].mimeType == "image/png"
    assert glb_description(path.read_bytes()) == {"model": "vits", "kind": "metric"}


def test_the_texture_is_the_photo(tmp_path):
    import cv2

    depth, image = scene()
    cloud = build_cloud(depth, image, resolve_intrinsics(WIDTH, HEIGHT), CloudOptions(mesh=True))
    gltf = pygltflib.GLTF2.load_from_bytes(encode_glb(cloud, image, {}))
    view = gltf.bufferViews[gltf.images[0].bufferView]
    png = gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]
    assert np.array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED), image)
