"""--stereo end to end: synthetic scenes given with --depth (a near square over a far plane), names players
detect, the description `dav2 info` prints, folders, and videos that keep their audio, count and rate."""

import json
import subprocess
from fractions import Fraction

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from dav2_cli.cli import main
from dav2_cli.cli import stereo_flags
from dav2_cli.depth import stereo as stereo_geometry
from dav2_cli.jobs import stereo as stereo_job
from dav2_cli.media import video_probe
from dav2_cli.media.video_probe import find_ffmpeg, probe
from dav2_cli.media.video_read import iter_frames
from dav2_cli.media.video_write import VideoWriter
from dav2_cli.outputs import stereo_layouts

HEIGHT, WIDTH = 90, 160
SQUARE = (slice(30, 60), slice(60, 100))


def dav2(*args):
    return CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)


def coded_scene(folder):
    """A picture whose pixels say which column they came from (blue + 256 green) and whether they are the square
    (red 255), with its depth: a plain 16-bit PNG of a relative model's kind (larger = nearer)."""
    cols = np.broadcast_to(np.arange(WIDTH), (HEIGHT, WIDTH))
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, :, 0] = cols % 256
    image[:, :, 1] = cols // 256
    image[SQUARE + (2,)] = 255
    depth = np.full((HEIGHT, WIDTH), 1000, dtype=np.uint16)
    depth[SQUARE] = 30000
    cv2.imwrite(str(folder / "scene.png"), image)
    cv2.imwrite(str(folder / "scene_depth16.png"), depth)
    return folder / "scene.png", folder / "scene_depth16.png"


def shifts(view):
    return np.arange(view.shape[1]) - (view[:, :, 0].astype(np.int64) + 256 * view[:, :, 1].astype(np.int64))


def test_the_command_line_names_what_the_modules_hold():
    assert stereo_flags.LAYOUT_CHOICES == stereo_layouts.LAYOUTS
    assert stereo_flags.ANAGLYPH_CHOICES == stereo_layouts.ANAGLYPHS
    assert (stereo_job.DEFAULT_DIVERGENCE, stereo_job.DEFAULT_CONVERGENCE, stereo_job.MAX_DIVERGENCE) == (
        stereo_geometry.DEFAULT_DIVERGENCE, stereo_geometry.DEFAULT_CONVERGENCE, stereo_geometry.MAX_DIVERGENCE)


@pytest.mark.parametrize("divergence, convergence", [(None, None), (6.0, 0.2)])
def test_a_given_depth_map_gives_the_formula_s_disparity(tmp_path, divergence, convergence):
    image, depth = coded_scene(tmp_path)
    extra = [] if divergence is None else ["--divergence", divergence, "--convergence", convergence]
    result = dav2("image", image, "--depth", depth, "--stereo", "sbs", *extra)
    assert result.exit_code == 0, result.output
    out = tmp_path / "scene_LRF_Full_SBS.png"
    picture = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (HEIGHT, 2 * WIDTH, 3)
    left, right = picture[:, :WIDTH], picture[:, WIDTH:]
    d = 2.0 if divergence is None else divergence
    c = 0.5 if convergence is None else convergence
    per_eye = d / 100 * WIDTH / 2 * (1.0 - c)  # the square is the nearest (D = 1)
    square_left, square_right = left[:, :, 2] == 255, right[:, :, 2] == 255
    assert square_left.sum() == square_right.sum() == 30 * 40  # moved whole, never stretched into a hole
    assert np.abs(shifts(left)[square_left] - per_eye).max() <= 1
    assert np.abs(shifts(right)[square_right] + per_eye).max() <= 1
    measured = shifts(left)[square_left].mean() - shifts(right)[square_right].mean()
    assert abs(measured - d / 100 * WIDTH * (1.0 - c)) <= 1
    # The near square moves right in the left eye, left in the right eye, and more than the far plane.
    background_left = np.median(shifts(left)[~square_left])
    assert shifts(left)[square_left].mean() > background_left
    assert shifts(right)[square_right].mean() < np.median(shifts(right)[~square_right])
    # No unfilled pixel: every pixel shows a real source pixel (a hole would keep no valid column code).
    for view in (left, right):
        code = view[:, :, 0].astype(np.int64) + 256 * view[:, :, 1].astype(np.int64)
        assert ((code >= 0) & (code < WIDTH)).all() and np.isin(view[:, :, 2], (0, 255)).all()


def test_metres_with_their_description_are_turned_into_nearness(tmp_path):
    image, _ = coded_scene(tmp_path)
    metres = np.full((HEIGHT, WIDTH), 8.0, dtype=np.float32)
    metres[SQUARE] = 1.0
    np.save(tmp_path / "metres.npy", metres)
    (tmp_path / "metres.npy.json").write_text(json.dumps({"model": "metric-indoor-vits", "kind": "metric",
                                                          "larger": "farther", "max_depth": 20.0}))
    result = dav2("image", image, "--depth", tmp_path / "metres.npy", "--stereo", "cross", "-o", tmp_path / "x.png")
    assert result.exit_code == 0, result.output
    picture = cv2.imread(str(tmp_path / "x.png"))
    right, left = picture[:, :WIDTH], picture[:, WIDTH:]  # cross: the right eye on the left
    assert np.abs(shifts(left)[left[:, :, 2] == 255] - 0.02 * WIDTH / 2 * 0.5).max() <= 1  # near: D = 1
    assert np.abs(shifts(right)[right[:, :, 2] == 255] + 0.02 * WIDTH / 2 * 0.5).max() <= 1


@pytest.mark.parametrize("layout, name, size", [
    ("sbs", "_LRF_Full_SBS.png", (2 * WIDTH, HEIGHT)), ("half-sbs", "_LR.png", (WIDTH, HEIGHT)),
    ("tb", "_TBF_fulltb.png", (WIDTH, 2 * HEIGHT)), ("half-tb", "_TB.png", (WIDTH, HEIGHT)),
    ("cross", "_RLF_cross.png", (2 * WIDTH, HEIGHT)), ("anaglyph", "_redcyan_dubois.png", (WIDTH, HEIGHT))])
def test_layouts_have_player_names_and_exact_sizes(tmp_path, layout, name, size):
    image, depth = coded_scene(tmp_path)
    result = dav2("image", image, "--depth", depth, "--stereo", layout)
    assert result.exit_code == 0, result.output
    picture = cv2.imread(str(tmp_path / f"scene{name}"))
    assert (picture.shape[1], picture.shape[0]) == size


@pytest.mark.parametrize("kind", ["dubois", "gray"])
def test_an_anaglyph_is_the_mix_of_the_two_eyes(tmp_path, kind):
    image, depth = coded_scene(tmp_path)
    assert dav2("image", image, "--depth", depth, "--stereo", "sbs").exit_code == 0
    result = dav2("image", image, "--depth", depth, "--anaglyph", kind, "-o", tmp_path / "ana.png")
    assert result.exit_code == 0, result.output
    sbs = cv2.imread(str(tmp_path / "scene_LRF_Full_SBS.png"))
    anaglyph = cv2.imread(str(tmp_path / "ana.png"))
    assert np.array_equal(anaglyph, stereo_layouts.compose_anaglyph(sbs[:, :WIDTH], sbs[:, WIDTH:], kind))


def test_info_prints_how_a_stereo_picture_was_made(tmp_path):
    image, depth = coded_scene(tmp_path)
    out = tmp_path / "s.jpg"
    assert dav2("image", image, "--depth", depth, "--stereo", "half-tb", "--divergence", 3, "-o", out).exit_code == 0
    result = dav2("info", out)
    assert result.exit_code == 0, result.output
    for line in ("stereo_layout: half-tb", "divergence: 3.0", "convergence: 0.5", f"model: depth file {depth}"):
        assert line in result.output


def test_a_depth_file_dav2_wrote_renders_again_without_a_model(tmp_path):
    image, depth = coded_scene(tmp_path)
    assert dav2("image", image, "--depth", depth, "-o", tmp_path / "d.npy").exit_code == 0
    assert json.loads((tmp_path / "d.npy.json").read_text())["larger"] == "nearer"
    assert np.array_equal(np.load(tmp_path / "d.npy"), cv2.imread(str(depth), cv2.IMREAD_UNCHANGED).astype(np.float32))
    result = dav2("image", image, "--depth", tmp_path / "d.npy", "--stereo", "half-sbs")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "scene_LR.png").is_file()


@pytest.mark.parametrize("args, message, code", [
    (["--stereo", "sbs", "--format", "npy"], "not a depth map", 2),
    (["--divergence", "3"], "only with --stereo", 2),
    (["--stereo", "sbs", "--anaglyph", "gray"], "only with --stereo anaglyph", 2),
    (["--stereo", "sbs", "--divergence", "50"], "50", 2),
    (["--stereo", "sbs", "--side-by-side"], "--side-by-side", 2),
    (["--stereo", "sbs", "--invert"], "--invert", 2),
    (["--stereo", "sbs", "--near", "1", "--far", "5"], "--near", 2),
])
def test_impossible_requests_are_one_line(tmp_path, args, message, code):
    image, depth = coded_scene(tmp_path)
    result = CliRunner().invoke(main, ["image", str(image), "--depth", str(depth), *args])
    assert result.exit_code == code, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.png", "scene_depth16.png"]


def test_a_depth_map_of_another_size_is_refused(tmp_path):
    image, _ = coded_scene(tmp_path)
    np.save(tmp_path / "small.npy", np.ones((10, 10), dtype=np.float32))
    result = CliRunner().invoke(main, ["image", str(image), "--depth", str(tmp_path / "small.npy"), "--stereo", "sbs"])
    assert result.exit_code == 1 and "10x10" in result.output
    result = CliRunner().invoke(main, ["image", str(image), str(image), "--depth", str(tmp_path / "small.npy")])
    assert result.exit_code == 2 and "one image" in result.output


def test_a_folder_in_stereo_keeps_the_tree_with_player_names(tmp_path, vits_checkpoint, make_photo):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "a.jpg"), make_photo(56, 84))
    cv2.imwrite(str(photos / "sub" / "b.png"), make_photo(56, 84, seed=1))
    result = dav2("folder", photos, "--stereo", "half-sbs", "-m", vits_checkpoint, "--input-size", 112,
                  "--device", "cpu", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    out = tmp_path / "photos_3d"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a_LR.png", "sub/b_LR.png"]
    assert cv2.imread(str(out / "a_LR.png")).shape == (56, 84, 3)


def test_wide_full_sbs_is_warned_about():
    options = stereo_job.StereoOptions("sbs")
    assert "4096" in stereo_job.wide_frame_note(options, 2560, 1440)
    assert stereo_job.wide_frame_note(options, 1920, 1080) is None
    assert stereo_job.wide_frame_note(stereo_job.StereoOptions("half-sbs"), 3840, 2160) is None


# ------------------------------------------------------------------------------------------------ video


def write_clip(path, frames, fps, audio_from=None):
    with VideoWriter(path, width=frames[0].shape[1], height=frames[0].shape[0], fps=fps,
                     audio_from=audio_from) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def decode(path):
    return [frame for _, frame in iter_frames(path)]


def test_a_stereo_video_keeps_audio_frame_count_and_rate(tmp_path, vits_checkpoint, make_photo):
    audio = tmp_path / "a.wav"
    subprocess.run([find_ffmpeg(), "-v", "error", "-nostdin", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
                    "-y", str(audio)], check=True)
    photo = make_photo(48, 120)
    rate = Fraction(10000, 1001)  # 3 s at an NTSC-style rate: 30 frames
    frames = [np.ascontiguousarray(photo[:, i: i + 80]) for i in range(30)]
    source = write_clip(tmp_path / "film.mp4", frames, rate, audio_from=audio)
    result = dav2("video", source, "--stereo", "half-sbs", "-m", vits_checkpoint, "--input-size", 112,
                  "--device", "cpu", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    out = tmp_path / "film_LR.mp4"
    info = probe(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (80, 48, rate, True)
    assert len(decode(out)) == 30
    description = json.loads((tmp_path / "film_LR.mp4.json").read_text())
    assert (description["stereo_layout"], description["divergence"], description["frames"]) == ("half-sbs", 2.0, 30)
    assert "stereo_layout: half-sbs" in dav2("info", out).output


def test_a_static_scene_keeps_the_same_disparity_in_every_frame(tmp_path, vits_checkpoint, make_photo):
    frame = make_photo(48, 80, seed=3)
    source = write_clip(tmp_path / "still.mkv", [frame] * 8, Fraction(24))  # lossless in, lossless out
    result = dav2("video", source, "--stereo", "sbs", "--divergence", 10, "-o", tmp_path / "out.mkv", "-m",
                  vits_checkpoint,
                  "--input-size", 112, "--device", "cpu", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    decoded = decode(tmp_path / "out.mkv")
    assert len(decoded) == 8 and decoded[0].shape == (48, 160, 3)
    assert not np.array_equal(decoded[0][:, :80], decoded[0][:, 80:])  # the eyes do differ
    for later in decoded[1:]:
        assert np.array_equal(later, decoded[0])


def test_an_anaglyph_video_keeps_full_chroma(tmp_path, vits_checkpoint, make_photo):
    frames = [make_photo(48, 80, seed=4)] * 3
    source = write_clip(tmp_path / "c.mp4", frames, Fraction(25))
    result = dav2("video", source, "--anaglyph", "half-color", "-m", vits_checkpoint, "--input-size", 112,
                  "--device", "cpu", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert video_probe.list_streams(tmp_path / "c_redcyan_half-color.mp4").pixel_format == "yuv444p"


def test_video_refuses_what_stereo_cannot_use(tmp_path, vits_checkpoint, make_photo):
    source = write_clip(tmp_path / "c.mp4", [make_photo(48, 80)] * 2, Fraction(25))
    for args, message in ((["--normalize", "global"], "--normalize"), (["--format", "gray16"], "not a depth map")):
        result = CliRunner().invoke(main, ["video", str(source), "--stereo", "sbs", "-m", str(vits_checkpoint), *args])
        assert result.exit_code == 2 and message in result.output, result.output
