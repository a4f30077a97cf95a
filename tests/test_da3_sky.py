"""`--sky keep|far|mask` and the API's `sky=`: the same sky on every backend, against the `depth-anything-3`
package's own depth and sky score; the mask read back from npy, EXR and TIFF with readers we did not write; point
clouds without sky points unless asked; and models without a sky head left exactly as they were."""

import io
import json

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import synthetic_photo
from PIL import Image
from plyfile import PlyData

import dav2_cli
from dav2_cli.cli import main
from dav2_cli.depth.sizing import model_size, to_model_input
from dav2_cli.outputs.ply import read_ply
from dav2_cli.model.head import SKY_THRESHOLD, sky_signed, split_signed
from tests.da3_reference import da3_network, make_some_sky, reference_depth_and_sky, write_da3_folder

HEIGHT, WIDTH, SIZE = 196, 280, 196  # the image is the network's input size: masks compare pixel for pixel
SMALL = ["--input-size", SIZE, "--device", "cpu", "--dtype", "float32"]
TOLERANCE = 1e-4  # of the depth range


def dav2(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def photo_bgr():
    return synthetic_photo(HEIGHT, WIDTH, seed=11)


@pytest.fixture(scope="module", params=[False, True], ids=["mono", "metric"])
def sky_model(request, tmp_path_factory, photo_bgr):
    """A DA3 folder whose sky head finds sky in 5-20% of the photo, and the package's depth and sky score for
    the photo's network input."""
    metric = request.param
    assert model_size((HEIGHT, WIDTH), SIZE) == (HEIGHT, WIDTH)
    image_bchw = torch.from_numpy(to_model_input(photo_bgr, (HEIGHT, WIDTH)))[None]
    network = da3_network(metric, seed=41 + metric)
    make_some_sky(network, image_bchw)
    folder = write_da3_folder(network, tmp_path_factory.mktemp("da3-sky") / "model", metric)
    depth, score = reference_depth_and_sky(network, image_bchw)
    return folder, depth[0].numpy(), (score[0] >= SKY_THRESHOLD).numpy(), metric


@pytest.fixture
def photo(tmp_path, photo_bgr):
    path = tmp_path / "in.png"
    cv2.imwrite(str(path), photo_bgr)
    return path


def test_sign_carries_the_sky_bit_even_where_depth_underflowed():
    depth = torch.tensor([[[0.0, 2.0, 0.0, 5.0]]])
    score = torch.tensor([[[0.9, 0.9, 0.0, 0.0]]])
    signed = sky_signed(depth, score)
    back, sky = split_signed(signed)
    assert sky.tolist() == [[[True, True, False, False]]]
    assert back[0, 0, 1:].tolist() == [2.0, 0.0, 5.0] and 0 < float(back[0, 0, 0]) < 1e-30


def test_each_mode_on_every_backend_gives_the_packages_depth_and_sky(sky_model, photo_bgr, each_backend):
    folder, expected_depth, expected_sky, _ = sky_model
    model = dav2_cli.load_model(folder, device="cpu", dtype="float32", backend=each_backend)
    keep = dav2_cli.predict(model, photo_bgr, SIZE, sky="keep")
    far = dav2_cli.predict(model, photo_bgr, SIZE)  # the default
    masked, sky = dav2_cli.predict(model, photo_bgr, SIZE, sky="mask")
    span = float(expected_depth.max() - expected_depth.min())
    assert 0.05 * sky.size <= sky.sum() <= 0.2 * sky.size
    assert np.array_equal(sky, expected_sky)  # the graph's own decision, the same on every backend
    assert float(np.abs(keep - expected_depth).max()) <= TOLERANCE * span  # raw depth, sky included
    assert np.array_equal(far[~sky], keep[~sky])
    assert np.all(far[sky] == keep[~sky].max())  # sky at the farthest ground depth
    assert np.array_equal(masked, far)
    with torch.no_grad():  # the module's own forward: the network's depth with sky far, N x H x W
        forward = model(torch.from_numpy(to_model_input(photo_bgr, (HEIGHT, WIDTH)))[None])
    assert forward.shape == (1, HEIGHT, WIDTH) and np.array_equal(forward[0].numpy(), far)
    with pytest.raises(ValueError, match="sky="):
        dav2_cli.predict(model, photo_bgr, SIZE, sky="drop")


def test_ray_predictor_gives_a_sky_column_with_mask(sky_model, photo_bgr):
    from dav2_cli.ray import DepthPredictor

    folder, _, expected_sky, _ = sky_model
    predictor = DepthPredictor(str(folder), device="cpu", dtype="float32", input_size=SIZE, sky="mask")
    rows = predictor({"image": np.stack([photo_bgr[:, :, ::-1]])})  # read_images gives RGB
    assert np.array_equal(rows["sky"][0], expected_sky)
    assert np.all(rows["depth"][0][expected_sky] == rows["depth"][0][~expected_sky].max())
    assert "sky" not in DepthPredictor(str(folder), device="cpu", dtype="float32", input_size=SIZE)(
        {"image": np.stack([photo_bgr[:, :, ::-1]])})


def _description(path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_the_default_run_sets_sky_far_and_writes_no_mask(sky_model, photo, photo_bgr, tmp_path):
    folder, _, expected_sky, metric = sky_model
    out = tmp_path / "d.npy"
    code, log = dav2("image", photo, "-m", folder, "-o", out, *SMALL)  # no --sky, no environment
    assert code == 0, log
    depth = np.load(out)
    assert not (tmp_path / "d.npy.sky.png").exists()
    assert _description(out)["sky"] == "far" and "sky_mask" not in _description(out)
    assert np.all(depth[expected_sky] == depth[~expected_sky].max())
    code, log = dav2("image", photo, "-m", folder, "-o", tmp_path / "k.npy", "--sky", "keep", *SMALL)
    assert code == 0, log
    kept = np.load(tmp_path / "k.npy")
    assert _description(tmp_path / "k.npy")["sky"] == "keep"
    assert np.array_equal(kept[~expected_sky], depth[~expected_sky])
    assert not np.array_equal(kept[expected_sky], depth[expected_sky])


def test_mask_is_read_back_from_npy_exr_and_tiff(sky_model, photo, tmp_path):
    import OpenEXR

    folder, _, expected_sky, _ = sky_model
    for ext in ("npy", "exr", "tiff"):
        code, log = dav2("image", photo, "-m", folder, "-o", tmp_path / f"m.{ext}", "--sky", "mask", *SMALL)
        assert code == 0, log
    depth = np.load(tmp_path / "m.npy")
    assert np.all(depth[expected_sky] == depth[~expected_sky].max())  # mask is far, plus the mask
    sidecar = np.array(Image.open(tmp_path / "m.npy.sky.png"))
    assert sidecar.dtype == np.uint8 and set(np.unique(sidecar)) == {0, 255}
    assert np.array_equal(sidecar == 255, expected_sky)
    assert _description(tmp_path / "m.npy")["sky"] == "mask" and "sky.png" in _description(tmp_path / "m.npy")[
        "sky_mask"]

    with OpenEXR.File(str(tmp_path / "m.exr")) as exr:
        channels = exr.channels()
        assert sorted(channels) == ["Y", "sky"]
        assert np.array_equal(channels["Y"].pixels, depth)
        assert np.array_equal(channels["sky"].pixels == 1, expected_sky)
        assert exr.header()["sky"] == "mask"

    tiff = Image.open(io.BytesIO((tmp_path / "m.tiff").read_bytes()))
    assert tiff.n_frames == 2 and np.array_equal(np.array(tiff), depth)
    assert json.loads(tiff.tag_v2[270])["sky"] == "mask"
    tiff.seek(1)
    assert np.array_equal(np.array(tiff) == 255, expected_sky)
    code, log = dav2("info", tmp_path / "m.exr", "--at", "3,4")  # dav2's own reader still reads the depth
    assert code == 0, log


def test_a_mask_beside_its_input_is_not_taken_for_a_photo_by_a_later_folder_run(sky_model, photo, tmp_path):
    folder = sky_model[0]
    code, log = dav2("image", photo, "-m", folder, "--format", "npy", "--sky", "mask", *SMALL)
    assert code == 0, log
    assert (tmp_path / "in_depth.npy.sky.png").is_file()
    code, log = dav2("folder", tmp_path, "-o", tmp_path / "again", "-m", folder, "--format", "npy", *SMALL)
    assert code == 0, log
    assert sorted(path.name for path in (tmp_path / "again").glob("*.npy")) == ["in.npy"]


def test_mask_needs_a_format_with_room_for_it(sky_model, photo, tmp_path):
    folder = sky_model[0]
    code, log = dav2("image", photo, "-m", folder, "-o", tmp_path / "d.png", "--sky", "mask", *SMALL)
    assert code == 2 and "--sky mask" in log and not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("fmt", ["ply", "glb"])
def test_clouds_leave_sky_points_out_unless_kept(sky_model, photo, tmp_path, fmt):
    folder, _, expected_sky, metric = sky_model
    distances = ["--fx", 200] if metric else ["--near", 1, "--far", 10]
    counts = {}
    for mode in ("far", "keep"):
        out = tmp_path / f"{mode}.{fmt}"
        code, log = dav2("image", photo, "-m", folder, "-o", out, "--sky", mode, "--edge-threshold", 0,
                         *distances, *SMALL)
        assert code == 0, log
        counts[mode] = _point_count(out, fmt)
    assert counts["keep"] == HEIGHT * WIDTH  # every pixel is a point once edges are not judged
    assert counts["far"] == HEIGHT * WIDTH - int(expected_sky.sum())


def _point_count(path, fmt) -> int:
    if fmt == "ply":
        assert read_ply(path.read_bytes())[0]["sky_points"] in ("kept", "dropped")
        return len(PlyData.read(str(path))["vertex"])
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(path))
    return gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION].count


def test_a_video_writes_each_frames_mask(sky_model, photo_bgr, tmp_path):
    folder = sky_model[0]
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(2):
        cv2.imwrite(str(frames / f"f{index}.png"), photo_bgr)
    out = tmp_path / "out"
    code, log = dav2("video", frames, "-m", folder, "--fps", 24, "-o", out, "--format", "npy", "--sky", "mask",
                     *SMALL)
    assert code == 0, log
    masks = sorted(out.glob("*.npy.sky.png"))
    assert len(masks) == 2
    assert np.array_equal(np.array(Image.open(masks[0])) == 255, sky_model[2])


def test_a_model_without_a_sky_head_is_unchanged_by_sky(vits_checkpoint, photo, photo_bgr, tmp_path):
    model = dav2_cli.load_model(vits_checkpoint, device="cpu", dtype="float32")
    far = dav2_cli.predict(model, photo_bgr, SIZE)
    assert np.array_equal(dav2_cli.predict(model, photo_bgr, SIZE, sky="keep"), far)
    depth, sky = dav2_cli.predict(model, photo_bgr, SIZE, sky="mask")
    assert np.array_equal(depth, far) and not sky.any()
    outputs = {}
    for mode in ("far", "keep", "mask"):
        out = tmp_path / f"{mode}.npy"
        code, log = dav2("image", photo, "-m", vits_checkpoint, "-o", out, "--sky", mode, *SMALL)
        assert code == 0, log
        outputs[mode] = (out.read_bytes(), out.with_name(out.name + ".json").read_text())
        assert "sky" not in _description(out)
    assert outputs["far"] == outputs["keep"] == outputs["mask"]
    assert not list(tmp_path.glob("*.sky.png"))
    code, log = dav2("image", photo, "-m", vits_checkpoint, "-o", tmp_path / "d.png", "--sky", "mask", *SMALL)
    assert code == 0, log  # no mask to write, so no format to refuse
