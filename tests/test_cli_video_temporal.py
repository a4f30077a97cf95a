"""`dav2 video -m <Video Depth Anything>`: upstream's depth for every frame, through the same streamed job as any
other model (formats, frame folders, scene cuts), and a clear refusal where a video model cannot work."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from benchmarks.seeded_vda import seeded_vda_checkpoint, synthetic_clip
from dav2_cli.cli import main
from dav2_cli.media.frame_sequence import frame_file_name
from dav2_cli.media.video_probe import probe
from dav2_cli.media.video_write import VideoWriter
from tests.test_vda_fidelity import FILE_NAMES, GOLDEN, TOLERANCE, golden  # noqa: F401 - a fixture


def dav2(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def write_lossless(path, clip_rgb, fps=Fraction(24)):
    """FFV1 keeps every pixel, so the frames dav2 decodes are exactly the clip's."""
    with VideoWriter(path, width=clip_rgb.shape[2], height=clip_rgb.shape[1], fps=fps) as writer:
        for image in clip_rgb:
            writer.write(np.ascontiguousarray(image[:, :, ::-1]))
    return path


@pytest.fixture(scope="module")
def checkpoints(golden, tmp_path_factory):  # noqa: F811 - the imported fixture
    folder = tmp_path_factory.mktemp("vda")
    paths = {}
    for kind, name in FILE_NAMES.items():
        paths[kind] = folder / name
        torch.save(seeded_vda_checkpoint("vits", golden.seeds[kind]), paths[kind])
    return paths


def read_frames(folder, count):
    return np.stack([np.load(folder / frame_file_name(index, ".npy")) for index in range(count)])


@pytest.mark.parametrize(("kind", "frames"), [("relative", 60), ("metric", 60), ("relative", 24)])
def test_the_documented_command_writes_upstreams_depth_for_every_frame(tmp_path, golden, checkpoints,  # noqa: F811
                                                                      kind, frames):
    clip = synthetic_clip(frames, *golden.image_hw, seed=golden.clip_seed)
    source = write_lossless(tmp_path / "clip.mkv", clip)
    out = tmp_path / "frames"
    result = dav2("video", source, "-m", checkpoints[kind], "--format", "npy", "-o", out, "--input-size",
                  golden.input_size, "--dtype", "float32", "--device", "cpu", "-v")
    assert result.exit_code == 0, result.output
    # -v says what was loaded; metric VDA has no max_depth to print
    assert ("metric: meters, larger = farther" if kind == "metric" else "relative: inverse depth") in result.output
    ours, reference = read_frames(out, frames), golden.depth[kind, frames]
    assert ours.shape == reference.shape  # every frame, at the video's own size
    worst = float(np.abs(ours - reference).max() / (reference.max() - reference.min()))
    assert worst < TOLERANCE


def test_a_scene_cut_starts_a_new_chain_unless_turned_off(tmp_path, golden, checkpoints):  # noqa: F811
    first = synthetic_clip(12, *golden.image_hw, seed=1)
    second = 255 - synthetic_clip(30, *golden.image_hw, seed=2)  # other colours: a hard cut
    source = write_lossless(tmp_path / "cut.mkv", np.concatenate([first, second]))
    alone = write_lossless(tmp_path / "second.mkv", second)
    common = ["-m", checkpoints["relative"], "--format", "npy", "--input-size", golden.input_size, "--dtype",
              "float32"]
    for name, video, extra in (("cut", source, []), ("off", source, ["--scene-cuts", "off"]),
                               ("alone", alone, [])):
        assert dav2("video", video, "-o", tmp_path / name, *common, *extra).exit_code == 0
    after_cut, off = read_frames(tmp_path / "cut", 42)[12:], read_frames(tmp_path / "off", 42)[12:]
    second_alone = read_frames(tmp_path / "alone", 30)
    spread = second_alone.max() - second_alone.min()
    assert np.abs(after_cut - second_alone).max() < 1e-4 * spread  # nothing carried across the cut
    assert np.abs(off - second_alone).max() > 1e-2 * spread  # without detection, the first scene leaks in


def test_a_video_model_in_a_picture_video_keeps_count_rate_and_size(tmp_path, checkpoints):
    source = write_lossless(tmp_path / "clip.mkv", synthetic_clip(25, 40, 60, seed=3), fps=Fraction(30000, 1001))
    out = tmp_path / "depth.mp4"
    result = dav2("video", source, "-m", checkpoints["relative"], "-o", out, "--input-size", 56)
    assert result.exit_code == 0, result.output
    info = probe(out)
    assert (info.frame_count, info.fps, info.width, info.height) == (25, Fraction(30000, 1001), 60, 40)


def test_images_with_a_video_model_are_refused_with_what_to_do(tmp_path, checkpoints, make_photo):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), make_photo(40, 60))
    by_file = dav2("image", tmp_path / "a.png", "-m", checkpoints["relative"], "-o", tmp_path / "d.png")
    by_name = dav2("folder", tmp_path, "-m", "video-vits")
    for result in (by_file, by_name):
        assert result.exit_code == 2 and "dav2 video" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_align_to_fits_the_depth_a_video_model_writes_not_the_frame_alone(tmp_path, golden, checkpoints):  # noqa: F811
    """Video Depth Anything's depth of a frame depends on its window and the chain before it, so a fit on the
    frame run alone would scale every frame wrongly. The points are made from the written depth itself: the fit
    must recover them exactly, in the second window (after one alignment) and for every frame."""
    frames, fit_frame = 40, 26
    source = write_lossless(tmp_path / "clip.mkv", synthetic_clip(frames, *golden.image_hw, seed=4))
    common = ["-m", checkpoints["relative"], "--format", "npy", "--input-size", golden.input_size, "--dtype",
              "float32"]
    assert dav2("video", source, "-o", tmp_path / "raw", *common).exit_code == 0
    raw = read_frames(tmp_path / "raw", frames)
    low, high = float(raw.min()), float(raw.max())
    scale, shift = (1 - 0.1) / (high - low), 0.1 - (1 - 0.1) / (high - low) * low  # 1 m nearest .. 10 m farthest
    height, width = golden.image_hw
    rows = ["x,y,depth_m,frame"] + [f"{x},{y},{1 / (scale * raw[fit_frame, y, x] + shift):.9g},{fit_frame}"
                                    for x, y in ((3, 4), (width - 5, 7), (width // 2, height // 2),
                                                 (6, height - 3), (width - 2, height - 6), (width // 3, 2))]
    (tmp_path / "points.csv").write_text("\n".join(rows) + "\n")

    result = dav2("video", source, "-o", tmp_path / "metres", *common, "--align-to", tmp_path / "points.csv")
    assert result.exit_code == 0, result.output
    metres = read_frames(tmp_path / "metres", frames)
    expected = 1 / (scale * raw.astype(np.float64) + shift)
    assert np.abs(metres / expected - 1).max() < 1e-4

    refused = dav2("video", source, "-o", tmp_path / "late", *common, "--align-to", tmp_path / "points.csv",
                   "--start", 30 / 24)
    assert refused.exit_code == 1 and "fit on a frame the run writes" in refused.output
