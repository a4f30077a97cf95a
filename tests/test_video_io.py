"""Video reading and writing: exact rates, frame counts, audio, odd sizes, damage, and no half-written files."""

import os
import re
import subprocess
from fractions import Fraction

import cv2
import numpy as np
import pytest

from dav2_cli.errors import UserError
from dav2_cli.media import video_probe, video_write
from dav2_cli.media.frame_sequence import SequenceReader
from dav2_cli.media.video_probe import find_ffmpeg, probe
from dav2_cli.media.video_selection import FrameSelection
from dav2_cli.media.video_read import iter_frames
from dav2_cli.media.video_write import VideoWriter

NTSC = Fraction(30000, 1001)


@pytest.fixture(autouse=True)
def _default_ffmpeg(monkeypatch):
    """Each test starts from the default ffmpeg lookup and a fresh warn-once memory."""
    monkeypatch.delenv("DAV2_FFMPEG", raising=False)
    monkeypatch.setattr(video_write, "_warned", set())
    find_ffmpeg.cache_clear()
    yield
    find_ffmpeg.cache_clear()


@pytest.fixture
def ffmpeg():
    path = find_ffmpeg()
    if path is None:
        pytest.fail("no ffmpeg: imageio-ffmpeg, a dependency, should provide one")
    return path


@pytest.fixture
def no_ffmpeg(monkeypatch):
    monkeypatch.setenv("DAV2_FFMPEG", "none")
    find_ffmpeg.cache_clear()


def _frames(count, height=48, width=64):
    """Smooth, moving content (a gradient and a square), so lossy codecs keep it recognisable."""
    ys, xs = np.mgrid[0:height, 0:width]
    for index in range(count):
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
        frame[..., 1] = (ys * 255 // max(height - 1, 1)).astype(np.uint8)
        frame[..., 2] = (index * 20) % 256
        frame[4 + index % 8: 16 + index % 8, 8:20] = 255
        yield frame


def _write(path, frames, fps=NTSC, **kwargs):
    frames = list(frames)
    height, width = frames[0].shape[:2]
    with VideoWriter(path, width=width, height=height, fps=fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return frames


def _lavfi(ffmpeg, out, *args):
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", *args, "-y", str(out)], check=True)
    return out


def _ntsc_clip(ffmpeg, out, frames=12, audio=False):
    sources = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=30000/1001"]
    if audio:
        sources += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-c:a", "aac"]
    return _lavfi(ffmpeg, out, *sources, "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                  *(["-t", f"{frames * 1001 / 30000:.4f}"] if audio else []))


def _stream_listing(ffmpeg, path):
    listing = video_probe.list_streams(path)
    assert listing.error is None
    return listing


def _decode_all(path):
    return [frame for _, frame in iter_frames(path)]


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ------------------------------------------------------------------------------------------------ probe


def test_probe_reads_ntsc_rate_exactly(ffmpeg, tmp_path):
    clip = _ntsc_clip(ffmpeg, tmp_path / "ntsc.mp4")
    info = probe(clip)
    assert info.fps == NTSC and isinstance(info.fps, Fraction)
    assert (info.width, info.height, info.frame_count, info.has_audio) == (64, 48, 12, False)


def test_probe_needs_no_ffmpeg_executable(ffmpeg, tmp_path, monkeypatch):
    clip = _ntsc_clip(ffmpeg, tmp_path / "ntsc.mp4", audio=True)
    assert probe(clip).has_audio
    monkeypatch.setenv("DAV2_FFMPEG", "none")
    find_ffmpeg.cache_clear()
    info = probe(clip)  # the container's metadata, read in process
    assert info.fps == NTSC and info.has_audio


def test_a_rate_rounded_by_a_millisecond_time_base_is_read_as_ntsc(ffmpeg, tmp_path):
    clip = _lavfi(ffmpeg, tmp_path / "ntsc.webm", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=30000/1001",
                  "-frames:v", "6", "-c:v", "libvpx-vp9", "-cpu-used", "8")
    assert probe(clip).fps == NTSC


def test_probe_snaps_opencvs_float_where_the_stream_gives_no_exact_rate(tmp_path):
    path = tmp_path / "clip.mkv"
    stated = video_probe._Listing(None, "matroska,webm", "h264", (), None, declares_rate=True)
    assert video_probe._choose_fps(path, stated, 29.97002997002997, None) == NTSC


def test_cover_art_is_not_the_video_and_a_still_image_is_refused(ffmpeg, tmp_path):
    song = _lavfi(ffmpeg, tmp_path / "song.mp3", "-f", "lavfi", "-i", "sine=duration=0.3")
    cover = _lavfi(ffmpeg, tmp_path / "cover.png", "-f", "lavfi", "-i", "testsrc=size=32x32", "-frames:v", "1")
    tagged = _lavfi(ffmpeg, tmp_path / "tagged.mp3", "-i", str(song), "-i", str(cover), "-map", "0:a", "-map",
                    "1:v", "-c:a", "copy", "-c:v", "png", "-disposition:v", "attached_pic")
    listing = video_probe.list_streams(tagged)
    assert listing.error is None and listing.audio_codecs == ("mp3",) and listing.video_codec is None
    with pytest.raises(UserError, match="it has no video stream"):
        probe(tagged)
    with pytest.raises(UserError, match="it is a still image"):
        probe(cover)


def test_probe_fps_override(ffmpeg, tmp_path):
    clip = _ntsc_clip(ffmpeg, tmp_path / "ntsc.mp4")
    assert probe(clip, fps_override="24000/1001").fps == Fraction(24000, 1001)
    assert probe(clip, fps_override=23.976).fps == Fraction(24000, 1001)
    assert probe(clip, fps_override=12.5).fps == Fraction(25, 2)
    for nonsense in (0, -25, "1e-9", "1e308", "2000/1"):  # as typed, not as Python would print it
        with pytest.raises(UserError, match=f"frame rate {re.escape(str(nonsense))}: must be between 1/1000 and 1000"):
            probe(clip, fps_override=nonsense)
    for nonsense in ("nan", "inf", "abc", "1/0"):
        with pytest.raises(UserError, match="not a number or fraction"):
            probe(clip, fps_override=nonsense)


def test_missing_frame_rate_needs_a_fallback(tmp_path):
    path = tmp_path / "norate.mkv"
    with pytest.raises(UserError, match=re.escape(str(path)) + ".*no frame rate"):
        video_probe._choose_fps(path, None, 0.0, None)
    undeclared = video_probe._Listing(None, "matroska,webm", "h264", (), Fraction(1000), declares_rate=False)
    with pytest.raises(UserError, match="no frame rate"):
        video_probe._choose_fps(path, undeclared, 25.0, None)
    assert video_probe._choose_fps(path, undeclared, 25.0, 25) == 25


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (Fraction(29.97002997002997), NTSC),  # OpenCV's double for 30000/1001
        (Fraction(23.976023976023978), Fraction(24000, 1001)),
        (Fraction(59.94), Fraction(60000, 1001)),
        (Fraction(1_000_000_000, 33_366_667), NTSC),  # Matroska's DefaultDuration in nanoseconds
        (Fraction(12.5), Fraction(25, 2)),  # close to 12512/1001, but not an NTSC rate
        (Fraction(25.0), Fraction(25)),
        (Fraction(2997, 100), Fraction(2997, 100)),  # an exact fraction is kept as it is
    ],
)
def test_tidy_rate(rate, expected):
    assert video_probe._tidy_rate(rate) == expected


@pytest.mark.parametrize("with_ffmpeg", [True, False])
def test_unreadable_inputs_are_user_errors(tmp_path, monkeypatch, with_ffmpeg):
    if not with_ffmpeg:
        monkeypatch.setenv("DAV2_FFMPEG", "none")
        find_ffmpeg.cache_clear()
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for path in (garbage, tmp_path / "missing.mp4", tmp_path):
        with pytest.raises(UserError, match=re.escape(str(path)) + ": cannot open video"):
            probe(path)
        with pytest.raises(UserError, match=re.escape(str(path)) + ": cannot open video"):
            iter_frames(path)


def test_still_image_is_not_a_video(ffmpeg, tmp_path):
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), next(_frames(1)))
    with pytest.raises(UserError, match="still image"):
        probe(image)


# ------------------------------------------------------------------------------------------------ reading


def test_frame_selection(ffmpeg, tmp_path):
    # Lossless FFV1 with each frame's index in its pixels, so frames are identified by content.
    path = tmp_path / "indexed.mkv"
    _write(path, (np.full((48, 64, 3), 10 * i, np.uint8) for i in range(20)), fps=25)

    def selected(**selection):
        reader = iter_frames(path, **selection)
        picked = [(index, int(frame[0, 0, 0]) // 10) for index, frame in reader]
        assert all(index == content for index, content in picked)
        assert not reader.stopped_early and reader.error is None
        return [index for index, _ in picked]

    assert selected() == list(range(20))
    assert selected(start=3, end=15, every=4) == [3, 7, 11]
    assert selected(every=3) == [0, 3, 6, 9, 12, 15, 18]
    assert selected(start=17) == [17, 18, 19]
    assert selected(start=5, end=5) == []
    with pytest.raises(ValueError):
        iter_frames(path, every=0)


def test_truncated_file_yields_what_decodes_and_says_so(ffmpeg, tmp_path):
    good = tmp_path / "good.mp4"
    _write(good, _frames(70))
    reader = iter_frames(good)
    assert sum(1 for _ in reader) == 70 and not reader.stopped_early and reader.error is None

    cut = tmp_path / "cut.mp4"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    reader = iter_frames(cut)
    indices = [index for index, _ in reader]
    assert 0 < len(indices) < 70
    assert indices == list(range(len(indices)))
    assert reader.stopped_early
    assert reader.frames_read == len(indices)
    assert reader.error == f"{cut}: decoding stopped at frame {len(indices)} of 70 (file truncated or damaged)"


@pytest.mark.parametrize("extension", [".webm", ".mkv"])
def test_a_variable_rate_file_that_paused_is_complete_not_damaged(ffmpeg, tmp_path, extension):
    """WebM and Matroska store no frame count: OpenCV estimates one from the duration, which a file that paused
    for a second (30 frames over 2 s) exceeds by far. Decoding every frame is a normal end."""
    paused = _lavfi(ffmpeg, tmp_path / f"paused{extension}", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=30",
                    "-frames:v", "30", "-vf", "setpts='(N+if(gte(N,15),30,0))/(30*TB)'", "-fps_mode", "passthrough",
                    *(["-c:v", "libvpx-vp9", "-deadline", "realtime"] if extension == ".webm" else ["-c:v", "ffv1"]))
    reader = iter_frames(paused)
    assert reader.frame_count > 31  # the estimate the old check trusted
    assert sum(1 for _ in reader) == 30
    assert not reader.stopped_early and reader.error is None


@pytest.mark.parametrize("extension", [".webm", ".mkv"])
def test_truncation_is_still_seen_where_the_frame_count_is_an_estimate(ffmpeg, tmp_path, extension):
    good = tmp_path / f"good{extension}"
    _write(good, _frames(70))
    cut = tmp_path / f"cut{extension}"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    reader = iter_frames(cut)
    decoded = sum(1 for _ in reader)
    assert 0 < decoded < 70
    assert reader.stopped_early and "file truncated or damaged" in reader.error


# ------------------------------------------------------------------------------------------------ writing


@pytest.mark.parametrize("extension", [".mp4", ".webm", ".mkv"])
def test_round_trip_keeps_count_rate_and_content(ffmpeg, tmp_path, extension):
    out = tmp_path / f"out{extension}"
    written = _write(out, _frames(12))
    assert _leftovers(tmp_path, {out.name}) == []
    info = probe(out)
    assert (info.fps, info.width, info.height) == (NTSC, 64, 48)
    decoded = _decode_all(out)
    assert len(decoded) == 12
    errors = [np.abs(a.astype(int) - b).mean() for a, b in zip(decoded, written)]
    if extension == ".mkv":
        assert max(errors) == 0  # FFV1 is lossless
    else:
        assert max(errors) < 4


def test_codecs_by_extension(ffmpeg, tmp_path):
    expected = {".mp4": "h264", ".webm": "vp9", ".mkv": "ffv1"}
    for extension, codec in expected.items():
        out = tmp_path / f"out{extension}"
        _write(out, _frames(3))
        assert _stream_listing(ffmpeg, out).video_codec == codec
    _write(tmp_path / "h264.mkv", _frames(3), codec="h264")
    assert _stream_listing(ffmpeg, tmp_path / "h264.mkv").video_codec == "h264"
    with pytest.raises(UserError, match=r"\.webm cannot hold h264"):
        VideoWriter(tmp_path / "x.webm", width=64, height=48, fps=25, codec="h264")


def test_gray16_ffv1_is_bit_exact(ffmpeg, tmp_path):
    rng = np.random.default_rng(1)
    depth = [rng.integers(0, 65536, (47, 63), dtype=np.uint16) for _ in range(5)]
    out = tmp_path / "depth.mkv"
    _write(out, depth, fps=Fraction(24000, 1001), pix_fmt_in="gray16le")
    raw = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "gray16le", "-"],
        check=True, capture_output=True,
    ).stdout
    decoded = np.frombuffer(raw, "<u2").reshape(-1, 47, 63)
    np.testing.assert_array_equal(decoded, np.stack(depth))
    assert probe(out).fps == Fraction(24000, 1001)


def test_odd_size_is_padded_for_h264_only(ffmpeg, tmp_path):
    odd = [frame[:47, :63] for frame in _frames(4)]
    _write(tmp_path / "odd.mp4", odd)
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (64, 48)
    first = _decode_all(tmp_path / "odd.mp4")[0].astype(int)
    assert np.abs(first[:47, :63] - odd[0]).mean() < 4
    # The extra column and row repeat the edge, rather than adding a dark line.
    assert np.abs(first[:, 63] - first[:, 62]).mean() < 4
    assert np.abs(first[47] - first[46]).mean() < 4
    for extension in (".webm", ".mkv"):
        _write(tmp_path / f"odd{extension}", odd)
        info = probe(tmp_path / f"odd{extension}")
        assert (info.width, info.height) == (63, 47)


@pytest.mark.parametrize(("extension", "audio_codec"), [(".mp4", "aac"), (".webm", "opus"), (".mkv", "aac")])
def test_audio_is_muxed_and_cut_to_the_video(ffmpeg, tmp_path, extension, audio_codec):
    source = _ntsc_clip(ffmpeg, tmp_path / "source.mp4", frames=30, audio=True)
    out = tmp_path / f"out{extension}"
    _write(out, _frames(12), audio_from=source)  # 12 frames: the source's audio runs on for 18 more
    assert _leftovers(tmp_path, {source.name, out.name}) == []
    listing = _stream_listing(ffmpeg, out)
    assert listing.audio_codecs == (audio_codec,)  # copied into mp4/mkv, re-encoded to Opus for webm
    info = probe(out)
    assert info.has_audio and info.fps == NTSC
    assert len(_decode_all(out)) == 12
    stderr = subprocess.run([ffmpeg, "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    seconds = float(re.search(r"Duration: 00:00:(\d+\.\d+)", stderr)[1])
    assert seconds < 0.5  # 12 frames are 0.4 s; the 1 s of audio was cut


def test_short_audio_does_not_cut_the_video(ffmpeg, tmp_path):
    audio = _lavfi(ffmpeg, tmp_path / "beep.m4a", "-f", "lavfi", "-i", "sine=frequency=440:duration=0.2")
    out = tmp_path / "out.mp4"
    _write(out, _frames(30), audio_from=audio)
    assert probe(out).has_audio
    assert len(_decode_all(out)) == 30


def test_audio_start_offsets_into_the_source(ffmpeg, tmp_path):
    audio = _lavfi(ffmpeg, tmp_path / "beep.wav", "-f", "lavfi", "-i", "sine=frequency=440:duration=0.6")

    def audio_seconds(path):
        pcm = subprocess.run(
            [ffmpeg, "-v", "error", "-i", str(path), "-map", "0:a", "-f", "s16le", "-ac", "1", "-ar", "8000", "-"],
            check=True, capture_output=True,
        ).stdout
        return len(pcm) / 2 / 8000

    # PCM is re-encoded to AAC for .mp4, so the cut is sample-exact (a stream copy cuts at packet boundaries).
    _write(tmp_path / "from0.mp4", _frames(12), audio_from=audio)  # 0.4 s of video
    _write(tmp_path / "from05.mp4", _frames(12), audio_from=audio, audio_start=Fraction(1, 2))
    assert audio_seconds(tmp_path / "from0.mp4") == pytest.approx(0.4, abs=0.03)
    assert audio_seconds(tmp_path / "from05.mp4") == pytest.approx(0.1, abs=0.03)


def test_no_audio_without_audio_from_or_without_audio_in_source(ffmpeg, tmp_path):
    with_audio = _ntsc_clip(ffmpeg, tmp_path / "with.mp4", audio=True)
    silent = _ntsc_clip(ffmpeg, tmp_path / "silent.mp4")
    _write(tmp_path / "a.mp4", _frames(5))
    _write(tmp_path / "b.mp4", _frames(5), audio_from=silent)
    _write(tmp_path / "c.mp4", _frames(5), audio_from=with_audio)
    assert [probe(tmp_path / n).has_audio for n in ("a.mp4", "b.mp4", "c.mp4")] == [False, False, True]


@pytest.mark.parametrize(("extension", "codec"), [(".mp4", "mpeg4"), (".webm", "vp9"), (".mkv", "ffv1")])
def test_opencv_fallback_without_ffmpeg(ffmpeg, tmp_path, monkeypatch, capsys, extension, codec):
    source = _ntsc_clip(ffmpeg, tmp_path / "source.mp4", audio=True)
    monkeypatch.setenv("DAV2_FFMPEG", "none")
    find_ffmpeg.cache_clear()
    odd = [frame[:47, :63] for frame in _frames(12)]
    for name in ("one", "two"):
        _write(tmp_path / f"{name}{extension}", odd, audio_from=source)
    stderr = capsys.readouterr().err
    if extension == ".mp4":
        assert stderr.count("mp4v") == 1  # warned once, not per file
    assert stderr.count("audio") == 1
    out = tmp_path / f"one{extension}"
    assert _leftovers(tmp_path, {source.name, out.name, f"two{extension}"}) == []
    assert len(_decode_all(out)) == 12
    info = probe(out)
    assert abs(info.fps - NTSC) <= Fraction(1, 1000)  # OpenCV stores 29.97 in an mp4: the file's rate is read
    assert (info.width, info.height) == (64, 48)  # padded: OpenCV would silently crop odd sizes to 62x46
    listing = _stream_listing(ffmpeg, out)
    assert listing.video_codec == codec and listing.audio_codecs == ()


def test_opencv_fallback_gray16_ffv1_is_bit_exact(ffmpeg, tmp_path, no_ffmpeg):
    depth = [np.random.default_rng(i).integers(0, 65536, (48, 64), dtype=np.uint16) for i in range(3)]
    out = tmp_path / "depth.mkv"
    _write(out, depth, fps=25, pix_fmt_in="gray16le")
    raw = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "gray16le", "-"],
        check=True, capture_output=True,
    ).stdout
    np.testing.assert_array_equal(np.frombuffer(raw, "<u2").reshape(-1, 48, 64), np.stack(depth))


def test_exception_inside_writer_leaves_nothing(ffmpeg, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="model crashed"):
        with VideoWriter(out, width=64, height=48, fps=NTSC) as writer:
            for frame in _frames(3):
                writer.write(frame)
            raise RuntimeError("model crashed")
    assert list(tmp_path.iterdir()) == []

    out.write_bytes(b"yesterday's result")
    with pytest.raises(RuntimeError):
        with VideoWriter(out, width=64, height=48, fps=NTSC) as writer:
            writer.write(next(_frames(1)))
            raise RuntimeError("again")
    assert out.read_bytes() == b"yesterday's result"  # a failed run never replaces a finished file
    assert _leftovers(tmp_path, {out.name}) == []


def test_closing_without_frames_is_an_error(ffmpeg, tmp_path):
    with pytest.raises(UserError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", width=64, height=48, fps=25):
            pass
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_shape_is_refused(ffmpeg, tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(tmp_path / "x.mp4", width=64, height=48, fps=25) as writer:
            writer.write(np.zeros((48, 64), np.uint8))
    assert list(tmp_path.iterdir()) == []


def _fake_ffmpeg(tmp_path, script):
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    return fake


@pytest.mark.skipif(os.name == "nt", reason="the stand-in ffmpeg is a shell script")
def test_ffmpeg_dying_mid_stream_is_a_user_error(tmp_path, monkeypatch):
    fake = _fake_ffmpeg(
        tmp_path, 'echo "[enc:libx264 @ 0x1] Encoder exploded" >&2\necho "Conversion failed!" >&2\nexit 1\n'
    )
    monkeypatch.setenv("DAV2_FFMPEG", str(fake))
    find_ffmpeg.cache_clear()
    out = tmp_path / "out" / "depth.mp4"
    with pytest.raises(UserError, match=re.escape(f"{out}: ffmpeg failed (Encoder exploded)")):
        with VideoWriter(out, width=640, height=480, fps=25) as writer:
            for _ in range(50):  # far more than a pipe buffer holds: the write itself breaks
                writer.write(np.zeros((480, 640, 3), np.uint8))
    assert list(out.parent.iterdir()) == []


@pytest.mark.skipif(os.name == "nt", reason="the stand-in ffmpeg is a shell script")
def test_ffmpeg_failing_at_the_end_is_a_user_error(tmp_path, monkeypatch):
    fake = _fake_ffmpeg(tmp_path, 'cat > /dev/null\necho "[out#0/mp4 @ 0x2] No space left on device" >&2\nexit 1\n')
    monkeypatch.setenv("DAV2_FFMPEG", str(fake))
    find_ffmpeg.cache_clear()
    out = tmp_path / "out" / "depth.mp4"
    with pytest.raises(UserError, match="ffmpeg failed \\(No space left on device\\)"):
        _write(out, _frames(3))
    assert list(out.parent.iterdir()) == []


def test_bad_targets_are_user_errors(ffmpeg, tmp_path):
    with pytest.raises(UserError, match=r"unsupported video extension '\.avi' \(use \.mp4, \.webm, \.mkv\)"):
        VideoWriter(tmp_path / "out.avi", width=64, height=48, fps=25)
    with pytest.raises(UserError, match="needs lossless FFV1"):
        VideoWriter(tmp_path / "out.mp4", width=64, height=48, fps=25, pix_fmt_in="gray16le")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    target = blocker / "out.mp4"
    with pytest.raises(UserError, match=re.escape(str(target))):
        VideoWriter(target, width=64, height=48, fps=25)
    with pytest.raises(UserError, match="cannot open video"):
        VideoWriter(tmp_path / "out.mp4", width=64, height=48, fps=25, audio_from=tmp_path / "missing.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_find_ffmpeg_order_and_cache(ffmpeg, tmp_path, monkeypatch):
    monkeypatch.setenv("DAV2_FFMPEG", "none")
    assert find_ffmpeg() == ffmpeg  # cached from the fixture: the environment is read once
    find_ffmpeg.cache_clear()
    assert find_ffmpeg() is None
    monkeypatch.setenv("DAV2_FFMPEG", str(tmp_path / "nowhere"))
    find_ffmpeg.cache_clear()
    with pytest.raises(UserError, match="DAV2_FFMPEG"):
        find_ffmpeg()
    monkeypatch.setenv("DAV2_FFMPEG", ffmpeg)
    find_ffmpeg.cache_clear()
    assert find_ffmpeg() == ffmpeg


@pytest.mark.parametrize(("start", "end", "every"), [(0, None, 1), (2, 9, 3), (5, 6, 1), (4, None, 5), (11, 30, 2)])
def test_both_readers_and_the_count_follow_one_selection(ffmpeg, tmp_path, start, end, every):
    frames = list(_frames(12))
    _write(tmp_path / "clip.mkv", frames, fps=25)
    folder = tmp_path / "sequence"
    folder.mkdir()
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"f{index}.png"), frame)
    selection = FrameSelection(start, end, every)
    wanted = [index for index in range(12) if selection.includes(index)]
    assert [index for index, _ in iter_frames(tmp_path / "clip.mkv", start=start, end=end, every=every)] == wanted
    assert [index for index, _ in SequenceReader(folder, start=start, end=end, every=every)] == wanted
    assert selection.count(12) == len(wanted)
