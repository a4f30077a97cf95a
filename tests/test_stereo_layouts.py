"""Stereo pictures packed for players: exact sizes, eyes where players look for them, anaglyph arithmetic."""

import numpy as np
import pytest

from dav2_cli.outputs import stereo_layouts as layouts

# Dubois' red-cyan least-squares matrices (rows R, G, B of the result; columns R, G, B of the eye), as he
# published them in 2009, typed here from the published table rather than taken from the module.
PUBLISHED_LEFT = [[0.437, 0.449, 0.164], [-0.062, -0.062, -0.024], [-0.048, -0.050, -0.017]]
PUBLISHED_RIGHT = [[-0.011, -0.032, -0.007], [0.377, 0.761, 0.009], [-0.026, -0.093, 1.234]]


def eyes(height=30, width=44, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return (rng.integers(0, top, (height, width, 3), endpoint=True).astype(dtype),
            rng.integers(0, top, (height, width, 3), endpoint=True).astype(dtype))


@pytest.mark.parametrize("layout, size", [("sbs", (88, 30)), ("half-sbs", (44, 30)), ("tb", (44, 60)),
                                          ("half-tb", (44, 30)), ("cross", (88, 30)), ("anaglyph", (44, 30))])
def test_layouts_have_their_exact_sizes(layout, size):
    left, right = eyes()
    picture = layouts.pack(left, right, layout)
    assert (picture.shape[1], picture.shape[0]) == size == layouts.frame_size(layout, 44, 30)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3


def test_odd_sides_give_each_eye_the_same_size():
    left, right = eyes(height=31, width=45)
    assert layouts.pack(left, right, "half-sbs").shape[:2] == (31, 44) == layouts.frame_size("half-sbs", 45, 31)[::-1]
    assert layouts.pack(left, right, "half-tb").shape[:2] == (30, 45)


def test_each_eye_sits_where_its_players_look():
    left, right = eyes()
    sbs, cross, tb = (layouts.pack(left, right, name) for name in ("sbs", "cross", "tb"))
    assert np.array_equal(sbs[:, :44], left) and np.array_equal(sbs[:, 44:], right)
    assert np.array_equal(cross[:, :44], right) and np.array_equal(cross[:, 44:], left)
    assert np.array_equal(tb[:30], left) and np.array_equal(tb[30:], right)


def test_half_layouts_squeeze_by_averaging():
    left = np.zeros((4, 8, 3), dtype=np.uint8)
    left[:, 1::2] = 200  # one-pixel stripes: sampling would keep one phase (0 or 200), averaging gives 100
    half = layouts.pack(left, left.copy(), "half-sbs")
    assert (half == 100).all()
    assert (layouts.pack(left, left.copy(), "half-tb")[:, 1::2] == 200).all()


@pytest.mark.parametrize("layout, anaglyph, name", [
    ("sbs", "dubois", "_LRF_Full_SBS"), ("half-sbs", "dubois", "_LR"), ("tb", "dubois", "_TBF_fulltb"),
    ("half-tb", "dubois", "_TB"), ("cross", "dubois", "_RLF_cross"), ("anaglyph", "half-color", "_redcyan_half-color")])
def test_suffixes_players_detect(layout, anaglyph, name):
    assert layouts.suffix(layout, anaglyph) == name


def srgb_to_linear(value):
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def linear_to_srgb(value):
    return value * 12.92 if value <= 0.0031308 else 1.055 * value ** (1 / 2.4) - 0.055


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_dubois_anaglyph_is_the_published_projection_in_linear_light(dtype):
    left, right = eyes(height=6, width=7, dtype=dtype, seed=3)
    picture = layouts.pack(left, right, "anaglyph", "dubois")
    top = np.iinfo(dtype).max
    for row in range(6):
        for col in range(7):
            l_rgb = [srgb_to_linear(v / top) for v in left[row, col, ::-1]]
            r_rgb = [srgb_to_linear(v / top) for v in right[row, col, ::-1]]
            expected_rgb = []
            for out in range(3):
                left_term = min(max(sum(PUBLISHED_LEFT[out][i] * l_rgb[i] for i in range(3)), 0.0), 1.0)
                right_term = min(max(sum(PUBLISHED_RIGHT[out][i] * r_rgb[i] for i in range(3)), 0.0), 1.0)
                expected_rgb.append(linear_to_srgb(min(left_term + right_term, 1.0)) * top)
            assert np.abs(picture[row, col, ::-1].astype(float) - expected_rgb).max() <= 1.0


def test_color_half_color_and_gray_anaglyphs_take_red_from_the_left_eye():
    left, right = eyes(seed=5)
    color = layouts.compose_anaglyph(left, right, "color")
    assert np.array_equal(color[:, :, 2], left[:, :, 2]) and np.array_equal(color[:, :, :2], right[:, :, :2])
    luma = lambda bgr: np.rint(0.299 * bgr[:, :, 2] + 0.587 * bgr[:, :, 1] + 0.114 * bgr[:, :, 0])  # noqa: E731
    half = layouts.compose_anaglyph(left, right, "half-color")
    assert np.abs(half[:, :, 2] - luma(left.astype(float))).max() <= 1
    assert np.array_equal(half[:, :, :2], right[:, :, :2])
    gray = layouts.compose_anaglyph(left, right, "gray")
    assert np.abs(gray[:, :, 2] - luma(left.astype(float))).max() <= 1
    assert np.abs(gray[:, :, 1] - luma(right.astype(float))).max() <= 1
    assert np.array_equal(gray[:, :, 0], gray[:, :, 1])


def test_unknown_names_are_refused():
    left, right = eyes()
    with pytest.raises(ValueError, match="layout"):
        layouts.pack(left, right, "over-under")
    with pytest.raises(ValueError, match="anaglyph"):
        layouts.suffix("anaglyph", "green-magenta")
