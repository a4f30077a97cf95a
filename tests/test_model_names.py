"""What README shows works: upstream's file name finds the cached model from any folder, in the API as with `-m`;
the API's errors speak of its arguments; the API example explains itself when called without any."""

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

import dav2_cli
from dav2_cli.cli import main
from dav2_cli.errors import UserError
from dav2_cli.weights.kinds import model_kind
from dav2_cli.weights.lookup import check_model_argument, resolve
from conftest import synthetic_photo

VITS_FILE = "depth_anything_v2_vits.pth"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working folder, caches of the test's own, and no network."""
    for variable in ("HF_HOME", "XDG_CACHE_HOME", "DAV2_HF_ENDPOINT", "HF_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DAV2_HOME", str(tmp_path / "dav2"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("DAV2_OFFLINE", "1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def place(folder: Path, source: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(source, folder / VITS_FILE))


def test_upstreams_file_name_resolves_to_the_file_in_dav2s_folder(elsewhere):
    placed = place(elsewhere / "dav2", Path(__file__))  # the bytes do not matter to the lookup
    assert resolve(VITS_FILE) == placed
    check_model_argument(VITS_FILE)  # `-m depth_anything_v2_vits.pth` passes the command line's check


def test_upstreams_file_name_resolves_to_the_file_in_the_hf_cache(elsewhere):
    snapshot = elsewhere / "hub" / "models--depth-anything--Depth-Anything-V2-Small" / "snapshots" / "c0ffee"
    placed = place(snapshot, Path(__file__))
    assert resolve(VITS_FILE) == placed


def test_a_file_of_that_name_here_is_itself(elsewhere):
    place(elsewhere / "dav2", Path(__file__))
    Path(VITS_FILE).write_bytes(b"mine")
    assert resolve(VITS_FILE) == Path(VITS_FILE)
    assert resolve(f"./{VITS_FILE}") == Path(VITS_FILE)


def test_a_missing_catalogue_file_says_where_to_put_it(elsewhere):
    with pytest.raises(UserError, match=rf"model vits is not downloaded and DAV2_OFFLINE is set; get {VITS_FILE} "
                                        rf"from .* and put it at {elsewhere / 'dav2' / VITS_FILE}$"):
        resolve(VITS_FILE)


def test_the_kind_of_a_catalogue_file_name_is_known_before_any_download(elsewhere):
    assert model_kind("depth_anything_v2_metric_vkitti_vits.pth") == (True, 80.0)
    assert model_kind("depth_anything_v2_metric_hypersim_vitl.pth", 12.0) == (True, 12.0)
    assert model_kind(VITS_FILE) == (False, None)


def test_load_model_takes_upstreams_file_name_from_any_folder(elsewhere, vits_checkpoint):
    placed = place(elsewhere / "dav2", vits_checkpoint)
    model = dav2_cli.load_model(VITS_FILE, device="cpu", dtype="float32", backend="torch")
    assert model.source == str(placed)


def test_the_command_line_takes_upstreams_file_name_too(elsewhere, vits_checkpoint):
    place(elsewhere / "dav2", vits_checkpoint)
    cv2.imwrite("photo.png", synthetic_photo(56, 84))
    result = CliRunner().invoke(main, ["image", "photo.png", "-m", VITS_FILE, "--input-size", "112", "--format",
                                       "npy"])
    assert result.exit_code == 0, result.output
    assert Path("photo_depth.npy").is_file()


def test_the_apis_errors_name_the_argument_not_the_flag(elsewhere):
    with pytest.raises(UserError) as error:
        dav2_cli.load_model("no-such-model", device="cpu", backend="torch")
    message = str(error.value)
    assert message.startswith("no-such-model: no such file or folder, and not a model name (names: vits, ")
    assert "-m " not in message and "--model" not in message


def test_the_command_line_keeps_its_flag_wording(elsewhere):
    cv2.imwrite("photo.png", synthetic_photo(56, 84))
    result = CliRunner().invoke(main, ["image", "photo.png", "-m", "no-such-model"])
    assert result.exit_code == 2
    assert "'-m'" in result.output and "no such file or folder, and not a model name" in result.output
    assert "no-such-model: no such" not in result.output  # the argument is named once, by click


def test_the_api_example_without_arguments_prints_its_usage():
    result = subprocess.run([sys.executable, str(REPO_ROOT / "examples" / "api_example.py")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ") and "MODEL PHOTO" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
