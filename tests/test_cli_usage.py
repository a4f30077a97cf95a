"""The command line's own mistakes and texts: each small slip is one clean line with a documented exit code, and
the help says what each flag takes."""

import os
import pty
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest
from click.testing import CliRunner

from dav2_cli.cli import main


def help_text(*command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["image", "folder", "video"])
def test_help_shows_no_empty_bounds(command):
    text = help_text(command)
    assert "--cx" in text and "None" not in text


def dav2_process(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "dav2_cli", *map(str, args)], **kwargs)


@pytest.fixture
def photo(tmp_path, make_photo):
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), make_photo(40, 56))
    return path


@pytest.mark.parametrize("args", [["models"], ["models", "path"], ["--version"], ["--help"], ["image", "--help"]])
def test_a_reader_that_stops_early_leaves_exit_0_and_nothing_on_stderr(args):
    reading, writing = os.pipe()
    os.close(reading)  # the reader is gone before anything is written, as `| head -1` is after its line
    try:
        result = dav2_process(*args, stdout=writing, stderr=subprocess.PIPE)
    finally:
        os.close(writing)
    assert (result.returncode, result.stderr) == (0, b"")


def test_image_bytes_for_a_terminal_are_a_usage_error(photo, vits_checkpoint):
    screen, terminal = pty.openpty()
    try:
        result = dav2_process("image", photo, "-o", "-", "-m", vits_checkpoint, "--input-size", 28, stdout=terminal,
                              stderr=subprocess.PIPE)
        os.set_blocking(screen, False)
        try:
            shown = os.read(screen, 1 << 16)
        except (BlockingIOError, OSError):  # nothing was written to the terminal
            shown = b""
    finally:
        os.close(screen)
        os.close(terminal)
    assert result.returncode == 2 and b"terminal" in result.stderr
    assert shown == b""


def invoke_and_tell_if_torch_loaded(*args) -> tuple[int, bool, str]:
    code = ("import sys; from click.testing import CliRunner; from dav2_cli.cli import main; "
            f"r = CliRunner().invoke(main, {[str(arg) for arg in args]!r}); "
            "print(r.exit_code, 'torch' in sys.modules); print(r.output)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    first, *rest = result.stdout.splitlines()
    exit_code, torch_loaded = first.split()
    return int(exit_code), torch_loaded == "True", "\n".join(rest)


@pytest.mark.parametrize("command,name", [("image", "missing.jpg"), ("video", "missing.mp4"),
                                          ("folder", "missing")])
def test_a_missing_input_is_said_before_torch_is_imported(tmp_path, command, name):
    exit_code, torch_loaded, output = invoke_and_tell_if_torch_loaded(command, tmp_path / name)
    assert (exit_code, torch_loaded) == (1, False), output
    assert output.strip() == f"dav2: error: {tmp_path / name}: no such file or folder"


@pytest.mark.parametrize("command,name", [("image", "x.png"), ("video", "x.mp4"), ("video", "frames/")])
def test_an_output_under_a_file_is_refused_before_torch_is_imported(tmp_path, photo, command, name):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    extra = ["--format", "npy"] if name.endswith("/") else []
    exit_code, torch_loaded, output = invoke_and_tell_if_torch_loaded(command, photo, "-o",
                                                                      f"{tmp_path / 'notes.txt'}/{name}", *extra)
    assert (exit_code, torch_loaded) == (1, False), output
    assert output.strip() == f"dav2: error: {tmp_path / 'notes.txt'}: exists and is not a folder"


def test_image_takes_quiet_like_the_other_commands(photo, vits_checkpoint, tmp_path):
    result = CliRunner().invoke(main, ["image", str(photo), "-q", "-o", str(tmp_path / "d.npy"), "-m",
                                       str(vits_checkpoint), "--input-size", "28", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d.npy").is_file()
    for command in ("image", "folder", "video"):
        assert "-q, --quiet" in help_text(command)


def test_verbose_names_a_video_model_as_one():
    from dav2_cli.jobs.options import loaded_model_line
    from dav2_cli.model.config import ModelConfig, VideoModelConfig

    shape = dict(width=384, blocks=12, mlp_hidden=1536, swiglu=False, reassembly_channels=(48, 96, 192, 384),
                 fusion_channels=64)
    video = SimpleNamespace(config=VideoModelConfig(**shape), source="v.pth", precision="float32")
    image = SimpleNamespace(config=ModelConfig(**shape), source="i.pth", precision="float32")
    assert loaded_model_line(video, "cpu").startswith("model Video Depth Anything vits (relative")
    assert loaded_model_line(image, "cpu").startswith("model vits (relative")


def test_a_video_output_that_is_the_input_under_another_name_is_refused(tmp_path):
    from dav2_cli.errors import UsageError
    from dav2_cli.jobs.paths import is_same_file
    from dav2_cli.jobs.plan import plan_output

    source = tmp_path / "clip.mp4"
    source.write_bytes(b"a video")
    other_name = tmp_path / "link.mp4"
    os.link(source, other_name)  # what a case-insensitive file system does with CLIP.MP4, made here by a link
    assert is_same_file(source, other_name) and not is_same_file(source, tmp_path / "new.mp4")
    with pytest.raises(UsageError, match="is the input video"):
        plan_output(source, str(other_name), "color")


def test_folder_help_lists_the_extensions_a_folder_scan_takes():
    from dav2_cli.media.images import IMAGE_EXTENSIONS

    assert f"({' '.join(e[1:] for e in IMAGE_EXTENSIONS)}, any case)" in " ".join(help_text("folder").split())


def test_a_folder_run_leaves_depth_maps_dav2_wrote_beside_their_images(tmp_path, make_photo):
    from dav2_cli.jobs.plan import plan_folder
    from dav2_cli.outputs import metadata, png

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), make_photo(40, 56))
    description = metadata.describe(model="vits", metric=False, input_size=504, width=56, height=40, source="a.png")
    picture = make_photo(40, 56)
    (folder / "a_depth.png").write_bytes(png.encode(picture, png.description_chunks(description)))
    cv2.imwrite(str(folder / "house_depth.png"), picture)  # the user's own photo, named so: still an input
    items, problems = plan_folder(folder, tmp_path / "out", "npy", recursive=True)
    assert sorted(Path(item.source).name for item in items) == ["a.png", "house_depth.png"] and not problems


def test_help_stays_free_of_numpy_opencv_and_torch():
    code = ("import sys; from click.testing import CliRunner; from dav2_cli.cli import main; "
            "[CliRunner().invoke(main, [*c, '--help']) for c in ([], ['image'], ['folder'], ['video'], ['bench'])]; "
            "print(sorted(m for m in ('numpy', 'cv2', 'torch') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
