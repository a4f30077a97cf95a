"""`dav2 folder --ray` and DepthPredictor on a local Ray: the same bytes as a local run, resume, bad files, a
user-written pipeline, and the missing extra as a usage error."""

import os
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import dav2_cli
from dav2_cli.ray import DepthPredictor
from dav2_cli.cli import main
from tests.folder_trees import SIZE, dav2, files, make_tree

PHOTOS = {"a.png": (40, 64, 1), "b.jpg": (64, 48, 2), "sub/c.png": (50, 50, 3), "sub/d.png": (40, 64, 4)}


@pytest.fixture
def tree(tmp_path, make_photo):
    return make_tree(tmp_path / "DIR", PHOTOS, make_photo)


@pytest.mark.parametrize("fmt", ["npy", "gray16"])
def test_folder_on_ray_writes_the_bytes_and_sidecars_of_a_local_run(local_ray, tree, tmp_path, vits_checkpoint, fmt,
                                                                    one_thread):
    local = dav2("folder", tree, "-o", tmp_path / "local", "-m", vits_checkpoint, "--format", fmt)
    on_ray = dav2("folder", tree, "-o", tmp_path / "ray", "-m", vits_checkpoint, "--format", fmt, "--ray")
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    expected = files(tmp_path / "local")
    assert len(expected) >= len(PHOTOS)
    assert files(tmp_path / "ray") == expected  # sidecars hold no timestamps, so they are equal byte for byte
    assert on_ray.stderr.strip().splitlines()[-1] == f"dav2: done {len(PHOTOS)}, skipped 0, failed 0"


def test_a_killed_ray_run_resumes_with_skip_existing_and_rewrites_nothing(local_ray, tree, tmp_path,
                                                                          vits_checkpoint):
    out = tmp_path / "OUT"
    first = dav2("folder", tree, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--ray")
    assert first.exit_code == 0, first.output
    complete = files(out)
    for lost in [*out.glob("b.*"), *out.glob("sub/c.*")]:  # what a killed run had not written yet, sidecars too
        lost.unlink()
    kept = {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    again = dav2("folder", tree, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--ray", "--skip-existing")
    assert again.exit_code == 0, again.output
    assert again.stderr.strip().splitlines()[-1] == "dav2: done 2, skipped 2, failed 0"
    assert files(out) == complete
    assert {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in kept} == kept


def test_a_bad_file_is_one_line_and_a_failed_count_while_the_others_finish(local_ray, tree, tmp_path,
                                                                          vits_checkpoint):
    (tree / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "OUT"
    result = dav2("folder", tree, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--ray")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("dav2: error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"dav2: done {len(PHOTOS)}, skipped 0, failed 1"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy")) == ["a.npy", "b.npy", "sub/c.npy",
                                                                                   "sub/d.npy"]


def test_depth_predictor_in_a_users_read_images_pipeline_gives_dav2_images_depth(local_ray, tree, vits_checkpoint,
                                                                                 one_thread):
    pngs = [str(tree / name) for name in PHOTOS if name.endswith(".png")]  # lossless: PIL and OpenCV decode alike
    rows = (local_ray.data.read_images(pngs, include_paths=True)
            .map_batches(DepthPredictor, fn_constructor_kwargs={"model": str(vits_checkpoint), "device": "cpu",
                                                                "dtype": "float32", "input_size": int(SIZE)},
                         compute=local_ray.data.ActorPoolStrategy(size=1), batch_size=2, batch_format="numpy")
            .take_all())
    assert len(rows) == len(pngs)
    model = dav2_cli.load_model(str(vits_checkpoint), "cpu", "float32")
    for row in rows:
        path = next(p for p in pngs if p.endswith(row["path"]))  # Ray drops a path's scheme; the tail is kept
        expected = dav2_cli.predict(model, cv2.imread(path), int(SIZE))
        assert row["depth"].dtype == np.float32 and row["depth"].shape == expected.shape
        np.testing.assert_array_equal(row["depth"], expected)


def test_ray_without_the_extra_is_a_usage_error_naming_it(tree, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = dav2("folder", tree, "-o", tmp_path / "OUT", "--ray")
    assert result.exit_code == 2
    assert result.stderr.strip() == 'dav2: error: dav2 --ray needs Ray: pip install "dav2-cli[ray]"'
    assert not (tmp_path / "OUT").exists()


def test_actors_with_no_backend_flag_run_the_default_backend_of_a_local_run(local_ray, tree, tmp_path,
                                                                           vits_checkpoint, one_thread):
    """No --backend, --dtype or --device, as users run it: the actors choose as runtime/auto_backend.py chooses
    here (the same timing, read from the same tuning cache), so their depth is the local default's exactly."""
    pngs = [str(tree / name) for name in PHOTOS if name.endswith(".png")]
    rows = (local_ray.data.read_images(pngs, include_paths=True)
            .map_batches(DepthPredictor, fn_constructor_kwargs={"model": str(vits_checkpoint),
                                                                "input_size": int(SIZE)},
                         compute=local_ray.data.ActorPoolStrategy(size=1), batch_size=2, batch_format="numpy")
            .take_all())
    model = dav2_cli.load_model(str(vits_checkpoint))
    for row in rows:
        path = next(p for p in pngs if p.endswith(row["path"]))
        np.testing.assert_array_equal(row["depth"], dav2_cli.predict(model, cv2.imread(path), int(SIZE)))

    args = ["folder", tree, "-m", vits_checkpoint, "--format", "npy", "--input-size", SIZE]
    local = CliRunner().invoke(main, [*map(str, args), "-o", str(tmp_path / "local")], catch_exceptions=False)
    on_ray = CliRunner().invoke(main, [*map(str, args), "-o", str(tmp_path / "ray"), "--ray"],
                                catch_exceptions=False)
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    assert files(tmp_path / "ray") == files(tmp_path / "local")
