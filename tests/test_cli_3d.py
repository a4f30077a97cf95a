"""Point clouds, camera flags, near/far and --align-to through `dav2 image`, `folder` and `video`, end to end,
with seeded weights at a tiny input size; PLY files are read back with `plyfile`."""

import json
import math

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import synthetic_photo
from plyfile import PlyData

from dav2_cli.cli import main
from dav2_cli.media.video_write import VideoWriter

HEIGHT, WIDTH = 60, 84
SMALL = ["--input-size", "56", "--device", "cpu", "--dtype", "float32"]


def dav2(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in.png"
    cv2.imwrite(str(path), synthetic_photo(HEIGHT, WIDTH, seed=4))
    return path


def raw_depth(photo, checkpoint, tmp_path):
    target = tmp_path / "raw.npy"
    code, output = dav2("image", photo, "-m", checkpoint, "-o", target, *SMALL)
    assert code == 0, output
    return np.load(target)


def read_ply(path):
    ply = PlyData.read(str(path))
    vertex = ply["vertex"]
    return ply, np.stack([vertex[a] for a in "xyz"], axis=1), np.stack([vertex[c] for c in ("red", "green", "blue")],
                                                                        axis=1)


def check_unprojection(points, depth, fx, fy, cx, cy):
    """Each vertex is X = (u - cx) Z / fx, Y = (v - cy) Z / fy of the pixel whose depth it carries."""
    u = np.rint(points[:, 0] * fx / points[:, 2] + cx).astype(int)
    v = np.rint(points[:, 1] * fy / points[:, 2] + cy).astype(int)
    np.testing.assert_allclose(points[:, 2], depth[v, u], rtol=1e-5)
    np.testing.assert_allclose(points[:, 0], (u - cx) * depth[v, u] / fx, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(points[:, 1], (v - cy) * depth[v, u] / fy, rtol=1e-4, atol=1e-6)
    return u, v


def test_metric_ply_with_explicit_intrinsics(photo, vits_metric_checkpoint, tmp_path):
    depth = raw_depth(photo, vits_metric_checkpoint, tmp_path)
    out = tmp_path / "OUT.ply"
    code, output = dav2("image", photo, "-m", vits_metric_checkpoint, "--format", "ply", "-o", out,
                        "--fx", 90, "--fy", 95, "--cx", 40, "--cy", 31, "--edge-threshold", 0, *SMALL)
    assert code == 0, output
    ply, points, colors = read_ply(out)
    assert len(points) == HEIGHT * WIDTH  # a threshold of 0 keeps every point
    u, v = check_unprojection(points, depth, 90, 95, 40, 31)
    image = cv2.imread(str(photo))
    np.testing.assert_array_equal(colors, image[v, u][:, ::-1])
    assert any("x right, y down, z forward" in comment for comment in ply.comments)


def test_hfov_sets_the_focal_from_the_width(photo, vits_metric_checkpoint, tmp_path):
    depth = raw_depth(photo, vits_metric_checkpoint, tmp_path)
    out = tmp_path / "OUT.ply"
    code, output = dav2("image", photo, "-m", vits_metric_checkpoint, "--format", "ply", "-o", out, "--hfov", 75,
                        *SMALL)
    assert code == 0, output
    focal = WIDTH / (2 * math.tan(math.radians(75) / 2))
    _, points, _ = read_ply(out)
    assert 0 < len(points) <= HEIGHT * WIDTH
    check_unprojection(points, depth, focal, focal, (WIDTH - 1) / 2, (HEIGHT - 1) / 2)


def test_no_focal_anywhere_is_assumed_and_said(photo, vits_metric_checkpoint, tmp_path):
    code, output = dav2("image", photo, "-m", vits_metric_checkpoint, "-o", tmp_path / "o.ply", *SMALL)
    assert code == 0
    assert output.count("assuming a 60 degree horizontal field of view") == 1


def test_a_relative_model_without_scale_is_a_usage_error_that_writes_nothing(photo, vits_checkpoint, tmp_path):
    for args in (["image", photo, "-o", tmp_path / "OUT.ply"], ["folder", tmp_path, "-o", tmp_path / "out"]):
        code, output = dav2(*args, "-m", vits_checkpoint, "--format", "ply", *SMALL)
        assert code == 2
        assert "--near N --far F" in output and "--align-to" in output
        assert output.count("\n") == 1 and "model vits" not in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


@pytest.mark.parametrize("args, message", [
    (["--hfov", "60", "--fx", "100"], "give one of them"),
    (["--near", "1"], "go together"),
    (["--near", "5", "--far", "1"], "near must be less than far"),
    (["--near", "1", "--far", "5", "--align-to", "p.csv"], "give one of them"),
])
def test_contradicting_flags_are_usage_errors(photo, vits_checkpoint, tmp_path, args, message):
    code, output = dav2("image", photo, "-m", vits_checkpoint, "-o", tmp_path / "o.ply", *args, *SMALL)
    assert code == 2 and message in output


def test_cloud_flags_need_a_cloud_and_near_far_needs_a_relative_model(photo, vits_checkpoint, vits_metric_checkpoint,
                                                                      tmp_path):
    code, output = dav2("image", photo, "-m", vits_checkpoint, "-o", tmp_path / "o.png", "--mesh", *SMALL)
    assert code == 2 and "--format ply" in output
    code, output = dav2("image", photo, "-m", vits_metric_checkpoint, "-o", tmp_path / "o.ply", "--near", 1,
                        "--far", 5, *SMALL)
    assert code == 2 and "already gives meters" in output


def test_near_far_spreads_a_relative_map_into_meters(photo, vits_checkpoint, tmp_path):
    disparity = raw_depth(photo, vits_checkpoint, tmp_path)
    out = tmp_path / "near_far.npy"
    code, output = dav2("image", photo, "-m", vits_checkpoint, "-o", out, "--near", 0.5, "--far", 8, *SMALL)
    assert code == 0, output
    depth = np.load(out)
    assert depth[np.unravel_index(disparity.argmax(), disparity.shape)] == pytest.approx(0.5, rel=1e-5)
    assert depth[np.unravel_index(disparity.argmin(), disparity.shape)] == pytest.approx(8.0, rel=1e-5)
    sidecar = json.loads((tmp_path / "near_far.npy.json").read_text())
    assert sidecar["unit"] == "meters" and sidecar["larger"] == "farther" and sidecar["kind"] == "relative"
    assert sidecar["alignment"]["method"] == "near-far"


def test_align_to_recovers_known_distances(photo, vits_checkpoint, tmp_path):
    disparity = raw_depth(photo, vits_checkpoint, tmp_path).astype(np.float64)
    scale = 1.0 / (disparity.max() - disparity.min())  # 1/Z between 0.2 and 1.2: 0.83 m .. 5 m
    shift = 0.2 - scale * disparity.min()
    truth = 1.0 / (scale * disparity + shift)
    pixels = [(3, 4), (80, 10), (40, 30), (10, 55), (70, 50)]
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,depth_m\n" + "".join(f"{x},{y},{truth[y, x]}\n" for x, y in pixels))
    out = tmp_path / "aligned.ply"
    code, output = dav2("image", photo, "-m", vits_checkpoint, "-o", out, "--align-to", csv, "--hfov", 60,
                        "--edge-threshold", 0, "-v", *SMALL)
    assert code == 0, output
    assert "aligned to 5 points" in output and "RMS relative error" in output
    _, points, _ = read_ply(out)
    np.testing.assert_allclose(np.sort(points[:, 2]), np.sort(truth.ravel()), rtol=1e-3)
    code, output = dav2("info", out)
    assert "alignment.method: points" in output and "alignment.points: 5" in output


def test_align_to_on_a_metric_model_says_it_fitted_the_inverse_of_its_metres(photo, vits_metric_checkpoint,
                                                                            tmp_path):
    metres = raw_depth(photo, vits_metric_checkpoint, tmp_path).astype(np.float64)
    truth = 2 * metres  # a model that sees everything at half its distance
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,depth_m\n" + "".join(f"{x},{y},{truth[y, x]}\n" for x, y in [(3, 4), (80, 10), (40, 30)]))
    out = tmp_path / "aligned.npy"
    code, output = dav2("image", photo, "-m", vits_metric_checkpoint, "-o", out, "--align-to", csv, "-v", *SMALL)
    assert code == 0, output
    np.testing.assert_allclose(np.load(out), truth, rtol=1e-4)
    alignment = json.loads((tmp_path / "aligned.npy.json").read_text())["alignment"]
    assert alignment["inverse_depth"] == "1/depth = scale * 1/value + shift"  # value: the model's metres
    assert alignment["scale"] == pytest.approx(0.5, rel=1e-4) and alignment["shift"] == pytest.approx(0, abs=1e-6)
    assert "1/depth = 0.5 * 1/value + " in output


@pytest.mark.parametrize("flag", ["--fx", "--fy", "--cx", "--cy", "--hfov", "--max-depth", "--edge-threshold"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_camera_or_depth_number_that_is_not_finite_is_a_usage_error(photo, vits_metric_checkpoint, tmp_path, flag,
                                                                      value):
    out = tmp_path / "o.ply"
    code, output = dav2("image", photo, "-m", vits_metric_checkpoint, "-o", out, flag, value, *SMALL)
    assert code == 2 and f"'{value}' is not a finite number" in output and not out.exists()


def test_align_to_with_one_point_is_refused(photo, vits_checkpoint, tmp_path):
    csv = tmp_path / "one.csv"
    csv.write_text("3,4,2.0\n")
    code, output = dav2("image", photo, "-m", vits_checkpoint, "-o", tmp_path / "o.npy", "--align-to", csv, *SMALL)
    assert code == 1 and "1 usable point" in output and "at least 2" in output
    assert not (tmp_path / "o.npy").exists()


def test_mesh_stride_and_y_up(photo, vits_metric_checkpoint, tmp_path):
    out = tmp_path / "mesh.ply"
    code, output = dav2("image", photo, "-m", vits_metric_checkpoint, "-o", out, "--mesh", "--stride", 2,
                        "--y-up", "--hfov", 60, *SMALL)
    assert code == 0, output
    ply, points, _ = read_ply(out)
    faces = np.stack(ply["face"]["vertex_indices"])
    assert len(points) <= 30 * 42 and len(faces) > 0 and faces.max() < len(points)
    assert (points[:, 2] < 0).all()  # y up, z backward: the scene lies along -z
    assert any("y up, z backward" in comment for comment in ply.comments)
    out = tmp_path / "capped.ply"
    assert dav2("image", photo, "-m", vits_metric_checkpoint, "-o", out, "--max-points", 500, *SMALL)[0] == 0
    assert len(read_ply(out)[1]) <= 500


def test_exif_focal_is_used(tmp_path, vits_metric_checkpoint):
    from test_exif import exif_tiff, jpeg_with_exif

    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_with_exif(synthetic_photo(HEIGHT, WIDTH, seed=4), exif_tiff(26)))
    code, output = dav2("image", path, "-m", vits_metric_checkpoint, "-o", tmp_path / "o.ply", *SMALL)
    assert code == 0 and "assuming" not in output
    code, output = dav2("info", tmp_path / "o.ply")
    focal = 26 * math.hypot(WIDTH, HEIGHT) / math.hypot(36, 24)
    assert f"intrinsics.fx: {focal}" in output and "intrinsics.source: exif" in output


def test_gray16_png_carries_lo_hi(photo, vits_checkpoint, tmp_path):
    out = tmp_path / "OUT.png"
    code, output = dav2("image", photo, "-m", vits_checkpoint, "--format", "gray16", "-o", out, *SMALL)
    assert code == 0, output
    sidecar = json.loads((tmp_path / "OUT.png.json").read_text())
    depth = raw_depth(photo, vits_checkpoint, tmp_path)
    assert sidecar["lo"] == pytest.approx(float(depth.min())) and sidecar["hi"] == pytest.approx(float(depth.max()))
    levels = cv2.imread(str(out), cv2.IMREAD_UNCHANGED).astype(np.float64)
    decoded = sidecar["lo"] + levels / 65535 * (sidecar["hi"] - sidecar["lo"])  # relative: not flipped
    np.testing.assert_allclose(decoded, depth, atol=(sidecar["hi"] - sidecar["lo"]) / 65535 + 1e-6)


def test_folder_of_point_clouds(tmp_path, vits_metric_checkpoint):
    source = tmp_path / "photos"
    source.mkdir()
    for index in range(2):
        cv2.imwrite(str(source / f"p{index}.png"), synthetic_photo(HEIGHT, WIDTH, seed=index))
    code, output = dav2("folder", source, "-o", tmp_path / "clouds", "-m", vits_metric_checkpoint, "--format", "ply",
                        "--hfov", 60, *SMALL)
    assert code == 0, output
    assert sorted(p.name for p in (tmp_path / "clouds").iterdir()) == ["p0.ply", "p1.ply"]


def test_video_writes_one_ply_per_frame_scaled_once(tmp_path, vits_checkpoint):
    clip = tmp_path / "clip.mkv"
    photo = synthetic_photo(HEIGHT + 4, WIDTH + 8, seed=7)
    with VideoWriter(clip, width=WIDTH, height=HEIGHT, fps=25) as writer:
        for i in range(3):
            writer.write(np.ascontiguousarray(photo[i:i + HEIGHT, 2 * i:2 * i + WIDTH]))
    assert dav2("video", clip, "-o", tmp_path / "raw", "-m", vits_checkpoint, "--format", "npy", "-q", *SMALL)[0] == 0
    disparity = np.load(tmp_path / "raw" / "frame_000001.npy")
    nearer, farther = sorted([(5, 5), (70, 40)], key=lambda xy: -disparity[xy[1], xy[0]])  # as the model sees them
    csv = tmp_path / "points.csv"
    csv.write_text(f"x,y,depth_m,frame\n{nearer[0]},{nearer[1]},2.0,1\n{farther[0]},{farther[1]},4.0,1\n")
    code, output = dav2("video", clip, "-o", tmp_path / "frames", "-m", vits_checkpoint, "--format", "ply",
                        "--align-to", csv, "--hfov", 60, "--edge-threshold", 0, "-v", "-q", *SMALL)
    assert code == 0, output
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_00000{i}.ply" for i in range(3)]
    assert output.count("aligned to 2 points") == 1  # one fit, on frame 1, for the whole video
    scales = {json.loads(line.split("=", 1)[1])["scale"] for i in range(3)
              for line in PlyData.read(str(tmp_path / "frames" / f"frame_00000{i}.ply")).comments
              if line.startswith("dav2 alignment=")}
    assert len(scales) == 1
