"""Relative → metric: near/far, fitted points, and the CSV they come in."""

import numpy as np
import pytest

from dav2_cli.depth import alignment as align
from dav2_cli.errors import UserError


def relative_map(height=30, width=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((height, width)) * 5 + 0.5).astype(np.float32)


def test_near_far_puts_the_range_between_them():
    disparity = relative_map()
    conversion = align.from_near_far(disparity, near=0.5, far=10.0)
    depth = conversion.apply(disparity)
    assert depth[disparity == disparity.max()][0] == pytest.approx(0.5, rel=1e-6)  # largest disparity: nearest
    assert depth[disparity == disparity.min()][0] == pytest.approx(10.0, rel=1e-6)
    assert (depth >= 0.5 * (1 - 1e-6)).all() and (depth <= 10.0 * (1 + 1e-6)).all()
    # inverse depth is affine in disparity, as a relative model's output is
    inverse = 1.0 / depth.astype(np.float64)
    slope = np.polyfit(disparity.ravel(), inverse.ravel(), 1)
    assert np.allclose(np.polyval(slope, disparity), inverse, rtol=1e-5)


@pytest.mark.parametrize("near, far", [(2.0, 1.0), (0.0, 5.0), (1.0, 1.0)])
def test_near_far_must_be_ordered(near, far):
    with pytest.raises(UserError, match="near < far"):
        align.from_near_far(relative_map(), near, far)


def test_fit_recovers_a_known_scale_and_shift():
    disparity = relative_map()
    truth = align.DisparityToDepth(0.37, 0.05, "truth")
    depth = truth.apply(disparity)
    rng = np.random.default_rng(3)
    points = [align.KnownPoint(float(x), float(y), float(depth[y, x]))
              for x, y in zip(rng.integers(0, 40, 12), rng.integers(0, 30, 12))]
    fitted = align.fit_points(disparity, points, "points.csv")
    assert fitted.scale == pytest.approx(0.37, rel=1e-5) and fitted.shift == pytest.approx(0.05, abs=1e-6)
    assert fitted.details["rms_relative_error"] < 1e-5 and fitted.details["points"] == 12
    np.testing.assert_allclose(fitted.apply(disparity), depth, rtol=1e-4)


def test_fit_is_weighted_towards_relative_error():
    # 1/Z = d exactly at 1 m and 2 m, the far point measured 20% long. Unweighted least squares on 1/Z barely
    # sees the far point's error (0.017 in 1/Z) and leaves it all there; weighting by Z^2 shares it out.
    disparity = np.array([[1.0, 0.5, 0.1]], dtype=np.float32)
    truth = np.array([1.0, 2.0, 12.0])
    points = [align.KnownPoint(x, 0, depth) for x, depth in enumerate(truth)]
    fitted = align.fit_points(disparity, points, "p.csv")
    weighted_error = np.abs(fitted.apply(disparity)[0] - truth) / truth
    slope, intercept = np.polyfit(disparity[0], 1 / truth, 1)
    unweighted_error = np.abs(1 / (slope * disparity[0] + intercept) - truth) / truth
    assert weighted_error.max() < 0.6 * unweighted_error.max()
    assert fitted.details["max_relative_error"] == pytest.approx(weighted_error.max(), rel=1e-4)


def test_subpixel_points_are_interpolated():
    disparity = np.tile(np.arange(10, dtype=np.float32), (4, 1)) + 1
    assert align.sample(disparity, 2.5, 1.0) == pytest.approx(3.5)
    assert np.isnan(align.sample(disparity, 10.0, 1.0))  # outside the image


def test_fewer_than_two_usable_points_are_refused():
    disparity = relative_map()
    with pytest.raises(UserError, match="1 usable point .*at least 2"):
        align.fit_points(disparity, [align.KnownPoint(3, 4, 2.0), align.KnownPoint(500, 4, 2.0)], "p.csv")
    with pytest.raises(UserError, match="0 usable points"):
        align.fit_points(disparity, [align.KnownPoint(3, 4, -2.0)], "p.csv")
    flat = np.ones((5, 5), dtype=np.float32)
    with pytest.raises(UserError, match="same value"):
        align.fit_points(flat, [align.KnownPoint(1, 1, 2.0), align.KnownPoint(3, 3, 5.0)], "p.csv")


def test_points_that_reverse_the_depth_order_are_refused():
    disparity = np.array([[1.0, 2.0]], dtype=np.float32)  # the right pixel is nearer (relative: larger = nearer)
    with pytest.raises(UserError, match="nearer things farther"):
        align.fit_points(disparity, [align.KnownPoint(0, 0, 1.0), align.KnownPoint(1, 0, 5.0)], "p.csv")


def test_metric_maps_are_fitted_on_their_inverse():
    metric = np.array([[1.0, 2.0, 4.0]], dtype=np.float32)
    disparity = align.model_disparity(metric, farther=True)
    np.testing.assert_allclose(disparity, [[1.0, 0.5, 0.25]])
    fitted = align.fit_points(disparity, [align.KnownPoint(0, 0, 2.0), align.KnownPoint(2, 0, 8.0)], "p.csv")
    np.testing.assert_allclose(fitted.apply(disparity), [[2.0, 4.0, 8.0]], rtol=1e-5)  # twice as far


def test_csv_with_and_without_a_header():
    plain = align.parse_points("10,20,1.5\n# a comment\n\n30.5,40,2.5,7\n", "p.csv")
    assert plain == [align.KnownPoint(10, 20, 1.5), align.KnownPoint(30.5, 40, 2.5, frame=7)]
    headed = align.parse_points("frame,depth_m,x,y,weight\n3,2.0,1,2,0.5\n", "p.csv")
    assert headed == [align.KnownPoint(1, 2, 2.0, frame=3, weight=0.5)]
    assert align.first_frame_with_points(plain) == 7
    assert align.first_frame_with_points(headed + [align.KnownPoint(0, 0, 1.0, frame=1)]) == 1


@pytest.mark.parametrize("text, message", [
    ("", "no points"),
    ("x,y\n1,2\n", "missing depth_m"),
    ("x,y,depth_m,colour\n", "unknown column 'colour'"),
    ("1,2\n", "line 1: expected x,y,depth_m"),
    ("1,2,abc\n", "line 1: not a number"),
    ("1,2,3\n1,2,3,1.5\n", "line 2: frame must be a whole number"),
])
def test_bad_csv_is_one_line_naming_the_place(text, message):
    with pytest.raises(UserError, match=message):
        align.parse_points(text, "p.csv")
