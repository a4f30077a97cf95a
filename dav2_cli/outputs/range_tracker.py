"""The normalisation range for each frame of a depth video, chosen so the pictures do not flicker."""

import math

from dav2_cli.depth.nearness import robust_range, smoothed
from dav2_cli.outputs.pictures import depth_range

NORMALIZE_MODES = ("ema", "frame", "global")


class RangeTracker:
    """The normalisation range for each frame of a video, chosen so depth videos do not flicker.

    The modes trade passes against stability and contrast:

    * "ema": one pass. The 1st/99th percentiles (`low_pct`/`high_pct`, estimated on a strided subsample so
      it stays cheap per frame) are smoothed by an exponential moving average with weight `alpha`; the
      first frame sets the start. Stable, robust to a few extreme pixels, but the range drifts slowly after
      a scene cut, and pixels beyond it clip.
    * "global": a fixed `global_range` given up front (the runner computes it in a first pass over the
      whole video). Exact and perfectly stable, but the video is read twice.
    * "frame": each frame's own finite min/max, the single-image rule. Maximum contrast, but it flickers.
    """

    def __init__(self, mode="ema", *, alpha=0.1, low_pct=1.0, high_pct=99.0, global_range=None):
        if mode not in NORMALIZE_MODES:
            raise ValueError(f"normalize mode must be one of {NORMALIZE_MODES}, got {mode!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not 0.0 <= low_pct < high_pct <= 100.0:
            raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct}, {high_pct}")
        if mode == "global":
            if global_range is None:
                raise ValueError('normalize mode "global" needs global_range=(lo, hi)')
            lo, hi = (float(v) for v in global_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"global_range must be finite with lo <= hi, got {global_range}")
            global_range = (lo, hi)
        self.mode = mode
        self.alpha = alpha
        self.low_pct = low_pct
        self.high_pct = high_pct
        self.global_range = global_range
        self._smoothed = None  # the EMA state, (lo, hi), once a frame with finite values has been seen

    def reset(self) -> None:
        """Forget the smoothed range (a scene cut): the next frame starts it afresh."""
        self._smoothed = None

    def update(self, depth_hw):
        """The (lo, hi) to normalise this frame with; frames must be passed in order."""
        if self.mode == "global":
            return self.global_range
        if self.mode == "frame":
            return depth_range(depth_hw)
        frame_range = robust_range(depth_hw, self.low_pct, self.high_pct)
        if frame_range is None:  # nothing to learn from this frame; keep the range the video had
            return self._smoothed if self._smoothed is not None else (0.0, 0.0)
        self._smoothed = frame_range if self._smoothed is None else smoothed(self._smoothed, frame_range, self.alpha)
        return self._smoothed
