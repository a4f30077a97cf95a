"""Decoding a video one frame at a time, so memory never grows with its length.

A damaged or truncated file yields every frame that decodes, then records where and why it stopped, so the job
can keep the depth it made and say so in one line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from dav2_cli.errors import UserError
from dav2_cli.media.video_probe import check_readable, frame_count_of, open_capture
from dav2_cli.media.video_selection import FrameSelection


class FrameReader:
    """Iterates `(index, frame)` over a video: BGR uint8 HxWx3 frames, one alive at a time.

    Keeps frames `start, start+every, ...` below `end` (frame indices, `end` exclusive, None = to the end).
    Frames it skips are only grabbed (decoded, never converted to BGR). A damaged or truncated file is read
    as far as it decodes, then iteration simply stops; afterwards `stopped_early` tells whether that happened
    and `error` is one line for the user. That needs the container's frame count: a file that has none cannot
    be told from a complete one, and one frame short of the count is taken as a normal end, because counts
    derived from a duration are rounded. Containers that store no count (WebM, Matroska) get one estimated as
    duration x nominal rate, which a variable-rate file (a recording that paused) never reaches; so a file whose
    last frame's timestamp reached its duration ended normally, whatever the estimate said.

    `frames_read` is how far decoding got: the number of frames taken from the file, skipped ones included.
    The file is opened at construction (so a bad file raises UserError there) and closed when iteration ends
    or `close()` is called.
    """

    def __init__(self, path, *, start: int = 0, end: int | None = None, every: int = 1):
        self.selection = FrameSelection(start, end, every)
        self.path = Path(path)
        check_readable(self.path)
        self._capture = open_capture(self.path)
        self.frame_count = frame_count_of(self._capture)
        self._nominal_fps = self._capture.get(cv2.CAP_PROP_FPS)
        self._last_ms: float | None = None  # the last grabbed frame's timestamp, from the start of the stream
        self.frames_read = 0
        self.stopped_early = False
        self.error: str | None = None
        self._frame_hw: tuple[int, int] | None = None
        self._frames = self._decode()

    def __iter__(self) -> FrameReader:
        return self

    def __next__(self) -> tuple[int, np.ndarray]:
        return next(self._frames)

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._frames.close()
        self._capture.release()

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        try:
            index = 0
            while not self.selection.past_the_end(index):
                wanted = self.selection.includes(index)
                if not self._capture.grab():
                    self._note_stop(index)
                    return
                self._last_ms = self._capture.get(cv2.CAP_PROP_POS_MSEC)
                frame = None
                if wanted:
                    ok, frame = self._capture.retrieve()
                    if not ok:
                        self._note_stop(index)
                        return
                index += 1
                self.frames_read = index
                if frame is not None:
                    self._check_size(index - 1, frame)
                    yield index - 1, frame
                    frame = None  # let it go before decoding the next one
        finally:
            self._capture.release()

    def _check_size(self, index: int, frame: np.ndarray) -> None:
        if self._frame_hw is None:
            self._frame_hw = frame.shape[:2]
        elif frame.shape[:2] != self._frame_hw:  # a depth video has one size, as the model's batches do
            raise UserError(f"{self.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]} but the video began "
                            f"at {self._frame_hw[1]}x{self._frame_hw[0]}; videos that change size are not supported")

    def _reached_the_end(self) -> bool:
        """Whether the last frame decoded lies within ~2 frames of the stream's end (see the class docstring):
        the same one-frame allowance as the count, plus the last frame's own duration."""
        fps = self._nominal_fps
        if self._last_ms is None or not (math.isfinite(fps) and fps > 0 and self._last_ms > 0):
            return False
        return self._last_ms / 1000 * fps + 2.5 >= self.frame_count  # in frames at the nominal rate

    def _note_stop(self, index: int) -> None:
        if self.frame_count is not None and index < self.frame_count - 1 and not self._reached_the_end():
            self.stopped_early = True
            self.error = (
                f"{self.path}: decoding stopped at frame {index} of {self.frame_count} (file truncated or damaged)"
            )


def iter_frames(path, *, start: int = 0, end: int | None = None, every: int = 1) -> FrameReader:
    """Stream `(index, BGR uint8 frame)` from `path`; see FrameReader for selection and how damage shows."""
    return FrameReader(path, start=start, end=end, every=every)


