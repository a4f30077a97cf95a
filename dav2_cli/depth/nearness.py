"""Nearness D (0 far .. 1 near): the one quantity stereo views are shifted by, from any model's output.

Binocular disparity is proportional to 1/Z, so nearness is inverse depth stretched onto 0..1. What the model
gives decides the first step, and that decision lives only here (`to_inverse_depth`):

* "nearer" (relative models: affine-invariant inverse depth, larger = nearer) is inverse depth already;
* "farther" (metric models, or relative maps converted to metres: larger = farther) becomes 1/Z.

A later model family whose output is another kind (log depth, say) adds its conversion to `to_inverse_depth`.

The stretch uses a robust range, the `LOW_PCT`/`HIGH_PCT` percentiles of the inverse depth (a few hot pixels
at a depth edge or in the sky must not squash the whole scene onto a sliver of depth). One picture uses its own
range. A video uses `NearnessRange`: the percentiles smoothed over time, so that snow, particles or a passing
object do not make the whole scene's depth breathe from frame to frame (a per-frame maximum shimmers), and
restarted at scene cuts, where a new shot's depth has nothing to do with the last one's.
"""

import math

import numpy as np

LARGER_NEARER = "nearer"  # relative models' inverse depth
LARGER_FARTHER = "farther"  # metres, or any depth that grows with distance
KINDS = (LARGER_NEARER, LARGER_FARTHER)

LOW_PCT, HIGH_PCT = 1.0, 99.0
SMOOTHING = 0.1  # how far a video's range moves towards each new frame's (an exponential moving average)
_RANGE_SAMPLES = 1 << 16  # about this many pixels feed the percentiles; plenty for 1%/99%, cheap at 4K


def to_inverse_depth(depth_hw, larger: str) -> np.ndarray:
    """float32 inverse depth (larger = nearer, any scale) of a model output whose larger values are `larger`.

    Depths that are not positive (or NaN) carry no distance: they become NaN, which nearness puts far; an
    infinite depth is infinitely far, inverse depth 0.
    """
    depth_hw = np.asarray(depth_hw, dtype=np.float32)
    if larger == LARGER_NEARER:
        return depth_hw
    if larger == LARGER_FARTHER:
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse_hw = np.float32(1.0) / depth_hw
        inverse_hw[~(depth_hw > 0)] = np.nan
        return inverse_hw
    raise ValueError(f"depth whose larger values are {larger!r}; known: {', '.join(KINDS)}")


def robust_range(values_hw, low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT) -> tuple[float, float] | None:
    """The (low_pct, high_pct) percentiles of the finite values, read on a strided sample; None when none are.
    Also the per-frame range a depth video's `--normalize ema` smooths (outputs/range_tracker.py)."""
    values_hw = np.asarray(values_hw)
    step = max(1, round(math.sqrt(values_hw.size / _RANGE_SAMPLES)))
    sample = values_hw[::step, ::step]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample, (low_pct, high_pct))
    return float(lo), float(hi)


def smoothed(previous: tuple[float, float], current: tuple[float, float], weight: float) -> tuple[float, float]:
    """One step of an exponential moving average of a (lo, hi) range: `weight` of the way towards `current`."""
    (lo, hi), (new_lo, new_hi) = previous, current
    return lo + weight * (new_lo - lo), hi + weight * (new_hi - hi)


def stretch(inverse_hw, value_range) -> np.ndarray:
    """float32 nearness: `inverse_hw` mapped from `value_range` onto 0..1 and clipped; NaN and a flat map are far."""
    inverse_hw = np.asarray(inverse_hw, dtype=np.float32)
    if value_range is None or not value_range[1] > value_range[0]:
        return np.zeros(inverse_hw.shape, dtype=np.float32)
    lo, hi = np.float32(value_range[0]), np.float32(value_range[1])
    nearness_hw = (inverse_hw - lo) / (hi - lo)
    np.clip(nearness_hw, 0.0, 1.0, out=nearness_hw)
    nearness_hw[np.isnan(nearness_hw)] = 0.0
    return nearness_hw


def nearness(depth_hw, larger: str) -> np.ndarray:
    """One picture's nearness, from its own robust range."""
    inverse_hw = to_inverse_depth(depth_hw, larger)
    return stretch(inverse_hw, robust_range(inverse_hw))


class NearnessRange:
    """A video's nearness, frame by frame: the robust range smoothed over time and restarted at scene cuts.

    Feed every frame in order to `nearness(depth_hw, cut=...)`. A static scene keeps exactly the same range in
    every frame, so its stereo disparity does not move.
    """

    def __init__(self, larger: str, smoothing: float = SMOOTHING):
        if larger not in KINDS:
            raise ValueError(f"depth whose larger values are {larger!r}; known: {', '.join(KINDS)}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.larger = larger
        self.smoothing = smoothing
        self.value_range: tuple[float, float] | None = None

    def nearness(self, depth_hw, *, cut: bool = False) -> np.ndarray:
        inverse_hw = to_inverse_depth(depth_hw, self.larger)
        frame_range = robust_range(inverse_hw)
        if cut or self.value_range is None:
            self.value_range = frame_range
        elif frame_range is not None:  # a frame with no depth at all keeps the shot's range
            self.value_range = smoothed(self.value_range, frame_range, self.smoothing)
        return stretch(inverse_hw, self.value_range)
