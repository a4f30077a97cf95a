"""The memory a run needs is known before the model loads: close to what the process really takes at its peak,
and a run that would not fit takes a path that does, or stops with one line, instead of being killed."""

import os
import subprocess
import sys

import cv2
import pytest
from click.testing import CliRunner

from dav2_cli.cli import main
from dav2_cli.runtime import form_tuning, loading, memory, openvino_backend

TOLERANCE = 0.25  # of the measured peak: the estimate must be this close, above or below


# Linux carries the parent's high-water mark into a child's ru_maxrss across fork and exec, so a child of this test
# process (grown by the tests before it) would report this process's peak. The command is started instead from a
# small Python of its own, which reports its child's peak on stdout.
_MEASURE = ("import os, subprocess, sys; process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "_, status, usage = os.wait4(process.pid, 0); print(usage.ru_maxrss); "
            "sys.exit(os.waitstatus_to_exitcode(status))")


def peak_rss(command: list[str], env: dict) -> int:
    """Peak RSS in bytes of `command`, run where no larger process's high-water mark is inherited."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) * 1024


BACKENDS = ["torch"] + (["openvino"] if openvino_backend.installed() else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_estimate_is_near_the_measured_peak_at_two_sizes(tmp_path, make_photo, vits_checkpoint, backend):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), make_photo(240, 320))
    env = {**os.environ, "DAV2_MEMORY_CHECK": "off"}
    command = [sys.executable, "-m", "dav2_cli", "image", str(photo), "-m", str(vits_checkpoint), "--backend",
               backend, "--device", "cpu", "--dtype", "float32", "--format", "npy"]
    shape = memory.shape_of("vits")
    for size in (252, 672):
        measured = peak_rss([*command, "--input-size", str(size), "-o", str(tmp_path / f"{size}.npy")], env)
        height, width = (size, size * 4 // 3 // 28 * 28)
        estimate = memory.estimate(shape, backend, "float32", 1, (height // 14, width // 14), 240 * 320)
        assert abs(estimate - measured) <= TOLERANCE * measured, (size, estimate / 2**20, measured / 2**20)


def test_the_checkpoint_file_tells_the_encoder(vits_checkpoint, tmp_path):
    assert memory.model_shape(str(vits_checkpoint)) == memory.shape_of("vits")
    assert memory.model_shape("vitl") == memory.shape_of("vitl")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert memory.model_shape(str(empty)) is None


def test_only_the_matmul_attention_form_grows_with_the_square_of_the_tokens(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 50)
    shape = memory.shape_of("vits")

    def activations(backend, grid_hw, matmul=False):
        return (memory.estimate(shape, backend, "bfloat16", 1, grid_hw, matmul_attention=matmul)
                - memory.estimate(shape, backend, "bfloat16", 1, (0, 0)))
    for backend in ("torch", "openvino"):
        assert activations(backend, (144, 192)) / activations(backend, (72, 96)) == pytest.approx(4)
    assert activations("torch", (144, 192), True) / activations("torch", (72, 96), True) > 10


def test_the_matmul_form_is_neither_timed_nor_run_where_its_scores_would_not_fit(monkeypatch):
    """vits at --input-size 2016 under auto grew to 24 GB and was killed: the bf16 matmul form's scores."""
    from dav2_cli.model.image_encoder import Block

    block = Block(384, 6, 1536, swiglu=False)
    heads, tokens = 6, 144 * 192
    monkeypatch.setattr(memory, "available_bytes", lambda: memory.matmul_attention_bytes(heads, tokens) * 2)
    assert not memory.matmul_attention_fits(heads, tokens)

    def never(*args, **kwargs):
        raise AssertionError("timed a form that does not fit")
    monkeypatch.setattr(form_tuning, "time_attention_forms", never)
    assert form_tuning.tuned_attention_form(block, (144, 192)) == "fused"
    assert memory.matmul_attention_fits(heads, 72 * 96)


@pytest.fixture
def no_model_loads(monkeypatch):
    """Each backend the job asked load_model for; loading itself stops the job with a UserError."""
    asked = []

    def refuse(*args, backend=None, **kwargs):
        from dav2_cli.errors import UserError

        asked.append(backend)
        raise UserError("the model was loaded")
    monkeypatch.setattr(loading, "load_model", refuse)
    return asked


def run_image(tmp_path, make_photo, checkpoint, *args):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), make_photo(240, 320))
    return CliRunner().invoke(main, ["image", str(photo), "-m", str(checkpoint), "--device", "cpu", "--dtype",
                                     "float32", "--format", "npy", *args], catch_exceptions=False)


def test_a_run_that_cannot_fit_is_one_line_with_the_size_that_fits_before_the_model_loads(
        tmp_path, make_photo, vits_checkpoint, monkeypatch, no_model_loads):
    room = 2 << 30
    monkeypatch.setattr(memory, "available_bytes", lambda: room)
    result = run_image(tmp_path, make_photo, vits_checkpoint, "--input-size", "2016", "--backend", "torch")
    assert result.exit_code == 2, result.output
    line, = result.stderr.splitlines()
    assert line.startswith("dav2: error: --input-size 2016 needs about ") and "2.0 GB is available" in line
    fits = int(line.split("; --input-size ")[1].split()[0])
    assert no_model_loads == [] and not list(tmp_path.glob("*.npy"))

    shape, image_hw = memory.shape_of("vits"), (240, 320)

    def needed(size):
        height, width = (size, size * 4 // 3 // 28 * 28)
        return memory.estimate(shape, "torch", "float32", 1, (height // 14, width // 14), 240 * 320)
    assert needed(fits) <= memory.HEADROOM * room < needed(fits + 28)
    assert memory.largest_fitting_size(shape, "torch", "float32", 1, image_hw, int(memory.HEADROOM * room)) == fits


@pytest.mark.skipif(not openvino_backend.installed(), reason="auto is torch alone without OpenVINO")
def test_auto_takes_torchs_fused_attention_where_openvinos_would_not_fit(tmp_path, make_photo, vits_checkpoint,
                                                                          monkeypatch, no_model_loads):
    shape, grid_hw = memory.shape_of("vits"), (2016 // 14, 2688 // 14)
    torch_needs = memory.estimate(shape, "torch", "float32", 1, grid_hw, 240 * 320)
    monkeypatch.setattr(memory, "available_bytes", lambda: int(torch_needs / memory.HEADROOM) + (1 << 20))
    result = run_image(tmp_path, make_photo, vits_checkpoint, "--input-size", "2016", "--backend", "auto", "-v")
    assert no_model_loads == ["torch"], result.output
    assert "dav2: memory: about" in result.stderr and "running torch" in result.stderr

    result = run_image(tmp_path, make_photo, vits_checkpoint, "--input-size", "2016", "--backend", "openvino")
    assert result.exit_code == 2 and "with OpenVINO" in result.stderr and "or --backend torch" in result.stderr


def test_a_run_that_fits_loads_what_was_asked(tmp_path, make_photo, vits_checkpoint, monkeypatch, no_model_loads):
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 << 30)
    result = run_image(tmp_path, make_photo, vits_checkpoint, "--input-size", "504", "--backend", "torch", "-v")
    assert no_model_loads == ["torch"] and result.exit_code == 1
    assert "dav2: memory: about" in result.stderr and "64.0 GB available" in result.stderr
