"""Stereo views of a synthetic scene (a near square over a far plane) against the geometry's formula.

Each source pixel's colour encodes its own column (blue + 256 * green) and whether it is on the square (red), so
in an eye's view every pixel says which source pixel it shows, and so how far it moved.
"""

import numpy as np
import pytest

from dav2_cli.depth import nearness as nearness_rules
from dav2_cli.depth.stereo import edge_radius, stereo_views

HEIGHT, WIDTH = 120, 200
SQUARE = (slice(40, 80), slice(80, 120))


def scene(height=HEIGHT, width=WIDTH):
    cols = np.broadcast_to(np.arange(width), (height, width))
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 0] = cols % 256
    image[:, :, 1] = cols // 256
    image[SQUARE + (2,)] = 255
    near = np.zeros((height, width), dtype=np.float32)
    near[SQUARE] = 1.0
    return image, near


def shifts(view):
    source_col = view[:, :, 0].astype(np.int64) + 256 * view[:, :, 1].astype(np.int64)
    return np.arange(view.shape[1]) - source_col


def formula(divergence, convergence, near, width=WIDTH, height=HEIGHT):
    return divergence / 100 * max(width, height) / 2 * (near - convergence)


@pytest.mark.parametrize("divergence, convergence", [(2.0, 0.5), (5.0, 0.0), (8.0, 1.0), (3.3, 0.25)])
def test_disparity_follows_the_formula_and_near_moves_more(divergence, convergence):
    image, near = scene()
    left, right = stereo_views(image, near, divergence=divergence, convergence=convergence)
    on_square_left, on_square_right = left[:, :, 2] == 255, right[:, :, 2] == 255
    # The square is moved whole, never stretched: as many square pixels as in the source, in each eye.
    assert on_square_left.sum() == on_square_right.sum() == 40 * 40
    square_left, square_right = shifts(left)[on_square_left], shifts(right)[on_square_right]
    assert np.abs(square_left - formula(divergence, convergence, 1.0)).max() <= 1
    assert np.abs(square_right + formula(divergence, convergence, 1.0)).max() <= 1
    disparity = square_left.mean() - square_right.mean()
    assert abs(disparity - divergence / 100 * WIDTH * (1 - convergence)) <= 1
    # Background away from the square (its edge ring travels with it, its holes are filled) and from the
    # picture's sides (where the far plane leaves holes): the far plane's shift.
    far_shift, square_shift = formula(divergence, convergence, 0.0), formula(divergence, convergence, 1.0)
    margin = int(abs(far_shift)) + 2
    reach = int(abs(far_shift) + abs(square_shift)) + edge_radius(WIDTH, HEIGHT) + 2
    away = np.zeros((HEIGHT, WIDTH), dtype=bool)
    away[:, margin:WIDTH - margin] = True
    away[:, SQUARE[1].start - reach:SQUARE[1].stop + reach] = False
    assert np.abs(shifts(left)[away] - far_shift).max() <= 1
    assert np.abs(shifts(right)[away] + far_shift).max() <= 1
    # The near square moves right in the left eye and left in the right eye, more than the background does.
    assert square_left.mean() > np.median(shifts(left)[~on_square_left])
    assert square_right.mean() < np.median(shifts(right)[~on_square_right])


def test_holes_are_filled_from_the_background_side():
    image, near = scene()
    left, right = stereo_views(image, near, divergence=10.0, convergence=0.0)
    for view in (left, right):
        assert view.shape == image.shape and view.dtype == image.dtype
        rows = view[SQUARE[0]]
        # Every pixel shows a real source pixel of the picture (no black gaps): its column code is a valid one.
        source_col = rows[:, :, 0].astype(np.int64) + 256 * rows[:, :, 1].astype(np.int64)
        assert ((source_col >= 0) & (source_col < WIDTH)).all()
        # No foreground in a disocclusion: the square keeps its width on every row it crosses.
        assert ((rows[:, :, 2] == 255).sum(axis=1) == 40).all()


def test_a_flat_map_only_shifts_by_the_convergence_term():
    image, _ = scene()
    image[:, :, 2] = 0
    flat = np.full((HEIGHT, WIDTH), 0.2, dtype=np.float32)
    left, right = stereo_views(image, flat, divergence=4.0, convergence=0.5)
    expected = round(formula(4.0, 0.5, 0.2))  # -1.2 px -> -1
    inner = slice(10, WIDTH - 10)
    assert (shifts(left)[:, inner] == expected).all()
    assert (shifts(right)[:, inner] == -expected).all()


def test_the_foreground_edge_travels_with_the_foreground():
    image, near = scene()
    left, _ = stereo_views(image, near, divergence=10.0, convergence=0.0)
    radius = edge_radius(WIDTH, HEIGHT)
    square_shift = round(formula(10.0, 0.0, 1.0))
    row = left[60]
    # The background pixel just left of the square (its mixed edge, in real depth maps) moved with the square.
    assert shifts(left)[60, 80 + square_shift - radius] == square_shift
    assert row[80 + square_shift - radius, 2] == 0


def test_settings_out_of_range_are_refused():
    image, near = scene()
    with pytest.raises(ValueError, match="divergence"):
        stereo_views(image, near, divergence=50.0)
    with pytest.raises(ValueError, match="convergence"):
        stereo_views(image, near, convergence=1.5)
    with pytest.raises(ValueError, match="differ in size"):
        stereo_views(image[:10], near)


def test_sixteen_bit_and_gray_pictures_warp_alike():
    image, near = scene()
    left8, _ = stereo_views(image, near)
    left16, _ = stereo_views(image.astype(np.uint16) * 257, near)
    assert left16.dtype == np.uint16 and (left16 // 257 == left8).all()
    gray_left, _ = stereo_views(image[:, :, 0], near)
    assert (gray_left == left8[:, :, 0]).all()


def test_metric_depth_becomes_nearness_by_inverse_depth():
    metres = np.array([[1.0, 2.0, 4.0, 0.0, np.inf]], dtype=np.float32).repeat(20, axis=0)
    inverse = nearness_rules.to_inverse_depth(metres, "farther")
    assert np.allclose(inverse[0, :3], [1.0, 0.5, 0.25])
    assert np.isnan(inverse[0, 3]) and inverse[0, 4] == 0.0  # no distance; infinitely far
    relative = nearness_rules.nearness(1.0 / metres[:, :3], "nearer")
    assert np.allclose(nearness_rules.nearness(metres[:, :3], "farther"), relative)
    assert relative[0, 0] == 1.0 and relative[0, 2] == 0.0  # nearest is 1, farthest 0
    full = nearness_rules.nearness(metres, "farther")
    assert (full[:, 3:] == 0.0).all()  # no distance: far


def test_one_hot_pixel_does_not_flatten_the_scene():
    _, near = scene()
    near = near * 10.0 + 1.0
    near[0, 0] = 1e6  # a stray value at a depth edge
    stretched = nearness_rules.nearness(near, "nearer")
    assert stretched[SQUARE].min() == 1.0 and stretched[100, 10] == 0.0


def test_a_static_video_keeps_one_range_and_a_cut_restarts_it():
    _, near = scene()
    tracker = nearness_rules.NearnessRange("nearer")
    first = tracker.nearness(near * 3.0 + 1.0)
    for _ in range(5):
        assert np.array_equal(tracker.nearness(near * 3.0 + 1.0), first)
    flicker = near * 3.0 + 1.0
    flicker[SQUARE] = 7.0  # one frame's outlier moves the range a little, not all the way
    tracker.nearness(flicker)
    assert tracker.value_range[1] == pytest.approx(4.0 + nearness_rules.SMOOTHING * (7.0 - 4.0))
    tracker.nearness(near * 100.0, cut=True)
    assert tracker.value_range[1] == pytest.approx(100.0)


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="larger"):
        nearness_rules.to_inverse_depth(np.ones((2, 2)), "brighter")
