"""render: the pictures and raw files a depth map becomes.

The colour expectations are ColorBrewer's published Spectral colours, not values read back from our own table,
and EXR files are read back by the OpenEXR library, which also writes the files our EXR reader must read.
"""

import importlib
import io
import os
import subprocess
import sys
import tempfile
import warnings
import zlib

import cv2
import numpy as np
import OpenEXR
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dav2_cli.outputs import colormaps, exr, formats, pictures, png, render
from dav2_cli.outputs.range_tracker import RangeTracker
from dav2_cli.errors import UserError

# ColorBrewer Spectral from its red end to its blue end, as (B, G, R) so it compares with OpenCV pictures.
SPECTRAL_BGR = [
    (0x42, 0x01, 0x9E),  # 9e0142
    (0x4F, 0x3E, 0xD5),  # d53e4f
    (0x43, 0x6D, 0xF4),  # f46d43
    (0x61, 0xAE, 0xFD),  # fdae61
    (0x8B, 0xE0, 0xFE),  # fee08b
    (0xBF, 0xFF, 0xFF),  # ffffbf
    (0x98, 0xF5, 0xE6),  # e6f598
    (0xA4, 0xDD, 0xAB),  # abdda4
    (0xA5, 0xC2, 0x66),  # 66c2a5
    (0xBD, 0x88, 0x32),  # 3288bd
    (0xA2, 0x4F, 0x5E),  # 5e4fa2
]


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    # A NaN cast or a 0/0 shows up as a RuntimeWarning before it shows up as a wrong pixel.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def ramp(height=4, width=9, lo=1.0, hi=5.0):
    return np.tile(np.linspace(lo, hi, width, dtype=np.float32), (height, 1))


def read_exr(data):
    """(the float32 "Y" channel, the header) of EXR bytes, as the OpenEXR library reads them."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "depth.exr")
        with open(path, "wb") as file:
            file.write(data)
        part = OpenEXR.File(path, separate_channels=True).parts[0]
        assert list(part.channels) == ["Y"]
        return part.channels["Y"].pixels, part.header


def read_exr_y(data):
    pixels, _ = read_exr(data)
    assert pixels.dtype == np.float32
    return pixels


def colour_at(level):
    """Spectral_r's entry `level` (0 = far end), reached through a depth in the middle of that level's bin."""
    depth = np.array([[(level + 0.5) / 255]], dtype=np.float32)
    return tuple(int(v) for v in pictures.to_visual(depth, "color", value_range=(0.0, 1.0))[0, 0])


# --- direction: near is bright -------------------------------------------------------------------------------


def test_relative_depth_near_is_bright():
    depth = ramp()  # relative output: larger = nearer
    gray = pictures.to_visual(depth, "gray")
    assert gray.dtype == np.uint8 and gray.shape == depth.shape
    assert (gray[:, -1] == 255).all() and (gray[:, 0] == 0).all()
    assert (np.diff(gray.astype(int), axis=1) >= 0).all()


def test_metric_depth_near_is_bright():
    depth = ramp()  # meters: larger = farther
    gray = pictures.to_visual(depth, "gray", metric=True)
    assert (gray[:, 0] == 255).all() and (gray[:, -1] == 0).all()
    assert (np.diff(gray.astype(int), axis=1) <= 0).all()


@pytest.mark.parametrize("metric", [False, True])
def test_invert_flips_the_direction(metric):
    depth = ramp()
    plain = pictures.to_visual(depth, "gray16", metric=metric)
    inverted = pictures.to_visual(depth, "gray16", metric=metric, invert=True)
    assert (plain[:, 0] == inverted[:, -1]).all() and (plain[:, -1] == inverted[:, 0]).all()
    # Mirrored levels, up to the rounding of an exact half (the ramp's midpoint lands on 32767.5).
    assert np.abs(inverted.astype(int) - (65535 - plain.astype(int))).max() <= 1


def test_colour_maps_near_to_the_top_of_the_colormap():
    depth = ramp()
    colour = pictures.to_visual(depth, "color")
    assert colour.shape == depth.shape + (3,) and colour.dtype == np.uint8
    assert tuple(colour[0, -1]) == SPECTRAL_BGR[0]  # nearest: Spectral_r's red end
    assert tuple(colour[0, 0]) == SPECTRAL_BGR[-1]  # farthest: its blue end
    metric = pictures.to_visual(depth, "color", metric=True)
    assert tuple(metric[0, 0]) == SPECTRAL_BGR[0]


@settings(max_examples=40, deadline=None)
@given(
    depth=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
                     elements=st.floats(-1e4, 1e4, width=32)),  # fmt: skip
    metric=st.booleans(),
)
def test_levels_follow_depth_order_and_span_the_full_range(depth, metric):
    levels = pictures.to_visual(depth, "gray16", metric=metric).astype(np.int64).ravel()
    order = np.argsort(depth.ravel(), kind="stable")
    steps = np.diff(levels[order])
    assert (steps <= 0).all() if metric else (steps >= 0).all()
    if depth.max() > depth.min():
        assert levels.min() == 0 and levels.max() == 65535


# --- scaling, constant maps, NaN ----------------------------------------------------------------------------


def test_gray16_uses_the_full_16_bit_range():
    depth = ramp(width=4, lo=0.0, hi=3.0)  # 0, 1, 2, 3
    gray16 = pictures.to_visual(depth, "gray16")
    assert gray16.dtype == np.uint16
    assert gray16[0].tolist() == [0, 21845, 43690, 65535]  # not 8-bit values in a 16-bit file


def test_8_bit_levels_truncate_like_upstream():
    depth = np.array([[0.0, 0.5, 0.999, 1.0]], dtype=np.float32)
    # upstream: ((d - min) / (max - min) * 255).astype(uint8)
    assert pictures.to_visual(depth, "gray")[0].tolist() == [0, 127, 254, 255]


def test_colour_equals_upstreams_normalise_then_index_rule():
    depth = np.random.default_rng(3).random((31, 47), dtype=np.float32) * 9 + 0.5
    levels = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).astype(np.uint8)
    table = np.array([colour_at(level) for level in range(256)], dtype=np.uint8)
    expected = table[levels]
    assert np.array_equal(pictures.to_visual(depth, "color"), expected)


@pytest.mark.parametrize("fmt", formats.VISUAL_FORMATS)
def test_constant_map_renders_as_far_without_dividing_by_zero(fmt):
    depth = np.full((3, 5), 2.5, dtype=np.float32)
    picture = pictures.to_visual(depth, fmt)
    far = pictures.to_visual(ramp(), fmt)[0, 0]  # the far end of a normal map
    assert (picture == far).all()
    inverted = pictures.to_visual(depth, fmt, invert=True)
    assert (inverted == pictures.to_visual(ramp(), fmt, invert=True)[0, 0]).all()


def test_depth_range_ignores_non_finite_values():
    depth = ramp()
    assert pictures.depth_range(depth) == (1.0, 5.0)
    depth[0, 0], depth[1, 1], depth[2, 2] = np.nan, np.inf, -np.inf
    lo, hi = pictures.depth_range(depth)
    assert np.isfinite([lo, hi]).all() and lo >= 1.0 and hi == 5.0
    assert pictures.depth_range(np.full((2, 2), np.nan, np.float32)) == (0.0, 0.0)


@pytest.mark.parametrize("metric", [False, True])
def test_nan_and_inf_render_as_far(metric):
    depth = ramp()
    depth[0, 3], depth[1, 4], depth[2, 5] = np.nan, np.inf, -np.inf
    gray = pictures.to_visual(depth, "gray", metric=metric)
    assert gray[0, 3] == gray[1, 4] == gray[2, 5] == 0
    assert gray[3].max() == 255 and gray[3].min() == 0  # the finite pixels still span the range
    inverted = pictures.to_visual(depth, "gray", metric=metric, invert=True)
    assert inverted[0, 3] == inverted[1, 4] == inverted[2, 5] == 255
    colour = pictures.to_visual(depth, "color", metric=metric, value_range=(1.0, 5.0))
    assert tuple(colour[0, 3]) == SPECTRAL_BGR[-1]
    all_nan = pictures.to_visual(np.full((2, 3), np.nan, np.float32), "gray16")
    assert (all_nan == 0).all()


def test_value_range_fixes_the_normalisation_and_clips():
    depth = np.array([[0.0, 2.0, 3.0, 4.0, 9.0]], dtype=np.float32)
    gray = pictures.to_visual(depth, "gray16", value_range=(2.0, 4.0))
    assert gray[0].tolist() == [0, 0, 32768, 65535, 65535]
    metric = pictures.to_visual(depth, "gray16", value_range=(2.0, 4.0), metric=True)
    assert metric[0].tolist() == [65535, 65535, 32768, 0, 0]
    with pytest.raises(ValueError):
        pictures.to_visual(depth, "gray", value_range=(4.0, 2.0))


def test_to_visual_rejects_raw_formats_and_bad_shapes():
    with pytest.raises(ValueError):
        pictures.to_visual(ramp(), "npy")
    with pytest.raises(ValueError):
        pictures.to_visual(np.zeros((2, 3, 1), np.float32), "gray")


# --- colormaps -----------------------------------------------------------------------------------------------


def test_spectral_r_hits_colorbrewer_colours_at_its_control_points():
    # Spectral_r runs blue (far) -> red (near); levels 0, 51, ..., 255 land exactly on every other control point.
    for level in range(0, 256, 51):
        assert colour_at(level) == SPECTRAL_BGR[::-1][level // 51 * 2]


def test_spectral_r_midpoint_is_the_pale_yellow_centre():
    centre = SPECTRAL_BGR[5]
    for level in (127, 128):  # the two entries either side of the centre (level 127.5)
        assert max(abs(a - b) for a, b in zip(colour_at(level), centre)) <= 2


def test_spectral_r_interpolates_linearly_between_control_points():
    # Control points sit every 25.5 levels, so level 25 is 25/25.5 of the way from the blue end (5e4fa2) to
    # 3288bd; the byte is that blend truncated, as upstream's `(cmap(x) * 255).astype(uint8)` does.
    blue, next_ = np.array(SPECTRAL_BGR[-1]), np.array(SPECTRAL_BGR[-2])
    blend = blue + (next_ - blue) * (25 / 25.5)
    actual = np.array(colour_at(25))
    assert ((blend - 1 < actual) & (actual <= blend + 1e-9)).all()


@pytest.mark.parametrize("cmap", [c for c in colormaps.CMAPS if c not in ("Spectral_r", "gray")])
def test_opencv_colormaps_are_opencvs_tables(cmap):
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    depth = levels.astype(np.float32)
    expected = cv2.applyColorMap(levels, getattr(cv2, f"COLORMAP_{cmap.upper()}"))
    assert np.array_equal(pictures.to_visual(depth, "color", cmap=cmap), expected)


def test_gray_colormap_gives_equal_channels():
    colour = pictures.to_visual(ramp(), "color", cmap="gray")
    assert np.array_equal(colour[:, :, 0], pictures.to_visual(ramp(), "gray"))
    assert (colour == colour[:, :, :1]).all()


def test_unknown_colormap_is_a_user_error():
    with pytest.raises(UserError, match="colormap"):
        pictures.to_visual(ramp(), "color", cmap="rainbowish")


# --- formats and paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("out/a.png", "color"),
        ("A.PNG", "color"),
        ("a.jpg", "color"),
        ("a.jpeg", "color"),
        ("a.webp", "color"),
        ("a.npy", "npy"),
        ("a.exr", "exr"),
        ("a.tif", "tiff"),
        ("a.TIFF", "tiff"),
        ("a.PLY", "ply"),
        ("a.txt", None),
        ("noext", None),
    ],
)
def test_format_for_path(path, fmt):
    assert formats.format_for_path(path) == fmt


def test_extensions_and_aliases():
    assert [formats.extension_for(f) for f in formats.FORMATS] == [".png", ".png", ".png", ".npy", ".exr", ".tiff",
                                                                   ".ply", ".glb"]
    assert formats.extension_for("png") == ".png"
    assert formats.canonical_format("png") == "color"
    with pytest.raises(UserError, match="jpeg2000"):
        formats.canonical_format("jpeg2000")


# --- encode --------------------------------------------------------------------------------------------------


def smooth_depth(height=37, width=53):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.sin(x / 7) + y / 11 + 3.0


def decode(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("fmt", formats.VISUAL_FORMATS)
def test_picture_formats_round_trip_through_png(fmt):
    depth = smooth_depth()
    data = render.encode(depth, fmt, metric=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(decode(data), pictures.to_visual(depth, fmt, metric=True))


@pytest.mark.parametrize("deflate", ["installed", "zlib"])  # zlib: where isal has no wheel
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3), (37, 53, 4), (1, 9, 3), (9, 1)])
def test_png_files_hold_exactly_the_pixels_given(dtype, shape, deflate, monkeypatch):
    if deflate == "zlib":
        monkeypatch.setattr(png, "deflate", zlib)
    picture = np.random.default_rng(sum(shape)).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    data = png.encode(picture)
    decoded = decode(data)  # OpenCV's reader checks every chunk's CRC and the zlib stream's checksum
    assert decoded.dtype == dtype and np.array_equal(decoded, picture)


def test_png_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="8- or 16-bit"):
        png.encode(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="cannot write"):
        png.encode(np.zeros((4, 4, 2), np.uint8))


def test_png_alias_encodes_the_colour_picture():
    depth = smooth_depth()
    assert render.encode(depth, "png") == render.encode(depth, "color")


def test_npy_round_trips_exactly():
    depth = smooth_depth().astype(np.float64)  # a model may hand over float64; the file holds float32
    depth[0, 0] = np.nan
    loaded = np.load(io.BytesIO(render.encode(depth, "npy")), allow_pickle=False)
    assert loaded.dtype == np.float32
    assert np.array_equal(loaded, depth.astype(np.float32), equal_nan=True)


def test_tiff_round_trips_exactly():
    depth = smooth_depth() * 123.456
    data = render.encode(depth, "tiff")
    decoded = decode(data)
    assert decoded.dtype == np.float32 and np.array_equal(decoded, depth)
    assert render.encode(depth, "tiff", ext=".tif") == data


@pytest.mark.parametrize("shape", [(1, 1), (16, 16), (37, 53), (50, 3)])
def test_exr_round_trips_exactly(shape):
    depth = smooth_depth(*shape) * 17.5
    depth[0, 0] = np.nan
    assert np.array_equal(read_exr_y(render.encode(depth, "exr")), depth, equal_nan=True)


@pytest.mark.parametrize("compression", ["NO_COMPRESSION", "ZIPS_COMPRESSION", "ZIP_COMPRESSION"])
def test_exr_written_by_openexr_reads_back_exactly(tmp_path, compression):
    depth = smooth_depth(37, 53) * 17.5
    depth[3, 4] = np.nan
    path = str(tmp_path / "d.exr")
    header = {"compression": getattr(OpenEXR, compression), "type": OpenEXR.scanlineimage, "lo": "0.5"}
    OpenEXR.File(header, {"Y": depth}).write(path)
    data = (tmp_path / "d.exr").read_bytes()
    assert np.array_equal(exr.decode(data, path), depth, equal_nan=True)
    assert exr.read_description(data)["lo"] == 0.5


def test_exr_compresses_smooth_maps_and_stores_noise_raw():
    smooth = np.zeros((64, 64), np.float32)
    assert len(render.encode(smooth, "exr")) < smooth.nbytes // 10
    noise = np.random.default_rng(5).standard_normal((40, 40)).astype(np.float32)
    assert np.array_equal(read_exr_y(render.encode(noise, "exr")), noise)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_colour_in_eight_bit_containers(ext):
    depth = smooth_depth()
    decoded = decode(render.encode(depth, "color", ext=ext))
    assert decoded.shape == depth.shape + (3,) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - pictures.to_visual(depth, "color")).mean() < 6


def test_gray16_refuses_an_eight_bit_container():
    with pytest.raises(UserError, match="gray16"):
        render.encode(smooth_depth(), "gray16", ext=".jpg")


@pytest.mark.parametrize(("fmt", "ext"), [("npy", ".png"), ("exr", ".npy"), ("color", ".bmp"), ("gray", ".npy")])
def test_mismatched_extension_is_a_user_error(fmt, ext):
    with pytest.raises(UserError, match=ext):
        render.encode(smooth_depth(), fmt, ext=ext)


# --- side by side --------------------------------------------------------------------------------------------


def test_side_by_side_puts_the_image_left_and_the_picture_right():
    depth = smooth_depth()
    image = np.random.default_rng(7).integers(0, 256, depth.shape + (3,), dtype=np.uint8)
    colour = pictures.to_visual(depth, "color")
    combined = pictures.side_by_side(image, colour)
    assert combined.shape == (37, 106, 3) and combined.dtype == np.uint8
    assert np.array_equal(combined[:, :53], image) and np.array_equal(combined[:, 53:], colour)


def test_side_by_side_with_gray_expands_to_three_channels():
    depth = smooth_depth()
    image = np.full(depth.shape + (3,), 200, np.uint8)
    gray = pictures.to_visual(depth, "gray")
    combined = pictures.side_by_side(image, gray)
    assert combined.shape == (37, 106, 3)
    assert all(np.array_equal(combined[:, 53:, c], gray) for c in range(3))


def test_side_by_side_gray16_scales_an_8_bit_image_onto_16_bits():
    depth = smooth_depth()
    image = np.zeros(depth.shape + (3,), np.uint8)
    image[0, 0], image[0, 1] = 255, 1
    combined = pictures.side_by_side(image, pictures.to_visual(depth, "gray16"))
    assert combined.dtype == np.uint16
    assert combined[0, 0].tolist() == [65535] * 3 and combined[0, 1].tolist() == [257] * 3


def test_side_by_side_colour_brings_a_16_bit_image_down_to_8_bits():
    depth = smooth_depth()
    image = np.full(depth.shape + (3,), 65535, np.uint16)
    image[0, 0] = 257 * 100
    combined = pictures.side_by_side(image, pictures.to_visual(depth, "color"))
    assert combined.dtype == np.uint8
    assert combined[0, 0].tolist() == [100] * 3 and combined[1, 1].tolist() == [255] * 3


def test_side_by_side_accepts_gray_and_bgra_images_and_rejects_other_sizes():
    depth = smooth_depth()
    gray = pictures.to_visual(depth, "gray")
    assert pictures.side_by_side(np.zeros(depth.shape, np.uint8), gray).shape == (37, 106, 3)
    assert pictures.side_by_side(np.zeros(depth.shape + (4,), np.uint8), gray).shape == (37, 106, 3)
    with pytest.raises(ValueError):
        pictures.side_by_side(np.zeros((36, 53, 3), np.uint8), gray)


@pytest.mark.parametrize("fmt", formats.VISUAL_FORMATS)
def test_encode_side_by_side(fmt):
    depth = smooth_depth()
    image = np.full(depth.shape + (3,), 90, np.uint8)
    decoded = decode(render.encode(depth, fmt, image_bgr=image))
    assert decoded.shape == (37, 106, 3)
    assert decoded.dtype == (np.uint16 if fmt == "gray16" else np.uint8)
    assert (decoded[:, :53] == (90 * 257 if fmt == "gray16" else 90)).all()


@pytest.mark.parametrize("fmt", formats.RAW_FORMATS)
def test_side_by_side_with_a_raw_format_is_a_user_error(fmt):
    image = np.zeros((37, 53, 3), np.uint8)
    message = f"--side-by-side needs a picture format (color, gray, gray16), not {fmt}"
    with pytest.raises(UserError) as caught:
        render.encode(smooth_depth(), fmt, image_bgr=image)
    assert str(caught.value) == message


# --- range tracking for videos -------------------------------------------------------------------------------


def test_frame_mode_is_each_frames_min_max():
    tracker = RangeTracker("frame")
    assert tracker.update(ramp(lo=1.0, hi=5.0)) == (1.0, 5.0)
    assert tracker.update(ramp(lo=10.0, hi=20.0)) == (10.0, 20.0)


def test_global_mode_is_fixed_and_required():
    tracker = RangeTracker("global", global_range=(0.5, 8.0))
    assert tracker.update(ramp(lo=1.0, hi=5.0)) == (0.5, 8.0)
    assert tracker.update(ramp(lo=100.0, hi=200.0)) == (0.5, 8.0)
    with pytest.raises(ValueError, match="global_range"):
        RangeTracker("global")
    with pytest.raises(ValueError):
        RangeTracker("global", global_range=(3.0, 1.0))


def test_ema_starts_at_the_first_frames_percentiles_and_moves_slowly_after_a_jump():
    rng = np.random.default_rng(11)
    first = rng.uniform(0.0, 1.0, (120, 160)).astype(np.float32)
    tracker = RangeTracker("ema", alpha=0.1)
    lo0, hi0 = tracker.update(first)
    assert lo0 == pytest.approx(0.01, abs=0.01) and hi0 == pytest.approx(0.99, abs=0.01)

    jumped = first + 10.0  # a scene cut: everything 10 units farther along
    lo1, hi1 = tracker.update(jumped)
    assert lo1 == pytest.approx(lo0 + 0.1 * 10.0, abs=0.02)  # one tenth of the way, not all of it
    assert hi1 == pytest.approx(hi0 + 0.1 * 10.0, abs=0.02)
    for _ in range(60):
        lo, hi = tracker.update(jumped)
    assert lo == pytest.approx(10.01, abs=0.02) and hi == pytest.approx(10.99, abs=0.02)


def test_ema_ignores_a_few_extreme_pixels_and_empty_frames():
    depth = np.random.default_rng(12).uniform(1.0, 2.0, (100, 100)).astype(np.float32)
    depth[::50, ::50] = 1e6  # 4 hot pixels out of 10,000
    tracker = RangeTracker("ema")
    lo, hi = tracker.update(depth)
    assert 1.0 <= lo < 1.05 and 1.95 < hi <= 2.0
    assert tracker.update(np.full((100, 100), np.nan, np.float32)) == (lo, hi)
    assert RangeTracker("ema").update(np.full((4, 4), np.nan, np.float32)) == (0.0, 0.0)


def test_ema_subsamples_large_frames():
    y, x = np.mgrid[0:1080, 0:1920].astype(np.float32)
    depth = x / 1919  # 0..1 across the frame
    lo, hi = RangeTracker("ema").update(depth)
    assert lo == pytest.approx(0.01, abs=0.005) and hi == pytest.approx(0.99, abs=0.005)


@pytest.mark.parametrize(
    "kwargs", [{"mode": "median"}, {"alpha": 0.0}, {"alpha": 1.5}, {"low_pct": 50.0, "high_pct": 40.0}]
)
def test_tracker_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        RangeTracker(**kwargs)


def test_tracked_range_keeps_a_steady_scene_steady():
    # Two frames of the same scene with one noisy pixel differ under "frame" but not under "global".
    a = ramp(lo=1.0, hi=5.0)
    b = a.copy()
    b[0, 0] = 0.0
    frame = RangeTracker("frame")
    fixed = RangeTracker("global", global_range=(0.0, 5.0))
    pa, pb = (pictures.to_visual(f, "gray", value_range=frame.update(f)) for f in (a, b))
    assert not np.array_equal(pa[1:], pb[1:])
    qa, qb = (pictures.to_visual(f, "gray", value_range=fixed.update(f)) for f in (a, b))
    assert np.array_equal(qa[1:], qb[1:])


def test_format_table_colormap_names_and_input_sizes_load_without_numpy_or_opencv():
    # the CLI builds --help from them, which must not wait for numpy or OpenCV
    code = ("import sys; import dav2_cli.outputs.formats, dav2_cli.outputs.colormaps, dav2_cli.depth.input_size; "
            "print(sorted({'numpy', 'cv2', 'torch'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("row", formats.TABLE, ids=lambda row: row.name)
def test_every_format_in_the_table_has_its_writer(row):
    writer = importlib.import_module(f"dav2_cli.outputs.{row.writer}")
    assert callable(writer.encode_outputs)
    for ext in row.extensions:
        assert formats.format_for_path(f"x{ext.upper()}") in (row.name, "color")  # pictures default to colour
        formats.check_extension(row.name, ext)
    with pytest.raises(UserError):
        formats.check_extension(row.name, ".bmp")
