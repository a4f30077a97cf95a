"""`dav2 image` end to end: naming rules, formats, stdin/stdout, errors and exit codes."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import dav2_cli
from dav2_cli.cli import main
from dav2_cli.model.int8 import quantized_engine


def depth_files(folder):
    """The depth maps in `folder`, without the .json sidecars that describe npy files."""
    return [path for path in folder.iterdir() if path.suffix != ".json"]


@pytest.fixture
def photos(tmp_path, make_photo):
    paths = []
    for name, (h, w) in {"A.png": (120, 160), "B.png": (90, 200)}.items():
        path = tmp_path / name
        cv2.imwrite(str(path), make_photo(h, w, seed=len(paths)))
        paths.append(path)
    return paths


def dav2(*args, input=None, pin_float32=True):
    args = [str(a) for a in args]
    if "--input-size" not in args:
        args += ["--input-size", "280"]  # small and fast; the npy test below uses 504
    if pin_float32 and "--dtype" not in args:
        args += ["--device", "cpu", "--dtype", "float32"]  # exact everywhere: `auto` picks bf16 on some CPUs
    return CliRunner().invoke(main, args, input=input, catch_exceptions=False)


def test_npy_outputs_are_float32_depth_at_each_images_own_size(photos, vits_checkpoint, tmp_path):
    out = tmp_path / "DIR"
    result = dav2("image", *photos, "-m", vits_checkpoint, "--input-size", 504, "--dtype", "float32",
                  "--device", "cpu", "-o", out, "--format", "npy")
    assert result.exit_code == 0, result.output
    a, b = np.load(out / "A.npy"), np.load(out / "B.npy")
    assert a.dtype == np.float32 and a.shape == (120, 160)
    assert b.dtype == np.float32 and b.shape == (90, 200)
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32")
    np.testing.assert_allclose(a, dav2_cli.predict(model, cv2.imread(str(photos[0])), 504), rtol=1e-6, atol=1e-7)


def test_default_output_goes_beside_the_input_as_colour_png(photos, vits_checkpoint):
    assert dav2("image", photos[0], "-m", vits_checkpoint).exit_code == 0
    picture = cv2.imread(str(photos[0].with_name("A_depth.png")), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (120, 160, 3) and picture.dtype == np.uint8


@pytest.mark.parametrize("name,shape,dtype", [("d.png", (120, 160, 3), np.uint8), ("d.tiff", (120, 160), np.float32),
                                              ("d.npy", (120, 160), np.float32), ("d.jpg", (120, 160, 3), np.uint8)])
def test_single_output_file_takes_its_format_from_the_extension(photos, vits_checkpoint, tmp_path, name, shape,
                                                                 dtype):
    target = tmp_path / name
    assert dav2("image", photos[0], "-m", vits_checkpoint, "-o", target).exit_code == 0
    data = np.load(target) if name.endswith(".npy") else cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
    assert data.shape == shape and data.dtype == dtype


def test_gray16_uses_the_full_range_and_near_is_bright(photos, vits_checkpoint, tmp_path):
    assert dav2("image", photos[0], "-m", vits_checkpoint, "--format", "gray16", "-o", tmp_path / "g").exit_code == 0
    gray16 = cv2.imread(str(tmp_path / "g" / "A.png"), cv2.IMREAD_UNCHANGED)
    raw = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32"), cv2.imread(str(photos[0])), 280)
    assert gray16.dtype == np.uint16 and gray16.min() == 0 and gray16.max() == 65535
    assert gray16.flat[np.argmax(raw)] == 65535  # the largest inverse depth (nearest) is the brightest


def test_side_by_side_puts_the_photo_left(photos, vits_checkpoint, tmp_path):
    target = tmp_path / "sbs.png"
    assert dav2("image", photos[0], "-m", vits_checkpoint, "--side-by-side", "-o", target).exit_code == 0
    picture = cv2.imread(str(target))
    assert picture.shape == (120, 320, 3)
    np.testing.assert_array_equal(picture[:, :160], cv2.imread(str(photos[0])))


def test_stdin_to_stdout_pipe(photos, vits_checkpoint):
    result = dav2("image", "-", "-o", "-", "--format", "png", "-m", vits_checkpoint, input=photos[0].read_bytes())
    assert result.exit_code == 0, result.stderr
    picture = cv2.imdecode(np.frombuffer(result.stdout_bytes, np.uint8), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (120, 160, 3)


def test_bad_input_is_named_the_rest_still_done_and_exit_is_1(photos, vits_checkpoint, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "out"
    result = dav2("image", broken, tmp_path / "missing.png", photos[1], "-m", vits_checkpoint, "-o", out,
                  "--format", "npy")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in result.stderr
    # the missing file is found by a stat before the model loads, the damaged one when it is decoded
    assert "missing.png" in lines[0] and "broken.jpg" in lines[1]
    assert (out / "B.npy").is_file() and not (out / "broken.npy").exists()


def test_bad_checkpoint_is_one_line_and_exit_1(photos, tmp_path):
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"definitely not a zip file")
    result = dav2("image", photos[0], "-m", bogus)
    assert result.exit_code == 1
    assert result.stderr.startswith("dav2: error: ") and "bogus.pth" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unwritable_output_is_reported(photos, vits_checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = dav2("image", photos[0], "-m", vits_checkpoint, "-o", blocker / "sub" / "d.png")
    assert result.exit_code == 1
    assert "sub" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--format", "nope"], ["--input-size", "10"], ["--dtype", "int4"]])
def test_usage_errors_exit_2(photos, vits_checkpoint, args):
    assert dav2("image", photos[0], "-m", vits_checkpoint, *args).exit_code == 2


@pytest.mark.parametrize("model", ["vits", "relative-file", "video-vits"])
def test_max_depth_for_a_model_that_takes_none_is_a_usage_error_before_any_work(photos, vits_checkpoint, tmp_path,
                                                                               model):
    # the name alone says so: a catalogue name (nothing downloaded), or upstream's file naming
    model = {"relative-file": vits_checkpoint}.get(model, model)
    command, out = ("video", tmp_path / "frames") if str(model).startswith("video") else ("image", tmp_path / "d.npy")
    result = dav2(command, photos[0], "-m", model, "--max-depth", 5, "-o", out, "--format", "npy")
    assert result.exit_code == 2, result.output
    assert "--max-depth applies to metric" in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_several_inputs_into_a_file_name_is_a_usage_error_but_a_slash_makes_it_a_folder(photos, vits_checkpoint,
                                                                                         tmp_path):
    refused = dav2("image", *photos[:2], "-m", vits_checkpoint, "-o", tmp_path / "depth.png")
    assert refused.exit_code == 2 and "2 inputs need an output folder" in refused.stderr
    assert not (tmp_path / "depth.png").exists()
    meant = dav2("image", *photos[:2], "-m", vits_checkpoint, "-o", f"{tmp_path / 'depth.png'}/",
                 "--input-size", 56)
    assert meant.exit_code == 0, meant.output
    assert len(list((tmp_path / "depth.png").iterdir())) == 2


def test_dav2_dtype_sets_the_precision_and_dtype_overrides_it(photos, vits_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("DAV2_DTYPE", "int8" if quantized_engine() else "bfloat16")
    pinned = dav2("image", photos[0], "-m", vits_checkpoint, "-o", tmp_path / "a.npy", "--device", "cpu", "-v",
                  pin_float32=False)
    assert pinned.exit_code == 0, pinned.output
    assert f"on cpu in {'int8' if quantized_engine() else 'bfloat16'}" in pinned.stderr
    overridden = dav2("image", photos[0], "-m", vits_checkpoint, "-o", tmp_path / "b.npy", "--device", "cpu",
                      "--dtype", "float32", "-v")
    assert overridden.exit_code == 0 and "on cpu in float32" in overridden.stderr


def test_an_invalid_dav2_dtype_is_a_usage_error_before_torch_is_imported(photos, tmp_path):
    code = ("import sys; from click.testing import CliRunner; from dav2_cli.cli import main; "
            f"r = CliRunner().invoke(main, ['image', {str(photos[0])!r}, '-o', {str(tmp_path / 'x.png')!r}]); "
            "print(r.exit_code, 'torch' in sys.modules); print(r.output)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "DAV2_DTYPE": "float64"})
    first, *rest = result.stdout.splitlines()
    assert first == "2 False", result.stdout + result.stderr
    assert "DAV2_DTYPE" in "\n".join(rest)
    assert not (tmp_path / "x.png").exists()


def test_help_names_the_dav2_dtype_variable():
    assert "DAV2_DTYPE" in CliRunner().invoke(main, ["image", "--help"]).output


def test_side_by_side_with_raw_format_is_refused(photos, vits_checkpoint, tmp_path):
    result = dav2("image", photos[0], "-m", vits_checkpoint, "--format", "npy", "--side-by-side", "-o", tmp_path)
    assert result.exit_code == 2 and "side-by-side" in result.output  # a usage error: nothing runs


def test_same_stem_inputs_get_distinct_documented_names(tmp_path, make_photo, vits_checkpoint):
    cv2.imwrite(str(tmp_path / "x.png"), make_photo(60, 80))
    cv2.imwrite(str(tmp_path / "x.jpg"), make_photo(60, 80, seed=3))
    out = tmp_path / "out"
    assert dav2("image", tmp_path / "x.png", tmp_path / "x.jpg", "-m", vits_checkpoint, "-o", out,
                "--format", "npy").exit_code == 0
    assert sorted(p.name for p in depth_files(out)) == ["x.jpg.npy", "x.png.npy"]


def test_version_and_help_do_not_import_torch():
    code = "import sys; from dav2_cli.cli import main; assert 'torch' not in sys.modules; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"
    result = subprocess.run([sys.executable, "-m", "dav2_cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and dav2_cli.__version__ in result.stdout


def test_verbose_says_what_was_loaded(photos, vits_checkpoint, vits_metric_checkpoint, tmp_path):
    result = dav2("image", photos[0], "-m", vits_checkpoint, "-o", tmp_path / "r.npy", "--input-size", 112, "-v")
    assert result.exit_code == 0, result.stderr
    assert "model vits (relative: inverse depth, larger = nearer)" in result.stderr
    assert str(vits_checkpoint) in result.stderr and "on cpu in float32" in result.stderr
    result = dav2("image", photos[0], "-m", vits_metric_checkpoint, "-o", tmp_path / "m.npy", "--input-size", 112,
                  "--verbose")
    assert "metric: meters, larger = farther, max_depth 20 m" in result.stderr


@pytest.mark.parametrize("command", ["image", "folder", "video", "bench"])
def test_cli_input_sizes_are_the_ones_prep_can_size(command):
    # every command that runs the model takes the one --input-size range
    from dav2_cli import cli
    from dav2_cli.depth import sizing as prep

    size = next(param for param in cli.main.commands[command].params if param.name == "input_size")
    assert (size.type.min, size.type.max) == (prep.SIZE_MULTIPLE, prep.MAX_INPUT_SIZE)
