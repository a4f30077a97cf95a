"""Batch jobs never lose or half-write work: interrupts, resumes, shards, bad inputs and failing outputs."""

import errno
import os
import signal
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import signal_child

from dav2_cli.outputs.png import read_description as png_description
from dav2_cli.cli import main
from dav2_cli.errors import UserError
from dav2_cli.jobs.plan import parse_shard, plan_folder, take_shard
from dav2_cli.outputs import atomic
from dav2_cli.media import images


def depth_files(folder):
    """The depth maps in `folder`, without the .json sidecars that describe npy files."""
    return [path for path in folder.iterdir() if path.suffix != ".json"]


def dav2(*args):
    args = [str(a) for a in args]
    if "--input-size" not in args:
        args += ["--input-size", "56"]
    args += ["--device", "cpu", "--dtype", "float32"]  # exact everywhere: `auto` picks bf16 on some CPUs
    return CliRunner().invoke(main, args, catch_exceptions=False)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("dav2: error:")]


def photo_folder(folder, make_photo, count, size=(60, 80)):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        cv2.imwrite(str(folder / f"img{index:02d}.png"), make_photo(*size, seed=index))
    return folder


def leftovers(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(atomic.TEMP_SUFFIX)]


def encoded(ext, image):
    return cv2.imencode(ext, image)[1].tobytes()


# --- Ctrl-C, SIGTERM and resuming -------------------------------------------------------------------------------

def start_and_signal(source, out, checkpoint, signum):
    """`dav2 folder` in a child process, signalled while its third model call runs (two outputs are then written
    or being written), that call released at once; returns the exit code and stderr."""
    release = out.parent / "release"
    with signal_child.start(["folder", source, "-o", out, "-m", checkpoint, "--format", "npy", "--input-size",
                             "112", "--batch-size", "1"], hold_at=3, release=release) as child:
        child.process.send_signal(signum)
        assert child.wait_for_line("stopping"), child.stderr
        release.touch()
        return child.finish(), child.stderr


def test_ctrl_c_keeps_finished_outputs_and_skip_existing_finishes_exactly_the_rest(tmp_path, make_photo,
                                                                                    vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 20)
    out = tmp_path / "out"
    code, stderr = start_and_signal(source, out, vits_checkpoint, signal.SIGINT)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    finished = sorted(out.glob("*.npy"))
    assert len(finished) in (2, 3)  # the held call's image too if it ended within the grace, as it does here
    summary = stderr.strip().splitlines()[-1]
    assert summary.startswith(f"dav2: done {len(finished)}, skipped 0, failed 0, interrupted")
    assert not leftovers(out)
    for path in finished:
        assert np.load(path).shape == (60, 80)
    stamps = {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in finished}

    result = dav2("folder", source, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--input-size", "112",
                  "--skip-existing")
    assert result.exit_code == 0, result.output
    summary = result.stderr.strip().splitlines()[-1]
    assert summary == f"dav2: done {20 - len(finished)}, skipped {len(finished)}, failed 0"
    assert sorted(p.name for p in depth_files(out)) == [f"img{i:02d}.npy" for i in range(20)]
    for name, stamp in stamps.items():  # finished outputs were left alone, not rewritten
        assert ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) == stamp


def test_sigterm_stops_after_the_batch_in_hand_with_exit_143(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 10)
    out = tmp_path / "out"
    code, stderr = start_and_signal(source, out, vits_checkpoint, signal.SIGTERM)
    assert code == 143, stderr
    assert "terminated" in stderr.strip().splitlines()[-1]
    assert not leftovers(out) and len(list(depth_files(out))) in (2, 3)
    for path in depth_files(out):
        assert np.load(path).shape == (60, 80)


@pytest.mark.parametrize(("command", "signum", "code"), [("image", signal.SIGINT, 130),
                                                         ("folder", signal.SIGINT, 130),
                                                         ("folder", signal.SIGTERM, 143)])
def test_a_signal_in_a_forward_pass_that_never_ends_stops_the_job_at_once(tmp_path, make_photo, vits_checkpoint,
                                                                          command, signum, code):
    """A forward pass at a large size takes minutes: the job says it is stopping and ends without waiting for it,
    with the documented code and no file, whole or partial, for the image it was computing."""
    from dav2_cli.runtime.interrupts import STOPPING

    source = photo_folder(tmp_path / "in", make_photo, 3)
    out = tmp_path / "out"
    where = ["image", *sorted(source.iterdir()), "-o", f"{out}/"] if command == "image" else ["folder", source,
                                                                                               "-o", out]
    with signal_child.start([*where, "-m", vits_checkpoint, "--format", "npy", "--input-size", "56"],
                            hold_at=1) as child:  # never released
        child.process.send_signal(signum)
        assert child.wait_for_line(STOPPING), child.stderr
        assert child.finish() == code, child.stderr
    assert "Traceback" not in child.stderr and "error" not in child.stderr
    assert child.stderr.splitlines()[-1].startswith("dav2: done 0, skipped 0, failed 0, ")
    assert not out.exists() or not list(out.iterdir())


def test_skip_existing_when_everything_is_done_loads_no_model(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 2)
    out = tmp_path / "out"
    assert dav2("folder", source, "-o", out, "-m", vits_checkpoint, "--format", "npy").exit_code == 0
    # a checkpoint that cannot load proves the finished job never reached the model
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a checkpoint")
    result = dav2("folder", source, "-o", out, "-m", bogus, "--format", "npy", "--skip-existing")
    assert result.exit_code == 0 and result.stderr.strip() == "dav2: done 0, skipped 2, failed 0"


def test_image_skip_existing_leaves_finished_outputs_alone(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 2)
    out = tmp_path / "out"
    assert dav2("image", source / "img00.png", "-o", out / "img00.npy", "-m", vits_checkpoint).exit_code == 0
    before = (out / "img00.npy").stat().st_mtime_ns
    result = dav2("image", source / "img00.png", source / "img01.png", "-o", out, "--format", "npy",
                  "-m", vits_checkpoint, "--skip-existing")
    assert result.exit_code == 0, result.output
    assert (out / "img00.npy").stat().st_mtime_ns == before and (out / "img01.npy").is_file()


@pytest.mark.parametrize(("args", "reason"), [
    (["image", "x.jpg", "--format", "bogus"], "Invalid value for '--format'"),
    (["image"], "Missing argument 'INPUT...'"),
    (["video", "x.mp4", "--no-such-flag"], "No such option '--no-such-flag'"),
    (["folder", ".", "--shard", "5/4"], "K must be between 1 and N"),
    (["bogus"], "No such command 'bogus'"),
])
def test_a_command_line_click_rejects_is_one_error_line_and_exit_2(args, reason):
    result = CliRunner().invoke(main, args, prog_name="dav2")
    assert result.exit_code == 2
    assert result.stdout == ""
    line, = result.stderr.splitlines()  # one line, not click's usage block
    command = " ".join(["dav2", *args[:1]]) if args[0] != "bogus" else "dav2"
    assert line.startswith("dav2: error: ") and reason in line and line.endswith(f"(see `{command} --help`)")


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux file systems take names that are not UTF-8")
def test_a_file_name_that_is_not_utf8_is_described_with_escapes(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 1)
    odd = os.fsencode(source) + b"/caf\xe9.png"  # Latin-1 bytes, as older cameras and zip files name things
    with open(odd, "wb") as file:
        file.write((source / "img00.png").read_bytes())
    out = tmp_path / "out"
    result = dav2("folder", source, "-o", out, "-m", vits_checkpoint)
    assert result.exit_code == 0, result.output
    written = {name: out / name for name in os.listdir(out)}
    assert set(written) == {"img00.png", os.fsdecode(b"caf\xe9.png")}
    description = png_description(written[os.fsdecode(b"caf\xe9.png")].read_bytes())
    assert description["source"].endswith("caf\\xe9.png")  # the odd byte as an escape, readable anywhere


@pytest.mark.parametrize("where", ["output", "folder", "video", "model"])
def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path, make_photo, where, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "in.png"
    cv2.imwrite(str(photo), make_photo(40, 56))
    long = "q" * 300  # over the 255 bytes a name may have on Linux, macOS and Windows file systems
    args = {"output": ["image", photo, "-o", f"{long}.png"], "folder": ["folder", long],
            "video": ["video", f"{long}.mp4"], "model": ["image", photo, "-m", f"./{long}.pth"]}[where]
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line, = result.stderr.splitlines()
    assert line.startswith("dav2: error: ") and line.endswith("file name too long")


def ctrl_c():
    """What Python does when SIGINT arrives: run the handler installed for it."""
    signal.getsignal(signal.SIGINT)(signal.SIGINT, None)


def test_ctrl_c_inside_a_held_block_is_raised_after_it(pythons_ctrl_c):
    from dav2_cli.runtime.interrupts import GracefulStop, ctrl_c_held

    finished = False
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            ctrl_c()  # must not raise inside the block
            finished = True
    assert finished
    with GracefulStop() as stop:  # in a job, the first Ctrl-C only asks the job to stop
        with ctrl_c_held():
            ctrl_c()
        assert stop.requested and stop.exit_code == 130


def test_a_process_that_ignores_ctrl_c_still_ignores_it_after_a_held_block():
    """`nohup` or a script's background job: SIGINT ignored before the block stays ignored, and is not raised."""
    from dav2_cli.runtime.interrupts import ctrl_c_held

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with ctrl_c_held():
            ctrl_c()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# --- shards ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shard", ["0/3", "4/3", "1/0", "a/b", "2", "-1/3"])
def test_bad_shard_is_a_usage_error(tmp_path, shard):
    result = dav2("folder", tmp_path, "--shard", shard)
    assert result.exit_code == 2 and "--shard" in result.output


def test_shards_cover_every_input_exactly_once(tmp_path, make_photo):
    for index in range(11):
        (tmp_path / "in" / f"d{index % 3}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / f"d{index % 3}" / f"{index}.png").write_bytes(b"")  # planning never reads them
    items, _ = plan_folder(tmp_path / "in", tmp_path / "out", "npy", recursive=True)
    assert parse_shard(" 2 / 5 ") == (2, 5)
    for count in range(1, 7):
        shards = [take_shard(items, (k, count)) for k in range(1, count + 1)]
        covered = [item for shard in shards for item in shard]
        assert sorted(covered, key=lambda i: i.source) == sorted(items, key=lambda i: i.source)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_runs_together_write_every_output_once(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 5)
    out = tmp_path / "out"
    done = 0
    for k in (1, 2, 3):
        result = dav2("folder", source, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--shard", f"{k}/3")
        assert result.exit_code == 0, result.output
        done += int(result.stderr.split("done ")[1].split(",")[0])
    assert done == 5 and sorted(p.name for p in depth_files(out)) == [f"img{i:02d}.npy" for i in range(5)]


# --- bad inputs --------------------------------------------------------------------------------------------------

def huge_png(width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_bad_files_in_a_folder_are_named_once_and_the_rest_are_done(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 2)
    jpeg = encoded(".jpg", make_photo(60, 80))
    bad = {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "empty.jpg": b"",
        "text.jpg": b"just some words, not a picture\n",
        "huge.png": huge_png(100_000, 100_000),
    }
    for name, data in bad.items():
        (source / name).write_bytes(data)
    (source / "png_named.jpg").write_bytes(encoded(".png", make_photo(60, 80)))
    (source / "broken.png").symlink_to(tmp_path / "nowhere.png")
    (source / "loop.png").symlink_to(source / "loop.png")
    (source / "link.png").symlink_to(source / "img00.png")
    (source / "sub").mkdir()
    (source / "sub" / "up").symlink_to(source, target_is_directory=True)  # a folder loop the scan must not enter
    (source / "dir.jpg").mkdir()  # a folder with an image's name is not an input
    out = tmp_path / "out"
    result = dav2("folder", source, "-o", out, "-m", vits_checkpoint, "--format", "npy")
    assert result.exit_code == 1
    assert sorted(p.name for p in depth_files(out)) == ["img00.npy", "img01.npy", "link.npy", "png_named.npy"]
    errors = error_lines(result.stderr)
    named = [*bad, "broken.png", "loop.png"]
    assert len(errors) == len(named)
    for name in named:
        assert sum(f"{name}:" in line for line in errors) == 1, name
    reasons = "\n".join(errors)
    assert "100000x100000" in reasons and "megapixel" in reasons
    assert "empty file" in reasons and "broken symbolic link" in reasons and "symbolic links" in reasons
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == f"dav2: done 4, skipped 0, failed {len(named)}"


def test_a_folder_named_like_an_image_in_a_list_fails_cleanly(tmp_path, make_photo, vits_checkpoint):
    (tmp_path / "x.jpg").mkdir()
    cv2.imwrite(str(tmp_path / "ok.png"), make_photo(60, 80))
    (tmp_path / "list.txt").write_text("x.jpg\nok.png\n")
    result = dav2("folder", tmp_path / "list.txt", "-o", tmp_path / "out", "-m", vits_checkpoint)
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [f"dav2: error: {tmp_path / 'x.jpg'}: is a folder"]
    assert (tmp_path / "out" / "ok.png").is_file()


def test_a_subfolder_that_cannot_be_listed_is_named_and_the_rest_are_done(tmp_path, make_photo, vits_checkpoint,
                                                                           monkeypatch):
    source = photo_folder(tmp_path / "in", make_photo, 1)
    photo_folder(source / "locked", make_photo, 1)
    real_scandir = os.scandir

    def scandir(path="."):  # what a folder without read permission does, also for root
        if os.fspath(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(images.os, "scandir", scandir)
    result = dav2("folder", source, "-o", tmp_path / "out", "-m", vits_checkpoint, "--format", "npy")
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [f"dav2: error: {source / 'locked'}: permission denied"]
    assert result.stderr.strip().splitlines()[-1] == "dav2: done 1, skipped 0, failed 1"
    assert [p.name for p in depth_files((tmp_path / "out"))] == ["img00.npy"]


def test_unreadable_file_is_named_with_permission_denied(tmp_path, make_photo, vits_checkpoint, monkeypatch):
    source = photo_folder(tmp_path / "in", make_photo, 1)
    locked = source / "locked.png"
    locked.write_bytes(encoded(".png", make_photo(60, 80)))
    locked.chmod(0)

    # root reads a file whatever its mode, so the refusal the OS gives everyone else is given here by hand
    def refusing_open(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(images, "open", refusing_open, raising=False)
    result = dav2("folder", source, "-o", tmp_path / "out", "-m", vits_checkpoint)
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [f"dav2: error: {locked}: permission denied"]


def test_fuzzed_files_among_good_ones(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 3)
    rng = np.random.default_rng(6)
    seeds = [encoded(ext, make_photo(24, 32, seed=i)) for i, ext in enumerate([".png", ".jpg", ".bmp", ".tiff",
                                                                                ".webp"])]
    bad_names = []
    while len(bad_names) < 24:
        data = bytearray(seeds[len(bad_names) % len(seeds)])
        kind = len(bad_names) % 3
        if kind == 0:  # flip bytes in the header and the first rows
            for position in rng.integers(0, min(len(data), 200), 12):
                data[position] = rng.integers(0, 256)
        elif kind == 1:  # cut short
            data = data[: rng.integers(0, len(data) // 2)]
        else:  # noise behind a real signature
            data = data[:8] + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
        try:
            images.decode_image(bytes(data), "probe")
            continue  # the mutation left a readable image: not what this test needs
        except UserError:
            pass
        name = f"fuzz{len(bad_names):02d}{['.png', '.jpg', '.bmp', '.tif', '.webp'][len(bad_names) % 5]}"
        (source / name).write_bytes(bytes(data))
        bad_names.append(name)
    result = dav2("folder", source, "-o", tmp_path / "out", "-m", vits_checkpoint, "--format", "npy")
    assert result.exit_code == 1
    assert sorted(p.name for p in depth_files((tmp_path / "out"))) == ["img00.npy", "img01.npy", "img02.npy"]
    errors = error_lines(result.stderr)
    assert len(errors) == 24 and "Traceback" not in result.output
    for name in bad_names:
        assert sum(f"{name}:" in line for line in errors) == 1, name


VALID = {ext: encoded(ext, np.random.default_rng(1).integers(0, 256, (16, 24, 3), dtype=np.uint8))
         for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp")}


def decoded_or_user_error(data):
    try:
        image = images.decode_image(data, "fuzz")
    except UserError as exc:
        assert str(exc).startswith("fuzz: ")
        return
    assert isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
    assert image.dtype in (np.uint8, np.uint16) and image.size > 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_decode_or_fail_cleanly(data):
    decoded_or_user_error(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=8),
       st.integers(0, 4096))
def test_fuzz_mutated_images_decode_or_fail_cleanly(ext, flips, cut):
    data = bytearray(VALID[ext])
    for position, value in flips:
        data[position % len(data)] = value
    decoded_or_user_error(bytes(data[: max(cut, 1)] if cut < len(data) else data))


def test_a_folder_of_truncated_images_prints_dav2s_lines_and_nothing_from_the_decoders(tmp_path, make_photo,
                                                                                         vits_checkpoint):
    """libpng, libtiff and OpenCV's BMP reader print their own complaints on stderr, beside dav2's one line per
    file; a child process, because they write to the file descriptor, not through Python."""
    source = tmp_path / "in"
    source.mkdir()
    for ext in (".png", ".tiff", ".bmp", ".jpg", ".webp"):
        data = encoded(ext, make_photo(60, 80, seed=1))
        (source / f"cut{ext}").write_bytes(data[: len(data) // 2])
    cv2.imwrite(str(source / "whole.png"), make_photo(60, 80, seed=2))
    result = subprocess.run([sys.executable, "-m", "dav2_cli", "folder", str(source), "-o", str(tmp_path / "out"),
                             "-m", str(vits_checkpoint), "--input-size", "56", "--dtype", "float32", "-q"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and (tmp_path / "out" / "whole.png").is_file()
    lines = result.stderr.splitlines()
    assert len(lines) == 6 and all(line.startswith("dav2: ") for line in lines), result.stderr  # 5 + a summary
    assert sum("not a readable image" in line for line in lines) == 5


def png_chunk(kind: bytes, payload: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def with_chunks_after_header(png: bytes, *chunks: bytes) -> bytes:
    header_end = 8 + 12 + struct.unpack(">I", png[8:12])[0]
    return png[:header_end] + b"".join(chunks) + png[header_end:]


DESCRIPTIVE_CHUNKS = {  # what cameras, editors and old tools write beside the pixels
    "gamma, chromaticities, sRGB": [png_chunk(b"gAMA", struct.pack(">I", 45455)), png_chunk(b"sRGB", b"\x00"),
                                    png_chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000,
                                                                   15000, 6000))],
    "significant bits": [png_chunk(b"sBIT", b"\x05\x06\x05")],
    "a malformed colour profile": [png_chunk(b"iCCP", b"bogus\x00\x00" + zlib.compress(b"\x00" * 200))],
    "text with a wrong checksum": [png_chunk(b"tEXt", b"Comment\x00made by a careless writer", crc=0)],
}


@pytest.mark.parametrize("chunks", sorted(DESCRIPTIVE_CHUNKS))
@pytest.mark.parametrize("depth", [np.uint8, np.uint16])
def test_a_png_with_descriptive_chunks_decodes_as_opencv_decodes_it_without_libpngs_warnings(chunks, depth, capfd):
    pixels = np.random.default_rng(4).integers(0, np.iinfo(depth).max, (24, 32, 3), dtype=np.uint64).astype(depth)
    plain = encoded(".png", pixels)
    described = with_chunks_after_header(plain, *DESCRIPTIVE_CHUNKS[chunks])
    opencv_alone = cv2.imdecode(np.frombuffer(described, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    capfd.readouterr()  # whatever libpng said to OpenCV alone
    ours = images.decode_image(described, "described")
    assert capfd.readouterr().err == ""
    np.testing.assert_array_equal(ours, pixels)
    np.testing.assert_array_equal(ours, opencv_alone)


def test_a_png_keeps_its_exif_orientation_and_transparency_chunks():
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255
    exif = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<I", 0)
    rotated = with_chunks_after_header(encoded(".png", pixels), png_chunk(b"eXIf", exif))
    assert images.png_for_decoding(rotated) is rotated  # nothing to leave out
    np.testing.assert_array_equal(images.decode_image(rotated, "rotated"), cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE))


@pytest.mark.parametrize("damage", ["cut inside a chunk", "cut before IEND", "pixel data flipped"])
def test_a_png_missing_or_damaging_what_libpng_needs_is_refused_without_decoding(damage, capfd):
    png = bytearray(encoded(".png", np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    if damage == "cut inside a chunk":
        png = png[: len(png) // 2]
    elif damage == "cut before IEND":
        png = png[:-12]
    else:
        png[png.index(b"IDAT") + 20] ^= 0x01
    assert images.png_for_decoding(bytes(png)) is None
    with pytest.raises(UserError, match="damaged or truncated PNG data"):
        images.decode_image(bytes(png), "damaged")
    assert capfd.readouterr().err == ""  # libpng never saw it, so said nothing


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
@pytest.mark.parametrize("hw", [(1, 1), (33, 517), (480, 640)])
def test_image_header_reads_the_true_size(ext, hw):
    image = np.zeros((*hw, 3), np.uint8)
    kind, size = images.image_header(encoded(ext, image))
    assert kind and size == (hw[1], hw[0])


def huge_headers():
    """Small files whose headers claim a 60000x50000 (3000-megapixel) image, one per format."""
    jpeg = encoded(".jpg", np.zeros((8, 8, 3), np.uint8))
    sof = jpeg.index(b"\xff\xc0")
    jpeg = jpeg[: sof + 5] + struct.pack(">HH", 50000, 60000) + jpeg[sof + 9:]
    bmp = bytearray(encoded(".bmp", np.zeros((8, 8, 3), np.uint8)))
    bmp[18:26] = struct.pack("<ii", 60000, 50000)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + struct.pack("<HHII", 256, 4, 1, 60000) \
        + struct.pack("<HHII", 257, 4, 1, 50000) + struct.pack("<I", 0)
    webp = b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\x00" * 4 \
        + (60000 - 1).to_bytes(3, "little") + (50000 - 1).to_bytes(3, "little")
    return {"png": huge_png(60000, 50000), "jpeg": jpeg, "bmp": bytes(bmp), "tiff": tiff, "webp": webp}


@pytest.mark.parametrize("kind", ["png", "jpeg", "bmp", "tiff", "webp"])
def test_huge_claimed_size_is_refused_before_decoding(kind):
    with pytest.raises(UserError, match=r"60000x50000 is 3000 megapixels, above the 200-megapixel limit"):
        images.decode_image(huge_headers()[kind], "big")


def test_the_size_limit_can_be_moved_and_a_bad_setting_is_one_line(tmp_path, make_photo, vits_checkpoint,
                                                                    monkeypatch):
    source = photo_folder(tmp_path / "in", make_photo, 2)
    monkeypatch.setenv("DAV2_MAX_MEGAPIXELS", "0.004")  # 60x80 is 0.0048 megapixels
    result = dav2("folder", source, "-o", tmp_path / "out", "-m", vits_checkpoint)
    assert result.exit_code == 1 and len(error_lines(result.stderr)) == 2
    assert "80x60 is 0.0048 megapixels, above the 0.004-megapixel limit" in result.stderr
    monkeypatch.setenv("DAV2_MAX_MEGAPIXELS", "lots")
    result = dav2("folder", source, "-o", tmp_path / "out", "-m", vits_checkpoint)
    assert result.exit_code == 1 and result.stderr == "dav2: error: DAV2_MAX_MEGAPIXELS=lots: expected a positive " \
        "number of megapixels\n"


def test_extreme_aspect_ratio_is_refused(tmp_path, vits_checkpoint):
    cv2.imwrite(str(tmp_path / "strip.png"), np.zeros((2, 400, 3), np.uint8))
    result = dav2("image", tmp_path / "strip.png", "-m", vits_checkpoint)
    assert result.exit_code == 1 and "400x2" in result.stderr and "16:1" in result.stderr


# --- failing outputs ---------------------------------------------------------------------------------------------

def test_output_under_a_regular_file_is_one_line_before_any_work(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 3)
    (tmp_path / "file").write_text("x")
    result = dav2("folder", source, "-o", tmp_path / "file" / "out", "-m", vits_checkpoint)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "file/out" in result.stderr
    assert "not a folder" in result.stderr


def test_read_only_output_folder_is_one_line(tmp_path, make_photo, vits_checkpoint, monkeypatch):
    source = photo_folder(tmp_path / "in", make_photo, 3)
    out = tmp_path / "out"
    out.mkdir()
    real_open = os.open

    def read_only(path, *args, **kwargs):  # what a read-only folder does, also for root
        if os.fspath(path).startswith(os.fspath(out)):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", read_only)
    result = dav2("folder", source, "-o", out, "-m", vits_checkpoint)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"dav2: error: {out}: cannot write output there (permission denied)"


def test_disk_full_stops_once_and_keeps_finished_outputs(tmp_path, make_photo, vits_checkpoint, monkeypatch):
    source = photo_folder(tmp_path / "in", make_photo, 4)
    out = tmp_path / "out"
    real_fsync, calls = os.fsync, []

    def fills_up(fd):
        calls.append(fd)
        if len(calls) > 4:  # two images, each a .npy and its .json sidecar, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fills_up)
    result = dav2("folder", source, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--batch-size", "2")
    assert result.exit_code == 1
    errors = error_lines(result.stderr)
    assert errors == [f"dav2: error: {out / 'img02.npy.json'}: no space left on device"]  # sidecar first
    assert result.stderr.strip().splitlines()[-1].startswith("dav2: done 2, skipped 0, failed 1, stopped (1 not done")
    assert sorted(p.name for p in depth_files(out)) == ["img00.npy", "img01.npy"]  # and no temporary files
    assert all(np.load(path).shape == (60, 80) for path in depth_files(out))


def test_too_long_output_names_fail_one_by_one(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 1)
    stem = "n" * 248  # x.jpg and x.png keep their extension in the output name: 248 + 4 + 4 > 255
    for ext in (".jpg", ".png"):
        (source / (stem + ext)).write_bytes(encoded(ext, make_photo(60, 80)))
    result = dav2("folder", source, "-o", tmp_path / "out", "-m", vits_checkpoint, "--format", "npy")
    assert result.exit_code == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 2 and all("file name too long" in line for line in errors)
    assert sorted(p.name for p in depth_files((tmp_path / "out"))) == ["img00.npy"]


def test_too_long_output_folder_is_one_line(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path / "in", make_photo, 2)
    result = dav2("folder", source, "-o", tmp_path / ("o" * 300), "-m", vits_checkpoint)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "file name too long" in result.stderr


def test_output_that_is_an_input_is_a_usage_error_before_any_work(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path, make_photo, 1)
    cv2.imwrite(str(source / "other.jpg"), make_photo(60, 80, seed=5))
    result = dav2("image", source / "other.jpg", source / "img00.png", "-o", source, "-m", vits_checkpoint)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"dav2: error: {source / 'img00.png'}: its output {source / 'img00.png'} is "
                                     f"one of the inputs; choose another -o")
    assert cv2.imread(str(source / "img00.png")).shape == (60, 80, 3)  # still the photo
    assert not (source / "other.png").exists()  # no work done for the other one either


def test_outputs_onto_inputs_are_refused_in_every_shard(tmp_path, make_photo, vits_checkpoint):
    source = photo_folder(tmp_path, make_photo, 3)
    photos = sorted(source.glob("*.png"))
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"{photo}\n" for photo in photos))
    for shard in ("1/2", "2/2"):
        result = dav2("folder", listed, "-o", source, "-m", vits_checkpoint, "--shard", shard)
        assert result.exit_code == 2 and "is one of the inputs (and 2 more)" in result.stderr, result.stderr
    assert sorted(source.glob("*.png")) == photos and cv2.imread(str(photos[0])).shape == (60, 80, 3)


def test_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(tmp_path / "d.npy", b"data")
    assert list(tmp_path.iterdir()) == []


def test_temporary_files_left_by_an_interrupt_mid_open_are_removed_at_exit(tmp_path, monkeypatch):
    real_open = os.open

    def opened_then_interrupted(*args):
        os.close(real_open(*args))
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "open", opened_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(tmp_path / "d.npy", b"data")
    assert len(leftovers(tmp_path)) == 1
    atomic.remove_temp_files()  # registered with atexit
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["image", "folder"])
def test_help_documents_the_exit_codes(command):
    text = CliRunner().invoke(main, [command, "--help"]).output
    assert all(code in text for code in ("0 all done", "1 some inputs failed", "2 bad usage", "130", "143"))


def test_a_file_name_with_a_nul_character_is_a_user_error():
    with pytest.raises(UserError, match="not a possible file name"):
        images.read_image("bad\x00name.png")
