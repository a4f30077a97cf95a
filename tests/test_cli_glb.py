"""`--format glb` end to end: the same surface as `--format ply --mesh`, read back by pygltflib and plyfile."""

import cv2
import numpy as np
import pygltflib
import pytest
from click.testing import CliRunner
from plyfile import PlyData

from dav2_cli.cli import main
from dav2_cli.outputs.glb import glb_description


def dav2(*args):
    return CliRunner().invoke(main, ["image", *map(str, args), "--device", "cpu", "--dtype", "float32"],
                              catch_exceptions=False)


def test_glb_holds_the_ply_mesh_in_gltf_axes(tmp_path, vits_metric_checkpoint, make_photo):
    photo = tmp_path / "room.png"
    cv2.imwrite(str(photo), make_photo(56, 84))
    common = ["-m", vits_metric_checkpoint, "--input-size", 112, "--hfov", 70]
    assert dav2(photo, "-o", tmp_path / "room.ply", "--mesh", *common).exit_code == 0
    result = dav2(photo, "-o", tmp_path / "room.glb", *common)
    assert result.exit_code == 0, result.output

    ply = PlyData.read(str(tmp_path / "room.ply"))
    ply_points = np.stack([ply["vertex"][axis] for axis in "xyz"], axis=1)
    ply_faces = np.stack(ply["face"]["vertex_indices"])
    gltf = pygltflib.GLTF2().load(str(tmp_path / "room.glb"))
    blob = gltf.binary_blob()
    primitive = gltf.meshes[0].primitives[0]

    def array(index, dtype, width):
        accessor = gltf.accessors[index]
        view = gltf.bufferViews[accessor.bufferView]
        return np.frombuffer(blob[view.byteOffset:view.byteOffset + view.byteLength], dtype).reshape(-1, width)

    positions = array(primitive.attributes.POSITION, "<f4", 3)
    assert len(positions) == len(ply_points) > 0
    assert np.allclose(positions, ply_points * [1, -1, -1], atol=1e-6)  # OpenCV's axes turned to glTF's
    assert np.array_equal(array(primitive.indices, "<u4", 3), ply_faces)
    description = glb_description((tmp_path / "room.glb").read_bytes())
    assert description["kind"] == "metric" and description["intrinsics"]["source"] == "hfov"
    info = CliRunner().invoke(main, ["info", str(tmp_path / "room.glb")])
    assert info.exit_code == 0 and "kind: metric" in info.output, info.output


def test_glb_from_a_relative_model_needs_distances(tmp_path, vits_checkpoint, make_photo):
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), make_photo(56, 84))
    result = CliRunner().invoke(main, ["image", str(photo), "-o", str(tmp_path / "p.glb"), "-m", str(vits_checkpoint)])
    assert result.exit_code == 2 and "--near" in result.output
    assert not (tmp_path / "p.glb").exists()
