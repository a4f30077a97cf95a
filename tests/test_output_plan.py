"""Where outputs go and what is refused before any work: no silent overwrites, no run mixed with another, every
mistake the command line shows is exit 2 before a model loads, and a written file is named."""

import json
import os
import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import synthetic_photo

import dav2_cli
from dav2_cli.cli import main
from dav2_cli.outputs import atomic
from dav2_cli.media.video_probe import find_ffmpeg
from dav2_cli.media.video_write import VideoWriter
from dav2_cli.weights.lookup import looks_like_path, resolve


def depth_files(folder):
    """The depth maps in `folder`, without the .json sidecars that describe npy files."""
    return [path for path in folder.iterdir() if path.suffix != ".json"]


def dav2(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def write_clip(path, count, height=48, width=64):
    with VideoWriter(path, width=width, height=height, fps=Fraction(25)) as writer:
        for index in range(count):
            writer.write(synthetic_photo(height, width, seed=index))
    return path


def test_same_stem_inputs_beside_themselves_keep_both_outputs(tmp_path, vits_checkpoint):
    cv2.imwrite(str(tmp_path / "x.jpg"), synthetic_photo(60, 80, seed=1))
    cv2.imwrite(str(tmp_path / "x.png"), synthetic_photo(60, 80, seed=2))
    cv2.imwrite(str(tmp_path / "y.png"), synthetic_photo(60, 80, seed=3))
    result = dav2("image", tmp_path / "x.jpg", tmp_path / "x.png", tmp_path / "y.png", "-m", vits_checkpoint,
                  "--input-size", 56, "--dtype", "float32", "--format", "npy")
    assert result.exit_code == 0, result.output
    outputs = sorted(p.name for p in tmp_path.glob("*.npy"))
    assert outputs == ["x.jpg_depth.npy", "x.png_depth.npy", "y_depth.npy"]  # y has no rival: the usual name
    assert not np.array_equal(np.load(tmp_path / "x.jpg_depth.npy"), np.load(tmp_path / "x.png_depth.npy"))


def test_gray16_into_a_png_file_is_a_16_bit_png(tmp_path, vits_checkpoint):
    cv2.imwrite(str(tmp_path / "x.jpg"), synthetic_photo(60, 80))
    result = dav2("image", tmp_path / "x.jpg", "--format", "gray16", "-o", tmp_path / "d.png", "-m",
                  vits_checkpoint, "--input-size", 56)
    assert result.exit_code == 0, result.output
    picture = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_UNCHANGED)
    assert picture.dtype == np.uint16 and picture.shape == (60, 80) and picture.max() == 65535


@pytest.mark.parametrize("fmt,name", [("gray16", "d.jpg"), ("npy", "d.png"), ("color", "d.npy"),
                                      ("exr", "d.tiff")])
def test_a_format_and_extension_that_clash_are_refused_before_work(tmp_path, fmt, name):
    cv2.imwrite(str(tmp_path / "x.jpg"), synthetic_photo(60, 80))
    # a checkpoint that could not load shows that nothing got as far as the model
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a checkpoint")
    result = dav2("image", tmp_path / "x.jpg", "--format", fmt, "-o", tmp_path / name, "-m", bogus)
    assert result.exit_code == 2 and "does not fit --format" in result.output
    assert not (tmp_path / name).exists()


def test_an_output_folder_may_have_a_dot_in_its_name(tmp_path, vits_checkpoint):
    cv2.imwrite(str(tmp_path / "x.jpg"), synthetic_photo(60, 80))
    result = dav2("image", tmp_path / "x.jpg", "-o", f"{tmp_path / 'results.v2'}/", "-m", vits_checkpoint,
                  "--input-size", 56)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results.v2" / "x.png").is_file()


def test_a_frame_folder_of_an_earlier_run_is_refused_then_replaced_with_overwrite(tmp_path, vits_checkpoint):
    clip = write_clip(tmp_path / "in.mkv", 6)
    frames = tmp_path / "frames"
    common = ["--format", "npy", "-o", frames, "-m", vits_checkpoint, "--input-size", 28, "--dtype", "float32"]
    assert dav2("video", clip, *common).exit_code == 0
    assert len(list(depth_files(frames))) == 6
    refused = dav2("video", clip, *common, "--max-frames", 3)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert len(list(depth_files(frames))) == 6  # untouched
    replaced = dav2("video", clip, *common, "--max-frames", 3, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in depth_files(frames)) == [f"frame_{i:06d}.npy" for i in range(3)]


def test_a_gray16_video_is_never_published_without_its_sidecar(tmp_path, vits_checkpoint, monkeypatch):
    tmp_path = tmp_path / "job"
    tmp_path.mkdir()
    clip = write_clip(tmp_path / "in.mkv", 3)
    out = tmp_path / "depth.mkv"

    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(atomic, "write_atomic", full_disk)
    failed = dav2("video", clip, "-o", out, "--format", "gray16", "-m", vits_checkpoint, "--input-size", 28)
    assert failed.exit_code == 1 and failed.stderr.strip().endswith("depth.mkv.json: no space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]  # no video, no sidecar, no temporary
    monkeypatch.undo()
    result = dav2("video", clip, "-o", out, "--format", "gray16", "-m", vits_checkpoint, "--input-size", 28)
    assert result.exit_code == 0 and json.loads((tmp_path / "depth.mkv.json").read_text())["frames"] == 3


def test_a_video_that_cannot_be_published_leaves_the_earlier_video_its_own_sidecar(tmp_path, vits_checkpoint,
                                                                                    monkeypatch):
    tmp_path = tmp_path / "job"  # beside the cache folder the tests use
    tmp_path.mkdir()
    clip, out = write_clip(tmp_path / "in.mkv", 3), tmp_path / "depth.mkv"
    args = ["video", clip, "-o", out, "--format", "gray16", "-m", vits_checkpoint, "--input-size", 28]
    assert dav2(*args).exit_code == 0
    earlier_video, earlier_sidecar = out.read_bytes(), (tmp_path / "depth.mkv.json").read_bytes()
    replace = os.replace

    def refused_rename(source, destination):
        if str(destination).endswith(".mkv"):
            raise PermissionError(13, "Permission denied", str(destination))
        replace(source, destination)

    monkeypatch.setattr(os, "replace", refused_rename)  # the file system refuses to put the new video in place
    result = dav2(*args, "--max-frames", 2)
    assert result.exit_code == 1 and "depth.mkv: permission denied" in result.output
    assert "Traceback" not in result.output
    assert out.read_bytes() == earlier_video
    assert (tmp_path / "depth.mkv.json").read_bytes() == earlier_sidecar  # the first video's key, unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.mkv", "depth.mkv.json", "in.mkv"]


def test_an_image_that_cannot_be_written_leaves_the_earlier_image_its_own_sidecar(tmp_path, monkeypatch):
    out = tmp_path / "d.png"
    atomic.write_with_sidecars(out, [("", b"first picture"), (".json", b"first key")])
    write_atomic = atomic.write_atomic

    def full_disk_for_pictures(path, data):
        if str(path).endswith(".png"):
            raise atomic.OutputStopped(f"{path}: No space left on device")
        write_atomic(path, data)

    monkeypatch.setattr(atomic, "write_atomic", full_disk_for_pictures)
    with pytest.raises(atomic.OutputStopped):
        atomic.write_with_sidecars(out, [("", b"second picture"), (".json", b"second key")])
    assert out.read_bytes() == b"first picture" and (tmp_path / "d.png.json").read_bytes() == b"first key"
    with pytest.raises(atomic.OutputStopped):
        atomic.write_with_sidecars(tmp_path / "new.png", [("", b"picture"), (".json", b"key")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "d.png.json"]  # no orphan key, no temporary


@pytest.mark.parametrize("fmt", ["npy", "gray16"])  # the two that write a .json sidecar
def test_an_output_under_a_file_is_one_line_about_its_parent(tmp_path, make_photo, vits_checkpoint, fmt):
    photo = tmp_path / "in.png"
    cv2.imwrite(str(photo), make_photo(40, 56))
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / ("x.npy" if fmt == "npy" else "x.png")
    result = dav2("image", photo, "-m", vits_checkpoint, "--input-size", 28, "--format", fmt, "-o", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[0] == f"dav2: error: {out.parent}: exists and is not a folder"


def test_the_python_api_leaves_opencv_threads_alone(vits_checkpoint):
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(3)
        dav2_cli.load_model(vits_checkpoint, "cpu", "float32")
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_a_bare_word_is_a_model_name_even_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAV2_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("DAV2_OFFLINE", "1")
    (tmp_path / "vits").mkdir()
    (tmp_path / "cache").mkdir()
    placed = tmp_path / "cache" / "depth_anything_v2_vits.pth"
    placed.write_bytes(b"x")
    assert resolve("vits") == placed  # the name, not the folder in the working directory
    assert resolve("./vits").resolve() == tmp_path / "vits"  # written as a path, the folder
    assert looks_like_path("my.pth") and looks_like_path("~/m") and not looks_like_path("metric-indoor-vits")


@pytest.mark.parametrize("args,message", [
    (["image", "x.jpg", "--device", "gpu"], "--device"),
    (["image", "x.jpg", "-m", "vitz"], "not a model name"),
    (["video", "in.mkv", "-o", "d.mp4", "--format", "gray16"], ".mkv"),
    (["video", "in.mkv", "--fps", "abc"], "--fps"),
    (["image", "x.jpg", "-o", "d.npy", "--format", "color"], "does not fit"),
])
def test_mistakes_in_the_command_line_exit_2_before_any_work(tmp_path, monkeypatch, args, message):
    tmp_path = tmp_path / "job"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("x.jpg", synthetic_photo(60, 80))
    write_clip(tmp_path / "in.mkv", 2)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert sorted(os.listdir(tmp_path)) == ["in.mkv", "x.jpg"]


def test_a_missing_input_is_reported_before_the_model_loads(tmp_path):
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a checkpoint")
    result = subprocess.run([sys.executable, "-m", "dav2_cli", "image", str(tmp_path / "nope.jpg"), "-m",
                             str(bogus)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == f"dav2: error: {tmp_path / 'nope.jpg'}: no such file or folder"
    assert "torch" not in subprocess.run(
        [sys.executable, "-c", "import sys, dav2_cli.jobs.images, dav2_cli.jobs.video, dav2_cli.jobs.plan; "
                               "print(' '.join(sys.modules))"], capture_output=True, text=True).stdout.split()


def test_each_written_file_is_named_with_verbose(tmp_path, vits_checkpoint):
    cv2.imwrite(str(tmp_path / "a.jpg"), synthetic_photo(60, 80))
    result = dav2("image", tmp_path / "a.jpg", "-o", tmp_path / "out/", "-m", vits_checkpoint, "--input-size", 56,
                  "-v")
    assert f"dav2: wrote {tmp_path / 'out' / 'a.png'}" in result.stderr.splitlines()
    clip = write_clip(tmp_path / "in.mkv", 2)
    result = dav2("video", clip, "-o", tmp_path / "d.mkv", "-m", vits_checkpoint, "--input-size", 28, "-v")
    assert f"dav2: wrote {tmp_path / 'd.mkv'} (2 frames)" in result.stderr.splitlines()


def test_h264_is_tagged_bt709_in_primaries_and_transfer_too(tmp_path):
    out = write_clip(tmp_path / "d.mp4", 2)
    info = subprocess.run([find_ffmpeg(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    video_line = next(line for line in info.splitlines() if "Video:" in line)
    assert "bt709" in video_line and "unknown" not in video_line, video_line


def test_an_npy_of_the_models_values_says_what_they_are_beside_it(tmp_path, vits_checkpoint):
    cv2.imwrite(str(tmp_path / "x.jpg"), synthetic_photo(60, 80))
    result = dav2("image", tmp_path / "x.jpg", "-o", tmp_path / "x.npy", "-m", vits_checkpoint, "--input-size", 56)
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "x.npy").shape == (60, 80)  # np.load still gives the bare array
    described = json.loads((tmp_path / "x.npy.json").read_text())
    assert described["kind"] == "relative" and described["larger"] == "nearer" and described["input_size"] == 56
    assert described["model"] == str(vits_checkpoint) and (described["width"], described["height"]) == (80, 60)
    info = dav2("info", tmp_path / "x.npy", "--at", "3,4")
    assert info.exit_code == 0 and "relative" in info.output
