"""dav2's float32 depth equals upstream's `infer_image` wherever upstream's patch grid is even.

The reference is upstream's own model code (PyPI `depth-anything-v2==0.1.0`) with seeded random weights saved in
upstream's key layout; dav2 loads that file through its normal checkpoint path. Real weights cannot be
downloaded on the test machines, so random weights stand in; the comparison exercises every layer either way.
"""

import cv2
import numpy as np
import pytest
import torch

import dav2_cli
from benchmarks.upstream import upstream_model
from dav2_cli.depth import sizing as prep
from dav2_cli.errors import UserError

TOLERANCE = 1e-4  # of the depth range


def upstream_grid(image_hw, input_size):
    """The patch grid upstream's sizing (multiples of 14) gives this image."""
    height, width = image_hw
    scale = max(input_size / height, input_size / width)

    def side(x):
        y = int(np.round(x / 14) * 14)
        return y if y >= input_size else int(np.ceil(x / 14) * 14)

    return side(scale * height) // 14, side(scale * width) // 14


def relative_error(ours, reference):
    return float(np.abs(ours - reference).max() / (reference.max() - reference.min()))


# (height, width, input_size): landscape, portrait, small images that get upscaled, a square, all chosen so that
# upstream's own grid is even (checked below) and the comparison is like for like.
CASES = [(600, 800, 504), (800, 600, 504), (100, 150, 280), (150, 100, 280), (90, 200, 280), (333, 333, 280),
         (480, 640, 336)]


@pytest.mark.parametrize("height,width,input_size", CASES)
def test_sizes_match_upstream_where_its_grid_is_even(height, width, input_size):
    grid = upstream_grid((height, width), input_size)
    assert grid[0] % 2 == 0 and grid[1] % 2 == 0
    ours = prep.model_size((height, width), input_size)
    assert (ours[0] // 14, ours[1] // 14) == grid


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("image_hw,size_hw", [((1362, 2048), (280, 420)), ((900, 700), (1008, 784)),
                                              ((1500, 500), (840, 280))])
def test_large_images_are_resized_as_one_full_resize_would(dtype, image_hw, size_hw):
    image = np.random.default_rng(image_hw[0]).integers(0, np.iinfo(dtype).max + 1, (*image_hw, 3), dtype=dtype)
    assert 4 * image.size > prep._ONE_PASS_BYTES  # the strip-wise path, not the one-pass fallback
    one_pass = cv2.resize(image.astype(np.float32), size_hw[::-1], interpolation=cv2.INTER_CUBIC)
    error = np.abs(prep._resized_bicubic(image, size_hw) - one_pass).max()
    assert error <= 1e-6 * np.iinfo(dtype).max


@pytest.mark.parametrize("height,width,input_size", CASES)
def test_relative_vits_equals_upstream(upstream_vits, vits_checkpoint, make_photo, each_backend, height, width,
                                      input_size):
    image = make_photo(height, width, seed=height + width)
    model = dav2_cli.load_model(vits_checkpoint, device="cpu", dtype="float32", backend=each_backend)
    ours = dav2_cli.predict(model, image, input_size=input_size)
    reference = upstream_vits.infer_image(image, input_size)
    assert ours.dtype == np.float32 and ours.shape == (height, width)
    assert reference.max() - reference.min() > 0
    assert relative_error(ours, reference) < TOLERANCE


@pytest.mark.parametrize("height,width,input_size", [CASES[0], CASES[2]])
def test_metric_vits_equals_upstream(upstream_vits_metric, vits_metric_checkpoint, make_photo, each_backend, height,
                                     width, input_size):
    image = make_photo(height, width, seed=7)
    model = dav2_cli.load_model(vits_metric_checkpoint, device="cpu", dtype="float32", backend=each_backend)
    assert model.config.metric and model.config.max_depth == 20.0
    ours = dav2_cli.predict(model, image, input_size=input_size)
    reference = upstream_vits_metric.infer_image(image, input_size)
    assert 0 < reference.min() and reference.max() <= 20.0
    assert relative_error(ours, reference) < TOLERANCE


def test_metric_max_depth_override_scales_output(upstream_vits_metric, vits_metric_checkpoint, make_photo,
                                                 each_backend):
    image = make_photo(120, 160)
    default = dav2_cli.predict(dav2_cli.load_model(vits_metric_checkpoint, "cpu", "float32", backend=each_backend),
                               image, 280)
    doubled = dav2_cli.predict(dav2_cli.load_model(vits_metric_checkpoint, "cpu", "float32", max_depth=40.0,
                                                   backend=each_backend), image, 280)
    np.testing.assert_allclose(doubled, 2 * default, rtol=1e-5, atol=1e-5 * float(default.max()))


@pytest.fixture(scope="module")
def upstream_vitb_and_checkpoint(tmp_path_factory):
    """Built once for both sizes below: initialising ~100M random parameters takes seconds."""
    reference_model = upstream_model("vitb", seed=1)
    path = tmp_path_factory.mktemp("vitb") / "depth_anything_v2_vitb.pth"
    torch.save(reference_model.state_dict(), path)
    return reference_model, path


@pytest.mark.parametrize("height,width,input_size", [(480, 640, 336), (150, 100, 280)])
def test_relative_vitb_equals_upstream(upstream_vitb_and_checkpoint, make_photo, height, width, input_size):
    reference_model, path = upstream_vitb_and_checkpoint
    model = dav2_cli.load_model(path, device="cpu", dtype="float32")
    assert model.config.encoder == "vitb" and model.config.heads == 12
    image = make_photo(height, width, seed=11)
    ours = dav2_cli.predict(model, image, input_size=input_size)
    assert relative_error(ours, reference_model.infer_image(image, input_size)) < TOLERANCE


def test_model_forward_equals_upstream_forward_on_odd_grid_too(upstream_vits, vits_checkpoint, each_backend):
    """The module itself accepts any multiple of 14, including upstream's default 518x518 (37x37 grid)."""
    model = dav2_cli.load_model(vits_checkpoint, device="cpu", dtype="float32", backend=each_backend)
    x = torch.randn(1, 3, 518, 392, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x)
        reference = upstream_vits(x)
    assert ours.shape == (1, 518, 392) and ours.dtype == torch.float32
    assert float((ours - reference).abs().max() / (reference.max() - reference.min())) < TOLERANCE


def test_a_bfloat16_model_still_returns_float32_close_to_float32(vits_checkpoint, make_photo):
    image = make_photo(60, 80)  # small: bfloat16 is emulated, and slow, on CPUs without native support
    exact = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32"), image, 112)
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "bfloat16")
    fast = dav2_cli.predict(model, image, 112)
    assert fast.dtype == np.float32
    assert np.abs(fast - exact).mean() / (exact.max() - exact.min()) < 0.01


@pytest.mark.parametrize(("image", "input_size", "error", "message"), [
    (None, 56, TypeError, "expected an HxWx3 BGR numpy array"),
    ([[1, 2, 3]], 56, TypeError, "got list"),
    (np.zeros((0, 0, 3), np.uint8), 56, UserError, "has no pixels"),
    (np.zeros((2, 40, 3), np.uint8), 56, UserError, "more than 16:1"),
    (np.zeros((28, 28, 3), np.float32), 56, ValueError, "uint8 or uint16"),
    (np.zeros((28, 28, 3), np.uint8), 0, UserError, "input size 0: expected a whole number from 28 to 4200"),
    (np.zeros((28, 28, 3), np.uint8), "56", UserError, "input size '56'"),
])
def test_predict_refuses_what_it_cannot_size_in_one_clear_exception(vits_checkpoint, image, input_size, error,
                                                                     message):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
    with pytest.raises(error, match=message):
        dav2_cli.predict(model, image, input_size)
