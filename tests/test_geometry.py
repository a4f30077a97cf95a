"""Point clouds: the camera model, which points are kept, the mesh, and the PLY file as another reader sees it.

Expected positions are computed here from the pinhole formulas written out, not by calling `camera.unproject`,
and the PLY files are read with `plyfile`, a reader this project did not write.
"""

import io
import math

import numpy as np
import pytest
from plyfile import PlyData

from dav2_cli.depth import camera, point_cloud

from dav2_cli.outputs import metadata, render
from dav2_cli.outputs.ply import CloudRequest
from dav2_cli.depth.camera import resolve_intrinsics
from dav2_cli.depth.point_cloud import CloudOptions, build_cloud


def plane_depth(height, width, intrinsics, normal, offset):
    """Planar depth Z(u, v) of the plane normal . X = offset, seen through `intrinsics` (pixel centres at u)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    ray = np.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, np.ones_like(u)])
    return (offset / np.tensordot(normal, ray, axes=1)).astype(np.float32)


def photo(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def ply_bytes(depth, image, intrinsics, options=CloudOptions(), max_depth=None):
    description = metadata.describe(model="test", metric=True, input_size=56, width=depth.shape[1],
                                    height=depth.shape[0], intrinsics=intrinsics)
    request = CloudRequest(intrinsics, image, options, max_depth)
    [(suffix, data)] = render.encode_outputs(depth, "ply", description=description, cloud=request)
    assert suffix == ""
    return data


def test_intrinsics_from_each_source():
    width, height = 640, 480
    hfov = resolve_intrinsics(width, height, hfov=90)
    assert hfov.fx == pytest.approx(320.0) and hfov.fy == hfov.fx
    assert (hfov.cx, hfov.cy) == (319.5, 239.5)
    exif = resolve_intrinsics(width, height, focal_35mm=26)
    assert exif.fx == pytest.approx(26 * 800 / math.sqrt(36 ** 2 + 24 ** 2)) and exif.source == "exif"
    given = resolve_intrinsics(width, height, fx=500, cx=300, cy=200)
    assert (given.fx, given.fy, given.cx, given.cy) == (500, 500, 300, 200)
    # explicit focal beats hfov beats EXIF
    assert resolve_intrinsics(width, height, fx=500, hfov=90, focal_35mm=26).fx == 500
    assert resolve_intrinsics(width, height, hfov=90, focal_35mm=26).source == "hfov"


def test_fallback_scales_with_the_image_and_says_it_was_assumed():
    small = resolve_intrinsics(320, 240)
    large = resolve_intrinsics(3200, 2400)
    assert small.source == "assumed" and "assumed" in small.note
    assert large.fx == pytest.approx(10 * small.fx)  # never one pixel focal for every size
    assert small.fx == pytest.approx(320 / (2 * math.tan(math.radians(camera.DEFAULT_HFOV_DEG) / 2)))


@pytest.mark.parametrize("normal, offset", [((0.0, 0.0, 1.0), 3.0), ((0.3, -0.2, 1.0), 2.5)])
def test_a_plane_comes_back_flat_and_at_its_distance(normal, offset):
    height, width = 48, 64
    intrinsics = resolve_intrinsics(width, height, fx=70.0, fy=75.0, cx=30.0, cy=25.0)
    depth = plane_depth(height, width, intrinsics, np.array(normal), offset)
    cloud = build_cloud(depth, photo(height, width), intrinsics)
    assert len(cloud.points_n3) == height * width  # a smooth plane has no edge to drop
    distance = cloud.points_n3.astype(np.float64) @ np.array(normal)
    np.testing.assert_allclose(distance, offset, rtol=1e-5)
    if normal == (0.0, 0.0, 1.0):  # a frontal plane: the corners span the field of view the intrinsics say
        xs = cloud.points_n3[:, 0]
        assert xs.min() == pytest.approx((0 - 30.0) * 3.0 / 70.0, rel=1e-6)
        assert xs.max() == pytest.approx((width - 1 - 30.0) * 3.0 / 70.0, rel=1e-6)


def test_every_vertex_is_its_pixel_unprojected_with_its_colour():
    height, width = 12, 17
    rng = np.random.default_rng(1)
    depth = (rng.random((height, width)) * 4 + 1).astype(np.float32)
    image = photo(height, width, seed=2)
    intrinsics = resolve_intrinsics(width, height, fx=20.0, fy=22.0, cx=8.2, cy=5.7)
    ply = PlyData.read(io.BytesIO(ply_bytes(depth, image, intrinsics, CloudOptions(edge_threshold=0))))
    vertex = ply["vertex"]
    assert vertex.count == height * width
    v, u = np.divmod(np.arange(height * width), width)  # row-major: vertex k is pixel (k // W, k % W)
    z = depth[v, u]
    np.testing.assert_allclose(vertex["z"], z, rtol=1e-6)
    np.testing.assert_allclose(vertex["x"], (u - 8.2) * z / 20.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vertex["y"], (v - 5.7) * z / 22.0, rtol=1e-5, atol=1e-6)
    rgb = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
    np.testing.assert_array_equal(rgb, image[v, u][:, ::-1])  # BGR image, RGB vertices


def test_plyfile_reads_the_layout_the_issue_asks_for():
    height, width = 6, 8
    intrinsics = resolve_intrinsics(width, height, hfov=60)
    depth = np.full((height, width), 2.0, dtype=np.float32)
    data = ply_bytes(depth, photo(height, width), intrinsics, CloudOptions(mesh=True))
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
    ply = PlyData.read(io.BytesIO(data))
    types = {p.name: p.val_dtype for p in ply["vertex"].properties}
    assert {k: np.dtype(t).str for k, t in types.items()} == {
        "x": "<f4", "y": "<f4", "z": "<f4", "red": "|u1", "green": "|u1", "blue": "|u1"}
    faces = np.stack(ply["face"]["vertex_indices"])
    assert faces.shape == (2 * (height - 1) * (width - 1), 3)
    assert any("x right, y down, z forward" in c for c in ply.comments)
    # counter-clockwise seen from the camera: normals of a frontal plane point back at it (-z)
    points = np.stack([ply["vertex"][axis] for axis in "xyz"], axis=1)
    normals = np.cross(points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]])
    assert (normals[:, 2] < 0).all()


def test_y_up_is_a_half_turn_and_is_written_in_the_header():
    height, width = 5, 7
    intrinsics = resolve_intrinsics(width, height, hfov=60)
    depth = plane_depth(height, width, intrinsics, np.array([0.1, 0.2, 1.0]), 2.0)
    opencv = build_cloud(depth, photo(height, width), intrinsics)
    flipped = build_cloud(depth, photo(height, width), intrinsics, CloudOptions(y_up=True))
    np.testing.assert_array_equal(flipped.points_n3, opencv.points_n3 * np.array([1, -1, -1], np.float32))
    ply = PlyData.read(io.BytesIO(ply_bytes(depth, photo(height, width), intrinsics, CloudOptions(y_up=True))))
    assert any("y up, z backward" in c for c in ply.comments)


def step_scene(height=10, width=200, near=2.0, far=6.0, ramp=6):
    """A near surface on the left, a far one on the right, with the smeared ramp a model puts between them.

    Seen at 60 degrees, 6 of 200 columns span 1.8 degrees: the width of about one and a half model patches at
    the default input size, as wide as the model's smear usually is.
    """
    column = np.concatenate([np.full(width // 2 - ramp // 2, near), np.geomspace(near, far, ramp + 2)[1:-1],
                             np.full(width - width // 2 - ramp // 2, far)])
    return np.tile(column, (height, 1)).astype(np.float32)


def test_flying_pixels_at_a_step_are_dropped_and_threshold_0_keeps_them():
    depth = step_scene()
    height, width = depth.shape
    intrinsics = resolve_intrinsics(width, height, hfov=60)
    cloud = build_cloud(depth, photo(height, width), intrinsics)
    z = cloud.points_n3[:, 2]
    assert np.isin(np.round(z, 4), [2.0, 6.0]).all()  # nothing left between the two surfaces
    assert (z == 2.0).sum() > 0 and (z == 6.0).sum() > 0
    kept_all = build_cloud(depth, photo(height, width), intrinsics, CloudOptions(edge_threshold=0))
    assert len(kept_all.points_n3) == height * width


def test_edge_threshold_is_the_documented_rate():
    # ln Z grows by exactly `rate` radians^-1 per pixel: kept below the threshold, dropped above it
    width, height = 30, 4
    intrinsics = resolve_intrinsics(width, height, fx=100.0)
    for rate, kept in ((15.0, True), (25.0, False)):
        depth = np.tile(np.exp(np.arange(width) * rate / 100.0), (height, 1)).astype(np.float32)
        cloud = build_cloud(depth, photo(height, width), intrinsics, CloudOptions(edge_threshold=20.0))
        assert (len(cloud.points_n3) == height * width) is kept


@pytest.mark.parametrize("ramp, stride", [(0, 1), (6, 1), (6, 3), (0, 2)])
def test_the_mesh_never_bridges_the_edge(ramp, stride):
    depth = step_scene(ramp=ramp)
    height, width = depth.shape
    intrinsics = resolve_intrinsics(width, height, hfov=60)
    cloud = build_cloud(depth, photo(height, width), intrinsics, CloudOptions(mesh=True, stride=stride))
    z = cloud.points_n3[:, 2][cloud.faces_m3]
    assert len(z) > 0
    assert ((z == z[:, :1]).all(axis=1)).all()  # each face lies wholly on one surface
    assert {2.0, 6.0} == set(np.unique(np.round(z, 4)))


def test_invalid_and_saturated_depths_are_dropped():
    depth = np.full((4, 5), 3.0, dtype=np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3], depth[0, 4] = np.nan, np.inf, 0.0, -1.0, 20.0
    depth[1, 0] = 19.99  # within 0.1% of max_depth: the metric model's sigmoid is saturated
    intrinsics = resolve_intrinsics(5, 4, hfov=60)
    cloud = build_cloud(depth, photo(4, 5), intrinsics, CloudOptions(edge_threshold=0), max_depth=20.0)
    assert len(cloud.points_n3) == 20 - 6
    assert np.isfinite(cloud.points_n3).all() and (cloud.points_n3[:, 2] == 3.0).all()


def test_stride_and_max_points():
    height, width = 50, 70
    intrinsics = resolve_intrinsics(width, height, hfov=60)
    depth = np.full((height, width), 2.0, dtype=np.float32)
    strided = build_cloud(depth, photo(height, width), intrinsics, CloudOptions(stride=4))
    assert strided.stride == 4 and len(strided.points_n3) == 13 * 18
    assert (strided.pixels_n2 % 4 == 0).all()
    for limit in (1, 100, 999, height * width):
        capped = build_cloud(depth, photo(height, width), intrinsics, CloudOptions(max_points=limit))
        assert len(capped.points_n3) <= limit
        coarser = point_cloud.choose_stride(height, width, 1, None) if capped.stride == 1 else capped.stride - 1
        assert capped.stride == 1 or -(-height // coarser) * -(-width // coarser) > limit  # the smallest that fits
