"""Which frames of a video a run takes, as frame indices: one rule for the readers, the plan and the passes.

Seconds become indices in the job's plan (they need the rate); from there on everything that asks "is frame i
taken?" or "how many frames will there be?" asks a FrameSelection, so the decoder, a frame folder's reader,
the progress bar and a fit on one frame can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameSelection:
    """Source frames `start, start+every, ...` below `end` (None: to the end of the file)."""

    start: int = 0
    end: int | None = None
    every: int = 1

    def __post_init__(self):
        if self.start < 0 or self.every < 1 or (self.end is not None and self.end < self.start):
            raise ValueError(f"bad frame selection start={self.start} end={self.end} every={self.every}")

    def count(self, frame_count: int | None) -> int | None:
        """How many frames the selection yields from a file of `frame_count` frames (None: unknown)."""
        limits = [limit for limit in (self.end, frame_count) if limit is not None]
        if not limits:
            return None
        return max(0, -(-(min(limits) - self.start) // self.every))  # ceil division

    def includes(self, index: int) -> bool:
        """Whether source frame `index` is one the selection yields."""
        return (index >= self.start and (self.end is None or index < self.end)
                and (index - self.start) % self.every == 0)

    def past_the_end(self, index: int) -> bool:
        """Whether no frame from `index` on is selected, so decoding can stop there."""
        return self.end is not None and index >= self.end

    def indices(self, frame_count: int) -> range:
        """The selected indices of a sequence of `frame_count` frames."""
        stop = frame_count if self.end is None else min(self.end, frame_count)
        return range(self.start, max(stop, self.start), self.every)
