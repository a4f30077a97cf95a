"""`dav2 video` end to end: exact frame counts and rates, formats, normalisation, selection, audio, damage,
signals, and memory that does not grow with the video's length."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import weakref
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import synthetic_photo

import signal_child

import dav2_cli
from dav2_cli.outputs.range_tracker import RangeTracker
from dav2_cli.cli import main
from dav2_cli.media import video_encoders, video_probe
from dav2_cli.media.video_probe import find_ffmpeg, probe
from dav2_cli.media.video_read import iter_frames
from dav2_cli.media.video_write import VideoWriter
from dav2_cli.pipeline import PerImageDepth, run_pipeline

NTSC = Fraction(30000, 1001)
HEIGHT, WIDTH = 64, 96

def depth_files(folder):
    """The depth maps in `folder`, without the .json sidecars that describe npy files."""
    return [path for path in folder.iterdir() if path.suffix != ".json"]


@pytest.fixture(autouse=True)
def _default_ffmpeg(monkeypatch):
    monkeypatch.delenv("DAV2_FFMPEG", raising=False)
    find_ffmpeg.cache_clear()
    if find_ffmpeg() is None:
        pytest.fail("no ffmpeg: imageio-ffmpeg, a dependency, should provide one")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny grids here gain nothing from a second thread, and on a busy machine every op would wait for it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model(vits_checkpoint):
    return dav2_cli.load_model(vits_checkpoint, "cpu", "float32")


def clip_frames(count, height=HEIGHT, width=WIDTH):
    """Distinct, photo-like frames: a moving crop of one larger synthetic photo."""
    photo = synthetic_photo(height + count, width + 2 * count, seed=7)
    return [np.ascontiguousarray(photo[i: i + height, 2 * i: 2 * i + width]) for i in range(count)]


def write_clip(path, frames, fps=NTSC, audio_from=None):
    with VideoWriter(path, width=frames[0].shape[1], height=frames[0].shape[0], fps=fps,
                     audio_from=audio_from) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def sine(path, seconds):
    subprocess.run([find_ffmpeg(), "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", "-y", str(path)], check=True)
    return path


def audio_seconds(path):
    pcm = subprocess.run([find_ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:a", "-f", "s16le", "-ac", "1",
                          "-ar", "8000", "-"], check=True, capture_output=True).stdout
    return len(pcm) / 2 / 8000


def decode(path):
    reader = iter_frames(path)
    frames = [frame for _, frame in reader]
    assert not reader.stopped_early
    return frames


def dav2(*args):
    # exact everywhere (`auto` picks bf16 on some CPUs), so outputs can be compared with the float32 `model` above
    return CliRunner().invoke(main, ["video", *map(str, args), "--device", "cpu", "--dtype", "float32"],
                              catch_exceptions=False)


def leftovers(folder):
    return [p.name for p in folder.rglob("*") if ".part" in p.name]


# ------------------------------------------------------------------------------------ exact output


def test_hidden_check_command_keeps_count_rate_size_and_audio(tmp_path, vits_checkpoint):
    source = write_clip(tmp_path / "IN.mp4", clip_frames(6), audio_from=sine(tmp_path / "a.wav", 1))
    out = tmp_path / "OUT.mp4"
    result = dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 280)
    assert result.exit_code == 0, result.output
    assert result.output == ""  # no progress bar when stderr is not a terminal
    info = probe(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (WIDTH, HEIGHT, NTSC, True)
    assert len(decode(out)) == 6
    assert video_probe.list_streams(out).video_codec == "h264"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("target", "extra", "codec", "has_audio"), [
    ("d.webm", [], "vp9", True),
    ("d.mkv", ["--no-audio"], "ffv1", False),
    (None, ["--progress"], "h264", True),  # default: IN_depth.mp4 beside the input
])
def test_containers_keep_count_rate_and_size(tmp_path, vits_checkpoint, target, extra, codec, has_audio):
    source = write_clip(tmp_path / "IN.mp4", clip_frames(6), audio_from=sine(tmp_path / "a.wav", 1))
    args = [source, "-m", vits_checkpoint, "--input-size", 56, *extra]
    result = dav2(*args, *(["-o", tmp_path / target] if target else []))
    assert result.exit_code == 0, result.output
    out = tmp_path / (target or "IN_depth.mp4")
    info = probe(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (WIDTH, HEIGHT, NTSC, has_audio)
    assert video_probe.list_streams(out).video_codec == codec
    assert len(decode(out)) == 6
    if "--progress" in extra:
        assert "6/6" in result.stderr and "frame/s" in result.stderr


def test_start_offsets_the_audio_too(tmp_path, vits_checkpoint):
    # 0.6 s of audio under 1 s of video: from 0.5 s on, 0.1 s of it remains (0.5 s if it were not offset)
    source = write_clip(tmp_path / "IN.mp4", clip_frames(30), fps=30, audio_from=sine(tmp_path / "a.wav", 0.6))
    out = tmp_path / "out.mp4"
    assert dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 56, "--start", 0.5).exit_code == 0
    assert len(decode(out)) == 15
    assert audio_seconds(out) == pytest.approx(0.1, abs=0.05)


def test_side_by_side_doubles_the_width_with_the_frame_on_the_left(tmp_path, vits_checkpoint):
    frames = clip_frames(4)
    source = write_clip(tmp_path / "IN.mkv", frames)  # FFV1: lossless both ways, so pixels compare exactly
    out = tmp_path / "sbs.mkv"
    result = dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 56, "--side-by-side",
                  "--format", "gray")
    assert result.exit_code == 0, result.output
    assert (probe(out).width, probe(out).height) == (2 * WIDTH, HEIGHT)
    decoded = decode(out)
    assert len(decoded) == 4
    for written, frame in zip(decoded, frames):
        np.testing.assert_array_equal(written[:, :WIDTH], frame)
        depth = written[:, WIDTH:]
        assert (depth[..., 0] == depth[..., 1]).all() and depth.max() > depth.min()  # gray, not flat


@pytest.mark.parametrize(("options", "indices", "fps"), [
    (["--every", 3], [0, 3, 6, 9, 12, 15, 18, 21], Fraction(8)),
    (["--start", 0.5, "--end", 0.75], [12, 13, 14, 15, 16, 17], Fraction(24)),
    (["--start", 0.25, "--every", 2, "--max-frames", 3], [6, 8, 10], Fraction(12)),
])
def test_frame_selection(tmp_path, vits_checkpoint, options, indices, fps):
    frames = clip_frames(24)
    source = write_clip(tmp_path / "IN.mkv", frames, fps=24)
    out = tmp_path / "sel.mkv"
    result = dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 56, "--side-by-side", *options)
    assert result.exit_code == 0, result.output
    assert probe(out).fps == fps
    chosen = [next(i for i, frame in enumerate(frames) if np.array_equal(written[:, :WIDTH], frame))
              for written in decode(out)]
    assert chosen == indices


def test_every_divides_an_ntsc_rate_exactly(tmp_path, vits_checkpoint):
    source = write_clip(tmp_path / "IN.mp4", clip_frames(8))
    out = tmp_path / "half.mp4"
    assert dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 56, "--every", 2).exit_code == 0
    assert probe(out).fps == Fraction(15000, 1001)
    assert len(decode(out)) == 4


# ------------------------------------------------------------------------------------ raw depth


def test_gray16_maps_back_to_the_raw_depth_through_its_sidecar(tmp_path, vits_checkpoint, model):
    frames = clip_frames(5)
    source = write_clip(tmp_path / "IN.mkv", frames)
    out = tmp_path / "depth.mkv"
    result = dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 56, "--format", "gray16")
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "depth.mkv.json").read_text())
    assert sidecar["larger"] == "nearer" and sidecar["kind"] == "relative" and sidecar["frames"] == 5
    raw = subprocess.run([find_ffmpeg(), "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "gray16le",
                          "-"], check=True, capture_output=True).stdout
    levels = np.frombuffer(raw, "<u2").reshape(-1, HEIGHT, WIDTH)
    lo, hi = sidecar["lo"], sidecar["hi"]
    depths = np.stack([dav2_cli.predict(model, frame, 56) for frame in frames])
    assert lo == pytest.approx(depths.min()) and hi == pytest.approx(depths.max())  # one range, nothing clipped
    assert levels.min() == 0 and levels.max() == 65535
    np.testing.assert_allclose(lo + levels / 65535 * (hi - lo), depths, rtol=0, atol=(hi - lo) / 65535)  # one level


def test_gray16_of_metres_stores_pixels_beyond_infinity_at_the_far_end(tmp_path, vits_checkpoint, model):
    frames = clip_frames(3)
    source = write_clip(tmp_path / "IN.mkv", frames)
    value_hw = dav2_cli.predict(model, frames[0], 56)
    # points that make 1/depth = value / middle - 1: every pixel below the middle value lies beyond infinity
    middle = float(np.median(value_hw))
    ys, xs = np.nonzero(value_hw > np.quantile(value_hw, 0.75))
    picked = list(zip(ys, xs))[::max(1, len(ys) // 8)]
    rows = [f"{x},{y},{1 / (float(value_hw[y, x]) / middle - 1)!r}" for y, x in picked]
    points = tmp_path / "points.csv"
    points.write_text("x,y,depth_m\n" + "\n".join(rows) + "\n")
    out = tmp_path / "depth.mkv"
    result = dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 56, "--format", "gray16",
                  "--align-to", points, "--batch-size", 1)
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "depth.mkv.json").read_text())
    assert sidecar["larger"] == "farther" and sidecar["decode"].startswith("depth = lo + v / 65535")
    raw = subprocess.run([find_ffmpeg(), "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "gray16le",
                          "-"], check=True, capture_output=True).stdout
    first = np.frombuffer(raw, "<u2").reshape(-1, HEIGHT, WIDTH)[0]
    margin = 0.01 * (value_hw.max() - value_hw.min())  # clear of the middle, where the run's rounding could tip
    beyond, finite = value_hw < middle - margin, value_hw > middle + margin
    assert beyond.sum() > 100 and finite.sum() > 100
    assert (first[beyond] == 65535).all()  # the far end: decoded, the video's farthest depth, never its nearest
    metres = 1 / (value_hw[finite] / middle - 1)
    decoded = sidecar["lo"] + first[finite] / 65535 * (sidecar["hi"] - sidecar["lo"])
    np.testing.assert_allclose(decoded, metres, rtol=1e-3, atol=(sidecar["hi"] - sidecar["lo"]) / 65535)


@pytest.mark.parametrize("fmt", ["npy", "tiff"])
def test_raw_frames_equal_predict_on_the_decoded_frames(tmp_path, vits_checkpoint, model, fmt):
    source = write_clip(tmp_path / "IN.mp4", clip_frames(5))
    out = tmp_path / "frames"
    # one frame per model call: batched matrix products may round the last bit differently
    result = dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 56, "--format", fmt,
                  "--batch-size", 1)
    assert result.exit_code == 0, result.output
    decoded = decode(source)
    assert sorted(p.name for p in depth_files(out)) == [f"frame_{i:06d}.{fmt}" for i in range(5)]
    for index, frame in enumerate(decoded):
        path = out / f"frame_{index:06d}.{fmt}"
        depth = np.load(path) if fmt == "npy" else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.float32 and depth.shape == (HEIGHT, WIDTH)
        np.testing.assert_array_equal(depth, dav2_cli.predict(model, frame, 56))


def _recovered_ranges(pictures, depths):
    """The (lo, hi) each 8-bit gray frame was normalised with, fitted from its unclipped pixels."""
    ranges = []
    for picture, depth in zip(pictures, depths):
        level = picture[..., 0].astype(np.float64) + 0.5  # truncation lowered each level by 0.5 on average
        unclipped = (picture[..., 0] > 0) & (picture[..., 0] < 255)
        slope, offset = np.polyfit(depth[unclipped], level[unclipped], 1)
        lo = -offset / slope
        ranges.append((lo, lo + 255 / slope))
    return np.array(ranges)


def test_normalize_modes_across_a_scene_cut(tmp_path, vits_checkpoint, model):
    # a photo, then a cut to flat gray: with these weights the depth range jumps by about a third of its span
    frames = [synthetic_photo(HEIGHT, WIDTH, seed=3)] * 6 + [np.full((HEIGHT, WIDTH, 3), 128, np.uint8)] * 6
    source = write_clip(tmp_path / "IN.mkv", frames)
    depths = [dav2_cli.predict(model, frame, 56) for frame in frames]
    ranges = {}
    for mode, cuts in (("ema", "off"), ("global", "on"), ("frame", "on"), ("ema-at-cuts", "on")):
        out = tmp_path / f"{mode}.mkv"
        result = dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 56, "--format", "gray",
                      "--normalize", mode.removesuffix("-at-cuts"), "--scene-cuts", cuts)
        assert result.exit_code == 0, result.output
        ranges[mode] = _recovered_ranges(decode(out), depths)
    span = depths[0].max() - depths[0].min()
    # frame: each frame's own min/max, so the range jumps at the cut
    np.testing.assert_allclose(ranges["frame"], [(d.min(), d.max()) for d in depths], atol=0.01 * span)
    jump = np.abs(ranges["frame"][6] - ranges["frame"][5]).max()
    assert jump > 0.2 * span
    # global: one range for every frame
    np.testing.assert_allclose(ranges["global"], ranges["global"][:1].repeat(12, axis=0), atol=0.01 * span)
    # ema: constant through the first scene, then only a small step at the cut, moving on towards scene B
    np.testing.assert_allclose(ranges["ema"][:6], ranges["ema"][:1].repeat(6, axis=0), atol=0.01 * span)
    step = np.abs(ranges["ema"][6] - ranges["ema"][5]).max()
    assert step < 0.25 * jump
    assert np.abs(ranges["ema"][11] - ranges["ema"][5]).max() > 2 * step
    # ema with cuts found (the default): the first scene as before, then scene B's own range from its first frame
    np.testing.assert_allclose(ranges["ema-at-cuts"][:6], ranges["ema"][:6], atol=0.01 * span)
    scene_b = RangeTracker("ema").update(depths[6])  # a fresh tracker: the first frame's percentiles
    np.testing.assert_allclose(ranges["ema-at-cuts"][6:], np.array([scene_b] * 6), atol=0.01 * span)


# ------------------------------------------------------------------------------------ errors


def test_truncated_video_keeps_what_decodes_and_says_so_in_one_line(tmp_path, vits_checkpoint):
    whole = write_clip(tmp_path / "whole.mp4", clip_frames(40))
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 4 // 5])
    decodable = sum(1 for _ in iter_frames(cut))
    out = tmp_path / "out.mp4"
    result = dav2(cut, "-o", out, "-m", vits_checkpoint, "--input-size", 56)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dav2: error: ")
    assert f"decoding stopped at frame {decodable} of 40" in lines[0] and str(out) in lines[0]
    assert 0 < decodable < 40 and len(decode(out)) == decodable
    assert leftovers(tmp_path) == []


def test_garbage_file_is_one_line_and_exit_1(tmp_path, vits_checkpoint):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    result = dav2(garbage, "-m", vits_checkpoint)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"dav2: error: {garbage}: cannot open video")
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.mp4"]


def test_a_file_without_a_frame_rate_asks_for_fps(tmp_path, vits_checkpoint, monkeypatch):
    source = write_clip(tmp_path / "IN.mkv", clip_frames(3))
    listed = video_probe.list_streams
    monkeypatch.setattr(video_probe, "list_streams", lambda path: dataclasses.replace(listed(path),
                                                                                     declares_rate=False))
    result = dav2(source, "-m", vits_checkpoint, "--input-size", 56)
    assert result.exit_code == 1 and "--fps" in result.stderr and "no frame rate" in result.stderr
    result = dav2(source, "-m", vits_checkpoint, "--input-size", 56, "--fps", "12.5")
    assert result.exit_code == 0, result.output
    monkeypatch.undo()
    assert probe(tmp_path / "IN_depth.mp4").fps == Fraction(25, 2)


@pytest.mark.parametrize(("args", "message", "code"), [
    (["-o", "x.mp4", "--format", "gray16"], "gray16 writes lossless 16-bit FFV1 video, which needs a .mkv", 2),
    (["-o", "x.mp4", "--format", "npy"], "one file per frame into a folder", 2),
    (["-o", "x.avi"], "needs a .mp4, .webm or .mkv name", 2),
    (["-o", "d", "--format", "npy", "--side-by-side"], "--side-by-side needs a picture video", 2),
    (["-o", "x.mkv", "--format", "gray16", "--normalize", "ema"], "cannot use --normalize ema", 2),
    (["-o", "d", "--format", "tiff", "--normalize", "global"], "--normalize applies to pictures", 2),
    (["-o", "-"], "cannot go to stdout", 2),
    (["--start", 2, "--end", 1], "selects no frames", 2),
    (["--start", 5], "past the end of the video", 1),  # only the file can tell
    (["--start", "nan"], "'nan' is not a finite number", 2),
    (["--end", "inf"], "'inf' is not a finite number", 2),
    (["--fps", "1e-9"], "frame rate 1e-9: must be between 1/1000 and 1000", 2),
    (["--every", 10 ** 20], "not in the range 1<=x<=1000", 2),
])
def test_impossible_combinations_are_one_line(tmp_path, vits_checkpoint, args, message, code, monkeypatch):
    source = write_clip(tmp_path / "IN.mkv", clip_frames(3), fps=25)
    monkeypatch.chdir(tmp_path)
    result = dav2(source, "-m", vits_checkpoint, *args)
    assert result.exit_code == code
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["IN.mkv"]


def test_an_output_that_is_the_input_under_another_name_is_refused(tmp_path, vits_checkpoint):
    source = write_clip(tmp_path / "IN.mkv", clip_frames(3), fps=25)
    alias = tmp_path / "alias.mkv"
    os.link(source, alias)  # one file, two names: as `in.MKV` and `IN.mkv` are on a case-insensitive disk
    before = source.read_bytes()
    result = dav2(source, "-o", alias, "-m", vits_checkpoint, "--input-size", 28)
    assert result.exit_code == 2 and "is the input video" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert source.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["IN.mkv", "alias.mkv"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_a_valid_shorter_video(tmp_path, vits_checkpoint, signum, code):
    source = write_clip(tmp_path / "IN.mkv", clip_frames(4) * 150)  # 600 frames: far more than get done
    out = tmp_path / "out.mp4"
    release = tmp_path / "release"
    # signalled while its third batch of two frames is in the model, which is then released
    with signal_child.start(["video", source, "-o", out, "-m", vits_checkpoint, "--input-size", "56",
                             "--dtype", "float32"], hold_at=3, release=release) as child:
        child.process.send_signal(signum)
        assert child.wait_for_line("stopping"), child.stderr
        release.touch()
        assert child.finish() == code, child.stderr
    assert "stopped by signal" in child.stderr and "Traceback" not in child.stderr
    written = decode(out)
    assert len(written) in (4, 6) and probe(out).fps == NTSC  # the held batch too if it ended within the grace
    assert leftovers(tmp_path) == []


def test_a_signal_in_a_forward_pass_that_never_ends_leaves_no_video(tmp_path, vits_checkpoint):
    """The first batch never comes back: the job still stops at once, and writes no file at all."""
    from dav2_cli.runtime.interrupts import STOPPING

    source = write_clip(tmp_path / "IN.mkv", clip_frames(4) * 5)
    out = tmp_path / "out.mp4"
    with signal_child.start(["video", source, "-o", out, "-m", vits_checkpoint, "--input-size", "56",
                             "--dtype", "float32"], hold_at=1) as child:
        child.process.send_signal(signal.SIGINT)
        assert child.wait_for_line(STOPPING), child.stderr
        assert child.finish() == 130, child.stderr
    assert "no output" in child.stderr and "Traceback" not in child.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["IN.mkv"]


def test_sigterm_during_the_final_close_is_a_stop_not_an_encoder_failure(tmp_path, vits_checkpoint, monkeypatch):
    source = write_clip(tmp_path / "IN.mkv", clip_frames(4), fps=25)
    out = tmp_path / "out.mp4"
    finish = video_encoders.FfmpegProcess.finish

    def finish_under_sigterm(process):
        # as a service manager stops a whole process group: dav2 and its encoder get SIGTERM as the file closes
        os.kill(os.getpid(), signal.SIGTERM)
        process._process.send_signal(signal.SIGTERM)
        return finish(process)

    monkeypatch.setattr(video_encoders.FfmpegProcess, "finish", finish_under_sigterm)
    result = dav2(source, "-o", out, "-m", vits_checkpoint, "--input-size", 28)
    assert result.exit_code == 143, result.stderr
    assert "stopped by signal" in result.stderr and "ffmpeg" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and leftovers(tmp_path) == []


class CountingReader:
    """A FrameReader that counts how many of the frames it gave out are still alive, and the most at once."""

    def __init__(self, reader):
        self._reader = reader
        self._lock = threading.Lock()
        self.alive = self.peak = 0

    def __iter__(self):
        return self

    def __next__(self):
        index, frame = next(self._reader)
        with self._lock:
            self.alive += 1
            self.peak = max(self.peak, self.alive)
        weakref.finalize(frame, self._freed)
        return index, frame

    def _freed(self):
        with self._lock:
            self.alive -= 1

    def close(self):
        self._reader.close()


def test_frames_in_memory_do_not_grow_with_the_length_of_the_video(tmp_path, model):
    source = write_clip(tmp_path / "IN.mkv", clip_frames(8) * 10)
    peaks = []
    for length in (20, 80):
        reader, seen = CountingReader(iter_frames(source, end=length)), []
        run_pipeline(reader, PerImageDepth(model), lambda frame, depth: seen.append(frame.key), input_size=28,
                     batch_size=2)
        assert seen == list(range(length)) and reader.alive == 0
        peaks.append(reader.peak)
    # decoding runs far ahead of the model, so only the bounded queues keep this low: one batch waiting, one in
    # the model, one waiting for the encoder, one being encoded, and the frame the decoder holds
    assert max(peaks) <= 4 * 2 + 1, peaks


def test_a_failing_encoder_stops_the_pipeline_and_its_error_surfaces(tmp_path, model):
    source = write_clip(tmp_path / "IN.mkv", clip_frames(4) * 10)
    done = []

    def consume(frame, depth):
        if frame.key == 3:
            raise OSError("disk full")
        done.append(frame.key)

    with pytest.raises(OSError, match="disk full"):
        run_pipeline(iter_frames(source), PerImageDepth(model), consume, input_size=28, batch_size=2)
    assert done == [0, 1, 2]
    assert not [t for t in threading.enumerate() if t.name.startswith("dav2-")]  # no stage left running
