"""A folder of numbered images is one video: natural order, a rate the user gives, damage ends it cleanly."""

from fractions import Fraction

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import synthetic_photo

import dav2_cli
from dav2_cli.cli import main
from dav2_cli.media.frame_sequence import frame_file_name, frame_files, probe_sequence, sequence_files
from dav2_cli.media.video_probe import probe


def dav2(*args):
    return CliRunner().invoke(main, ["video", *map(str, args)], catch_exceptions=False)


def write_sequence(folder, count):
    folder.mkdir()
    for number in range(1, count + 1):  # unpadded: f1, f2, ..., f10 must not sort as f1, f10, f2
        cv2.imwrite(str(folder / f"f{number}.png"), synthetic_photo(48, 64, seed=number))
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"")
    return folder


def test_frames_are_taken_in_natural_order(tmp_path):
    folder = write_sequence(tmp_path / "shot", 11)
    assert [path.name for path in sequence_files(folder)] == [f"f{n}.png" for n in range(1, 12)]
    info = probe_sequence(folder, Fraction(24))
    assert (info.width, info.height, info.frame_count, info.fps, info.has_audio) == (64, 48, 11, 24, False)


def test_a_sequence_becomes_a_video_at_the_rate_given(tmp_path, vits_checkpoint):
    folder = write_sequence(tmp_path / "shot", 10)
    out = tmp_path / "depth.mkv"
    result = dav2(folder, "--fps", "24", "-o", out, "-m", vits_checkpoint, "--input-size", 28)
    assert result.exit_code == 0, result.output
    info = probe(out)
    assert (info.frame_count, info.fps, info.width, info.height) == (10, 24, 64, 48)


def test_each_frame_of_a_sequence_is_its_own_image_in_order(tmp_path, vits_checkpoint):
    folder = write_sequence(tmp_path / "shot", 10)
    result = dav2(folder, "--fps", "24", "--format", "npy", "-o", tmp_path / "frames", "-m", vits_checkpoint,
                  "--input-size", 28, "--dtype", "float32", "--batch-size", 1, "--every", 3)
    assert result.exit_code == 0, result.output
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32")
    for output_index, number in enumerate((1, 4, 7, 10)):
        expected = dav2_cli.predict(model, cv2.imread(str(folder / f"f{number}.png")), 28)
        np.testing.assert_array_equal(np.load(tmp_path / "frames" / f"frame_{output_index:06d}.npy"), expected)


def test_a_sequence_needs_a_rate(tmp_path):
    folder = write_sequence(tmp_path / "shot", 3)
    result = dav2(folder, "-o", tmp_path / "d.mkv")
    assert result.exit_code == 2 and "--fps" in result.output
    assert not (tmp_path / "d.mkv").exists()


@pytest.mark.parametrize("damage", [b"", b"\x89PNG\r\n\x1a\n garbage"])
def test_a_damaged_frame_ends_the_video_with_the_frames_before_it(tmp_path, vits_checkpoint, damage):
    folder = write_sequence(tmp_path / "shot", 6)
    (folder / "f4.png").write_bytes(damage)
    out = tmp_path / "depth.mkv"
    result = dav2(folder, "--fps", "24", "-o", out, "-m", vits_checkpoint, "--input-size", 28)
    assert result.exit_code == 1
    assert "decoding stopped at frame 3 of 6" in result.stderr and "3 frames before it" in result.stderr
    assert probe(out).frame_count == 3


def test_frame_names_go_past_frame_999999_and_read_back_in_order(tmp_path):
    numbers = [0, 9, 999_998, 999_999, 1_000_000, 1_000_001, 12_345_678]
    names = [frame_file_name(number, ".png") for number in numbers]
    assert names[:2] == ["frame_000000.png", "frame_000009.png"]
    assert names[4] == "frame_1000000.png"
    assert len(set(names)) == len(names)
    folder = tmp_path / "frames"
    folder.mkdir()
    for number, name in zip(reversed(numbers), reversed(names)):  # written out of order on purpose
        cv2.imwrite(str(folder / name), synthetic_photo(8, 8, seed=number % 97))
        (folder / name).with_suffix(".json").write_text("{}")  # a sidecar beside each frame
    (folder / "frame_12.png").write_bytes(b"")  # not a dav2 frame name (fewer than six digits)
    assert [path.name for path in sequence_files(folder) if path.name != "frame_12.png"] == names
    written = frame_files(folder)
    assert [path.name for path in written if path.suffix == ".png"] == names
    assert len(written) == 2 * len(names)  # the sidecars are the run's files too, found for --overwrite
