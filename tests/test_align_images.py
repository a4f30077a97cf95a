"""--align-to with several images: each image is fitted to its own rows, named in an `image` column, and a CSV that
cannot say which image it measures is refused before any work."""

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import synthetic_photo

from dav2_cli.cli import main

SMALL = ["--input-size", "56", "--device", "cpu", "--dtype", "float32"]
PIXELS = [(3, 4), (50, 10), (30, 30), (10, 40), (45, 35)]


def dav2(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    paths = {}
    for seed, name in enumerate(["a.png", "sub/b.png", "c.png"]):
        paths[name] = folder / name
        cv2.imwrite(str(paths[name]), synthetic_photo(48, 64, seed=seed + 5))
    return folder, paths


def truth_for(photo, checkpoint, tmp_path, near_inverse):
    """Distances that a known scale and shift of the model's own map give, different for each image."""
    raw = tmp_path / f"raw-{photo.stem}.npy"
    assert dav2("image", photo, "-m", checkpoint, "-o", raw, *SMALL)[0] == 0
    disparity = np.load(raw).astype(np.float64)
    scale = near_inverse / (disparity.max() - disparity.min())
    return 1.0 / (scale * (disparity - disparity.min()) + 0.2)


def test_a_folder_fits_each_image_to_its_own_rows_and_names_the_one_without(photos, vits_checkpoint, tmp_path):
    folder, paths = photos
    truths = {"a.png": truth_for(paths["a.png"], vits_checkpoint, tmp_path, 1.0),
              "sub/b.png": truth_for(paths["sub/b.png"], vits_checkpoint, tmp_path, 3.0)}
    csv = tmp_path / "points.csv"
    rows = [f"{'a.png' if name == 'a.png' else 'sub/b.png'},{x},{y},{truth[y, x]}"  # by name, and by path
            for name, truth in truths.items() for x, y in PIXELS]
    csv.write_text("image,x,y,depth_m\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    code, output = dav2("folder", folder, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--align-to", csv,
                        "-q", *SMALL)
    assert code == 1, output  # c.png has no rows: its own error, the others finish
    assert f"{paths['c.png']}: no rows of {csv} name this image" in output
    assert "done 2, skipped 0, failed 1" in output
    np.testing.assert_allclose(np.load(out / "a.npy"), truths["a.png"], rtol=1e-3)
    np.testing.assert_allclose(np.load(out / "sub" / "b.npy"), truths["sub/b.png"], rtol=1e-3)
    assert not (out / "c.npy").exists()


def test_images_named_on_the_command_line_are_matched_by_file_name(photos, vits_checkpoint, tmp_path):
    _, paths = photos
    truth = truth_for(paths["c.png"], vits_checkpoint, tmp_path, 2.0)
    other = truth_for(paths["a.png"], vits_checkpoint, tmp_path, 1.0)  # a.png's rows agree with its own map
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,depth_m,image\n" + "".join(f"{x},{y},{truth[y, x]},c.png\n" for x, y in PIXELS)
                   + "".join(f"{x},{y},{other[y, x]},a.png\n" for x, y in PIXELS[:2]))
    code, output = dav2("image", paths["c.png"], paths["a.png"], "-o", tmp_path / "out", "-m", vits_checkpoint,
                        "--format", "npy", "--align-to", csv, *SMALL)
    assert code == 0, output
    np.testing.assert_allclose(np.load(tmp_path / "out" / "c.npy"), truth, rtol=1e-3)


@pytest.mark.parametrize("command", ["image", "folder"])
def test_rows_without_an_image_column_for_several_inputs_are_a_usage_error(photos, vits_checkpoint, tmp_path,
                                                                           command):
    folder, paths = photos
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,depth_m\n1,1,1.5\n2,30,2.5\n")
    inputs = [folder] if command == "folder" else [paths["a.png"], paths["c.png"]]
    out = tmp_path / "out"
    code, output = dav2(command, *inputs, "-o", out, "-m", vits_checkpoint, "--format", "npy", "--align-to", csv,
                        *SMALL)
    assert code == 2 and "no image column" in output, output
    assert not out.exists() or not any(out.iterdir())


def test_help_says_how_rows_name_their_image():
    text = " ".join(CliRunner().invoke(main, ["folder", "--help"]).output.split())
    assert "need the image column" in text
