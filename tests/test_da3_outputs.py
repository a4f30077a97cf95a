"""Depth Anything 3 end to end: its depth (larger = farther) gives pictures with near bright, point clouds whose
Z is that depth, stereo that shifts the near side, metric metres by the focal rule, and every file says its family
and output kind; `-m da3-mono-l` runs from cached weights without a network."""

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import synthetic_photo
from plyfile import PlyData

import dav2_cli
from dav2_cli.cli import main
from dav2_cli.depth.sizing import model_size
from dav2_cli.weights.catalog import DA3_FAMILY, METRIC_DEPTH, RELATIVE_DEPTH
from tests.da3_reference import da3_network, write_da3_folder

HEIGHT, WIDTH = 60, 84
SMALL = ["--input-size", "56", "--device", "cpu", "--dtype", "float32"]


def dav2(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("da3-models")
    return {metric: write_da3_folder(da3_network(metric, seed=21 + metric), root / ("metric" if metric else "mono"),
                                     metric)
            for metric in (False, True)}


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in.png"
    cv2.imwrite(str(path), synthetic_photo(HEIGHT, WIDTH, seed=4))
    return path


def network_output(folder, photo):
    model = dav2_cli.load_model(folder, device="cpu", dtype="float32", backend="torch")
    return dav2_cli.predict(model, cv2.imread(str(photo)), 56)


def test_metric_metres_follow_the_focal_rule_for_two_focals(folders, photo, tmp_path):
    output = network_output(folders[True], photo)
    net_h, net_w = model_size((HEIGHT, WIDTH), 56)
    metres = {}
    for fx in (120.0, 240.0):
        target = tmp_path / f"fx{fx:g}.npy"
        code, log = dav2("image", photo, "-m", folders[True], "-o", target, "--fx", fx, *SMALL)
        assert code == 0, log
        metres[fx] = np.load(target)
        focal_net = fx * (net_w / WIDTH + net_h / HEIGHT) / 2  # fx = fy, each scaled to the network's input
        np.testing.assert_allclose(metres[fx], focal_net * output / 300, rtol=1e-5)
        described = json.loads(target.with_name(target.name + ".json").read_text())
        assert described["family"] == DA3_FAMILY and described["output"] == METRIC_DEPTH
        assert described["unit"] == "meters" and described["larger"] == "farther"
        assert described["metric_focal"]["focal_px"] == pytest.approx(focal_net)
        assert described["metric_focal"]["source"] == "given"
    np.testing.assert_allclose(metres[240.0], 2 * metres[120.0], rtol=1e-6)
    code, log = dav2("image", photo, "-m", folders[True], "-o", tmp_path / "assumed.npy", *SMALL)
    assert code == 0 and log.count("assuming a 60 degree horizontal field of view") == 1


def test_metric_point_cloud_z_is_the_metres(folders, photo, tmp_path):
    code, log = dav2("image", photo, "-m", folders[True], "-o", tmp_path / "m.npy", "--fx", 90, *SMALL)
    assert code == 0, log
    metres = np.load(tmp_path / "m.npy")
    code, log = dav2("image", photo, "-m", folders[True], "--format", "ply", "-o", tmp_path / "m.ply", "--fx", 90,
                     "--edge-threshold", 0, *SMALL)
    assert code == 0, log
    vertex = PlyData.read(str(tmp_path / "m.ply"))["vertex"]
    x, y, z = (np.asarray(vertex[axis], dtype=np.float64) for axis in "xyz")
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    u, v = np.rint(x * 90 / z + cx).astype(int), np.rint(y * 90 / z + cy).astype(int)
    assert len(z) == HEIGHT * WIDTH
    np.testing.assert_allclose(z, metres[v, u], rtol=1e-5)  # Z is the depth itself, not its inverse


def test_relative_depth_pictures_are_bright_near_and_invert_flips_them(folders, photo, tmp_path):
    code, log = dav2("image", photo, "-m", folders[False], "-o", tmp_path / "d.npy", *SMALL)
    assert code == 0, log
    depth = np.load(tmp_path / "d.npy")
    described = json.loads((tmp_path / "d.npy.json").read_text())
    assert (described["family"], described["output"], described["larger"]) == (DA3_FAMILY, RELATIVE_DEPTH,
                                                                                "farther")
    assert described["unit"] == "none (relative depth)"
    assert depth.max() - depth.min() > 1e-3
    for flag, sign in (([], -1), (["--invert"], 1)):
        code, log = dav2("image", photo, "-m", folders[False], "--format", "gray", "-o", tmp_path / "g.png", *flag,
                         *SMALL)
        assert code == 0, log
        gray = cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_GRAYSCALE).astype(np.float64)
        assert sign * np.corrcoef(gray.ravel(), depth.ravel())[0, 1] > 0.9


def test_relative_depth_clouds_need_a_scale_and_then_grow_with_the_depth(folders, photo, tmp_path):
    code, log = dav2("image", photo, "-m", folders[False], "--format", "ply", "-o", tmp_path / "r.ply", *SMALL)
    assert code == 2 and "relative depth" in log
    code, log = dav2("image", photo, "-m", folders[False], "-o", tmp_path / "d.npy", *SMALL)
    depth = np.load(tmp_path / "d.npy")
    code, log = dav2("image", photo, "-m", folders[False], "-o", tmp_path / "z.npy", "--near", 1, "--far", 10, *SMALL)
    assert code == 0, log
    z = np.load(tmp_path / "z.npy")
    assert z.min() == pytest.approx(1, rel=1e-4) and z.max() == pytest.approx(10, rel=1e-4)
    order = np.argsort(depth.ravel())
    assert np.all(np.diff(z.ravel()[order]) >= -1e-5)  # farther in the model's depth is farther in metres
    assert z.ravel()[order[0]] == pytest.approx(1, rel=1e-4)  # the smallest depth is the nearest point


def test_stereo_shifts_the_near_side_of_a_depth_map(tmp_path):
    """A DA3 depth map read back: small values are near, so the square of small depth moves as the near one."""
    height, width = 90, 160
    cols = np.broadcast_to(np.arange(width), (height, width))
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 0], image[:, :, 1] = cols % 256, cols // 256
    square = (slice(30, 60), slice(60, 100))
    image[square + (2,)] = 255
    cv2.imwrite(str(tmp_path / "scene.png"), image)
    depth = np.full((height, width), 5.0, dtype=np.float32)
    depth[square] = 1.0
    np.save(tmp_path / "d.npy", depth)
    (tmp_path / "d.npy.json").write_text(json.dumps({"model": "da3-mono-l", "family": DA3_FAMILY, "kind": "relative",
                                                     "output": RELATIVE_DEPTH, "unit": "none (relative depth)",
                                                     "larger": "farther"}))
    code, log = dav2("image", tmp_path / "scene.png", "--depth", tmp_path / "d.npy", "--stereo", "sbs", "-o",
                     tmp_path / "s.png")
    assert code == 0, log
    picture = cv2.imread(str(tmp_path / "s.png"))
    left = picture[:, :width]
    shift = np.arange(width) - (left[:, :, 0].astype(np.int64) + 256 * left[:, :, 1].astype(np.int64))
    in_square = left[:, :, 2] == 255
    assert shift[in_square].mean() > np.median(shift[~in_square]) + 1  # the near square moves right in the left eye


def test_da3_mono_by_name_from_cached_weights(folders, photo, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(folders[False], home / "DA3MONO-LARGE")  # where a hand-placed copy goes (dav2 models says)
    monkeypatch.setenv("DAV2_HOME", str(home))
    monkeypatch.setenv("DAV2_OFFLINE", "1")
    code, log = dav2("image", photo, "-m", "da3-mono-l", "-o", tmp_path / "named.npy", *SMALL)
    assert code == 0, log
    code, log = dav2("image", photo, "-m", folders[False], "-o", tmp_path / "path.npy", *SMALL)
    assert code == 0, log
    np.testing.assert_array_equal(np.load(tmp_path / "named.npy"), np.load(tmp_path / "path.npy"))
    described = json.loads((tmp_path / "named.npy.json").read_text())
    assert (described["model"], described["family"], described["output"]) == ("da3-mono-l", DA3_FAMILY,
                                                                              RELATIVE_DEPTH)
    code, log = dav2("models")
    assert code == 0 and "da3-mono-l" in log and str(home / "DA3MONO-LARGE") in log
