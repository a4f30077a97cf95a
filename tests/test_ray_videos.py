"""`dav2 video DIR --ray`: each video's output has the bytes of a local `dav2 video`, a bad video is one line
and a failed count, and --skip-existing finishes a killed run without rewriting what was done."""

import os

import cv2
import pytest
from click.testing import CliRunner
from conftest import synthetic_photo

from dav2_cli.cli import main

SIZE = "56"  # the smallest sensible model input: these tests are about files and bytes, not depth quality
VIDEOS = {"a.avi": 1, "sub/b.avi": 2}  # name: seed
FRAMES = 4


def dav2(*args):
    args = ["video", *map(str, args), "--input-size", SIZE, "--device", "cpu", "--dtype", "float32"]
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture
def videos(tmp_path):
    """Two tiny videos written by OpenCV, each of frames that move over one synthetic photo."""
    source = tmp_path / "DIR"
    for name, seed in VIDEOS.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        photo = synthetic_photo(40 + FRAMES, 64 + FRAMES, seed)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 40))
        for index in range(FRAMES):
            writer.write(photo[index:index + 40, index:index + 64].copy())
        writer.release()
    return source


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt, extension", [("color", ".mp4"), ("npy", "")])
def test_videos_on_ray_get_the_bytes_of_local_dav2_video(local_ray, videos, tmp_path, vits_checkpoint, one_thread,
                                                         fmt, extension):
    local = tmp_path / "local"
    for name in VIDEOS:
        target = local / (name.rsplit(".", 1)[0] + extension)
        target.parent.mkdir(parents=True, exist_ok=True)
        result = dav2(videos / name, "-o", target, "-m", vits_checkpoint, "--format", fmt)
        assert result.exit_code == 0, result.output
    on_ray = dav2(videos, "-o", tmp_path / "ray", "-m", vits_checkpoint, "--format", fmt, "--ray")
    assert on_ray.exit_code == 0, on_ray.output
    expected = files(local)
    assert len(expected) >= len(VIDEOS)
    assert files(tmp_path / "ray") == expected
    assert on_ray.stderr.strip().splitlines()[-1] == f"dav2: done {len(VIDEOS)}, skipped 0, failed 0"


def test_a_bad_video_fails_alone_and_skip_existing_finishes_a_killed_run(local_ray, videos, tmp_path,
                                                                         vits_checkpoint):
    (videos / "sub" / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "OUT"
    first = dav2(videos, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--ray")
    assert first.exit_code == 1
    errors = [line for line in first.stderr.splitlines() if line.startswith("dav2: error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0]
    assert "Traceback" not in first.stderr
    assert first.stderr.strip().splitlines()[-1] == "dav2: done 2, skipped 0, failed 1"
    complete = files(out)
    assert sorted(path for path in complete if path.endswith(".npy")) == [
        *(f"a/frame_{i:06d}.npy" for i in range(FRAMES)), *(f"sub/b/frame_{i:06d}.npy" for i in range(FRAMES))]

    for lost in sorted((out / "sub" / "b").glob("frame_000002.*")):  # b's run was killed after two frames
        lost.unlink()
    for lost in sorted((out / "sub" / "b").glob("frame_000003.*")):
        lost.unlink()
    kept = {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in (out / "a").iterdir()}
    again = dav2(videos, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--ray", "--skip-existing")
    assert again.exit_code == 1  # the broken video is still broken
    assert again.stderr.strip().splitlines()[-1] == "dav2: done 1, skipped 1, failed 1"
    assert files(out) == complete
    assert {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in kept} == kept


@pytest.mark.parametrize("args, message", [
    (["--skip-existing"], "--skip-existing applies to --ray runs"),
    (["--ray-actors", "2"], "--ray-actors applies to --ray runs"),
])
def test_ray_only_flags_without_ray_are_usage_errors(videos, args, message):
    result = dav2(videos / "a.avi", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_one_video_with_ray_is_a_usage_error_before_ray_starts(videos, tmp_path, monkeypatch):
    import dav2_cli.jobs.ray_videos as ray_videos

    # where the job looks it up: patched in ray_cluster instead, it was bound for good into ray_videos when this
    # test was the first to import it, and never seen when another test had imported it before
    monkeypatch.setattr(ray_videos, "join_cluster", lambda address: pytest.fail("Ray started"))
    result = dav2(videos / "a.avi", "-o", tmp_path / "OUT", "--ray")
    assert result.exit_code == 2 and "--ray takes a folder of videos or a .txt list" in result.stderr


def test_videos_by_uri_are_a_usage_error_naming_dav2_folder(videos, tmp_path):
    result = dav2(videos.as_uri(), "-o", tmp_path / "OUT", "--ray")
    assert result.exit_code == 2 and "`dav2 folder --ray` takes URIs" in result.stderr
