"""`dav2 folder` end to end: which files are inputs, where outputs go, batching, lists, shards, kinds of images."""

import struct
import zlib

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import dav2_cli
from dav2_cli.cli import main
from dav2_cli.pipeline import SizeBatcher

SIZE = "56"  # the smallest sensible model input: these tests are about files, not depth quality


def dav2(*args):
    args = [str(a) for a in args]
    if "--input-size" not in args:
        args += ["--input-size", SIZE]
    args += ["--device", "cpu", "--dtype", "float32"]  # exact everywhere: `auto` picks bf16 on some CPUs
    return CliRunner().invoke(main, args, catch_exceptions=False)


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def files_under(folder):
    """Depth files under `folder`, without the .json sidecars that describe npy files."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.suffix != ".json")


@pytest.fixture(scope="module")
def model(vits_checkpoint):
    return dav2_cli.load_model(vits_checkpoint, "cpu", "float32")


def test_hidden_check_command_mirrors_the_tree_with_float32_depth_of_each_image(tmp_path, make_photo,
                                                                                 vits_checkpoint, model):
    source = tmp_path / "DIR"
    photos = {"a.jpg": make_photo(60, 80, 1), "sub/b.png": make_photo(120, 160, 2),
              "sub/deeper/c.PNG": make_photo(90, 120, 3)}
    for name, photo in photos.items():
        write(source / name, photo)
    out = tmp_path / "OUT"
    result = dav2("folder", source, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--input-size", "280")
    assert result.exit_code == 0, result.output
    assert files_under(out) == ["a.npy", "sub/b.npy", "sub/deeper/c.npy"]
    for name in photos:
        depth = np.load(out / (name.rsplit(".", 1)[0] + ".npy"))
        image = cv2.imread(str(source / name))
        assert depth.dtype == np.float32 and depth.shape == image.shape[:2]
        expected = dav2_cli.predict(model, image, 280)
        np.testing.assert_allclose(depth, expected, rtol=0, atol=1e-5 * np.ptp(expected))
    assert result.stderr.strip().splitlines()[-1] == "dav2: done 3, skipped 0, failed 0"


def test_inputs_are_images_by_extension_any_case_hidden_and_other_files_ignored(tmp_path, make_photo,
                                                                                  vits_checkpoint):
    source = tmp_path / "photos"
    for name in ["a.JPG", "b.jpeg", "c.Tiff", "d.bmp", "e.webp", "f.tif", "deep/g.png"]:
        write(source / name, make_photo(60, 80))
    write(source / ".hidden.png", make_photo(60, 80))
    write(source / ".cache" / "h.png", make_photo(60, 80))
    (source / "notes.txt").write_text("not an image")
    (source / "clip.mp4").write_bytes(b"\x00" * 100)
    result = dav2("folder", source, "-m", vits_checkpoint, "--format", "gray")
    assert result.exit_code == 0, result.output
    out = tmp_path / "photos_depth"  # the default: DIR_depth beside DIR
    assert files_under(out) == ["a.png", "b.png", "c.png", "d.png", "deep/g.png", "e.png", "f.png"]
    assert "notes" not in result.output and "clip" not in result.output


def test_no_recursive_stays_at_the_top(tmp_path, make_photo, vits_checkpoint):
    write(tmp_path / "in" / "top.png", make_photo(60, 80))
    write(tmp_path / "in" / "sub" / "low.png", make_photo(60, 80))
    assert dav2("folder", tmp_path / "in", "-o", tmp_path / "out", "-m", vits_checkpoint, "--no-recursive",
                "--format", "npy").exit_code == 0
    assert files_under(tmp_path / "out") == ["top.npy"]


def test_output_inside_the_input_is_never_read_back_as_input(tmp_path, make_photo, vits_checkpoint):
    source = tmp_path / "in"
    write(source / "a.png", make_photo(60, 80))
    write(source / "sub" / "b.png", make_photo(60, 80))
    out = source / "depth"
    for _ in range(2):  # the second run would find the first run's PNGs if it looked inside OUT
        result = dav2("folder", source, "-o", out, "-m", vits_checkpoint)
        assert result.exit_code == 0, result.output
        assert "done 2, skipped 0, failed 0" in result.stderr
    assert files_under(out) == ["a.png", "sub/b.png"]


def test_output_folder_equal_to_the_input_folder_is_refused(tmp_path, make_photo, vits_checkpoint):
    write(tmp_path / "in" / "a.png", make_photo(60, 80))
    result = dav2("folder", tmp_path / "in", "-o", tmp_path / "in", "-m", vits_checkpoint)
    assert result.exit_code == 2 and "input folder" in result.stderr
    assert files_under(tmp_path / "in") == ["a.png"]


def test_same_names_never_collide(tmp_path, make_photo, vits_checkpoint):
    source = tmp_path / "in"
    write(source / "x.jpg", make_photo(60, 80, 1))
    write(source / "x.png", make_photo(60, 80, 2))
    write(source / "one" / "x.png", make_photo(60, 80, 3))
    write(source / "two" / "x.png", make_photo(60, 80, 4))
    out = tmp_path / "out"
    assert dav2("folder", source, "-o", out, "-m", vits_checkpoint, "--format", "npy").exit_code == 0
    assert files_under(out) == ["one/x.npy", "two/x.npy", "x.jpg.npy", "x.png.npy"]
    assert not np.array_equal(np.load(out / "one" / "x.npy"), np.load(out / "two" / "x.npy"))


def test_batched_results_equal_one_at_a_time(tmp_path, make_photo, vits_checkpoint):
    source = tmp_path / "in"
    sizes = [(60, 80), (60, 80), (90, 120), (60, 80), (90, 120), (70, 70), (60, 80)]
    for index, (height, width) in enumerate(sizes):
        write(source / f"{index}.png", make_photo(height, width, seed=index))
    runs = {}
    for batch_size in (1, 4):
        out = tmp_path / f"out{batch_size}"
        result = dav2("folder", source, "-o", out, "-m", vits_checkpoint, "--format", "npy",
                      "--batch-size", batch_size)
        assert result.exit_code == 0, result.output
        runs[batch_size] = {name: np.load(out / name) for name in files_under(out)}
    assert sorted(runs[4]) == [f"{i}.npy" for i in range(len(sizes))]
    for name, single in runs[1].items():
        assert runs[4][name].shape == single.shape
        # a batched matmul may sum in another order: equal to float32 rounding, not necessarily bit for bit
        np.testing.assert_allclose(runs[4][name], single, rtol=0, atol=1e-5 * np.ptp(single))


def test_size_batcher_groups_by_size_and_never_holds_a_full_batch():
    batcher = SizeBatcher(3)
    sizes = ["a", "a", "a", "b", "a", "b", "c", "a"]
    batches = []
    for index, size in enumerate(sizes):
        batches += batcher.add(size, index)
        assert batcher.waiting() < 3
    batches += batcher.flush()
    # a full group goes at once; when 3 wait in mixed sizes, the largest group goes; the rest at the end
    assert batches == [[0, 1, 2], [3, 5], [4, 7], [6]]


def test_a_txt_list_names_inputs_relative_to_its_folder(tmp_path, make_photo, vits_checkpoint):
    write(tmp_path / "set" / "a.png", make_photo(60, 80))
    write(tmp_path / "set" / "sub" / "b.jpg", make_photo(60, 80))
    write(tmp_path / "set" / "unlisted.png", make_photo(60, 80))
    write(tmp_path / "elsewhere" / "c.png", make_photo(60, 80))
    listing = tmp_path / "set" / "list.txt"
    listing.write_text("# chosen frames\n\na.png\n  sub/b.jpg  \n../elsewhere/c.png\nmissing.png\n")
    result = dav2("folder", listing, "-m", vits_checkpoint, "--format", "npy")
    assert result.exit_code == 1
    assert files_under(tmp_path / "set" / "list_depth") == ["a.npy", "c.npy", "sub/b.npy"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("dav2: error:")]
    assert len(errors) == 1 and "missing.png" in errors[0] and "no such file" in errors[0]
    assert "done 3, skipped 0, failed 1" in result.stderr


def test_kinds_of_images_all_give_depth_of_what_a_viewer_shows(tmp_path, make_photo, model, vits_checkpoint):
    photo = make_photo(60, 80, seed=7) // 64 * 64 + 32  # at most 64 colours, so a palette PNG holds it exactly
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    source = tmp_path / "in"
    write(source / "photo.png", photo)
    write(source / "deep16.png", photo.astype(np.uint16) * 257)
    write(source / "gray.png", gray)
    write(source / "gray16.png", gray.astype(np.uint16) * 257)
    write(source / "alpha.png", np.dstack([photo, np.full((60, 80), 7, np.uint8)]))
    (source / "palette.png").write_bytes(palette_png(photo))
    (source / "rotated.jpg").write_bytes(jpeg_with_orientation(photo, 6))
    (source / "png_named.jpg").write_bytes(cv2.imencode(".png", photo)[1].tobytes())  # decoded by content
    out = tmp_path / "out"
    result = dav2("folder", source, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--batch-size", 8)
    assert result.exit_code == 0, result.output
    depth = {path.stem: np.load(path) for path in out.iterdir() if path.suffix == ".npy"}
    reference = dav2_cli.predict(model, photo, 56)
    gray_reference = dav2_cli.predict(model, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), 56)
    tolerance = 1e-4 * np.ptp(reference)
    for name in ("photo", "deep16", "alpha", "palette", "png_named"):
        np.testing.assert_allclose(depth[name], reference, rtol=0, atol=tolerance, err_msg=name)
    for name in ("gray", "gray16"):
        np.testing.assert_allclose(depth[name], gray_reference, rtol=0, atol=tolerance, err_msg=name)
    # EXIF orientation 6: viewers turn the stored picture 90 degrees clockwise, and so must the depth
    upright = cv2.rotate(cv2.imdecode(np.frombuffer(cv2.imencode(".jpg", photo)[1], np.uint8), cv2.IMREAD_COLOR),
                         cv2.ROTATE_90_CLOCKWISE)
    assert depth["rotated"].shape == (80, 60)
    np.testing.assert_allclose(depth["rotated"], dav2_cli.predict(model, upright, 56), rtol=0, atol=tolerance)


def palette_png(image_bgr):
    """An 8-bit palette (colour type 3) PNG of `image_bgr` (at most 256 colours), written by hand: OpenCV can't."""
    rgb = image_bgr[:, :, ::-1].reshape(-1, 3)
    colours, indices = np.unique(rgb, axis=0, return_inverse=True)
    assert len(colours) <= 256
    height, width = image_bgr.shape[:2]
    rows = indices.reshape(height, width).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", colours.astype(np.uint8).tobytes()) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def jpeg_with_orientation(image_bgr, orientation):
    """OpenCV's JPEG of the image with an APP1 Exif segment (one IFD entry: Orientation) after the SOI marker."""
    jpeg = cv2.imencode(".jpg", image_bgr)[1].tobytes()
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    exif = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:]


@pytest.mark.parametrize("flag,bar", [("--progress", True), ("-q", False), (None, False)])
def test_progress_bar_only_when_asked_or_on_a_terminal_and_the_summary_always(tmp_path, make_photo,
                                                                              vits_checkpoint, flag, bar):
    write(tmp_path / "in" / "a.png", make_photo(60, 80))
    result = dav2("folder", tmp_path / "in", "-m", vits_checkpoint, *([flag] if flag else []))
    assert result.exit_code == 0, result.output
    assert ("100%" in result.stderr and "1/1" in result.stderr) == bar  # CliRunner's stderr is no terminal
    assert result.stderr.strip().splitlines()[-1] == "dav2: done 1, skipped 0, failed 0"


def test_dot_as_the_folder_gets_its_named_sibling_as_default_output(tmp_path, make_photo, vits_checkpoint,
                                                                   monkeypatch):
    write(tmp_path / "shots" / "a.png", make_photo(60, 80))
    monkeypatch.chdir(tmp_path / "shots")
    assert dav2("folder", ".", "-m", vits_checkpoint, "--format", "npy").exit_code == 0
    assert files_under(tmp_path / "shots_depth") == ["a.npy"]


@pytest.mark.parametrize("make,message,code", [(lambda p: None, "no such file or folder", 1),
                                               (lambda p: p.mkdir(), "no images found", 1),
                                               (lambda p: p.write_bytes(b"\x89PNG"), "is an image", 2)])
def test_nothing_to_do_is_one_line(tmp_path, vits_checkpoint, make, message, code):
    target = tmp_path / "thing.png"
    make(target)
    result = dav2("folder", target, "-m", vits_checkpoint)
    assert result.exit_code == code and message in result.stderr and result.stderr.count("\n") == 1
