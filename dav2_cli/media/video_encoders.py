"""The two encoders a depth video can go through: an ffmpeg process fed raw frames, or OpenCV's own writer.

Each takes frames, then finishes (raising UserError with the encoder's first complaint) or is killed; the
writer (video_write.py) decides which to use and owns the file's name and publication.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from dav2_cli.errors import UserError
from dav2_cli.media.video_probe import DETACHED

# OpenCV's bundled FFmpeg has no H.264 encoder, so H.264 degrades to MPEG-4 Part 2 there.
_OPENCV_FOURCC = {"h264": "mp4v", "vp9": "VP90", "ffv1": "FFV1"}


def _strip_log_prefix(line: str) -> str:
    """An encoder's complaint without ffmpeg's "[libx264 @ 0x...]" tags, for the one line the user sees."""
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())


class FfmpegProcess:
    """One ffmpeg run, its stderr in a file (a pipe nobody reads would fill and deadlock it)."""

    def __init__(self, argv: list[str], out_path: Path, *, feed: bool):
        self.out_path = out_path
        self._stderr = tempfile.TemporaryFile()
        # A session of its own: Ctrl-C in the terminal must not kill ffmpeg under the runner, which finishes
        # the item in hand and then stops.
        try:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.PIPE if feed else subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self._stderr, **DETACHED,
            )
        except OSError as error:
            self._stderr.close()
            raise UserError(f"{out_path}: cannot run ffmpeg {argv[0]} ({error.strerror})") from None

    def write(self, frame: np.ndarray) -> None:
        try:
            self._process.stdin.write(frame.data.cast("B"))
        except OSError:  # BrokenPipeError and friends: ffmpeg has died, its stderr says why
            self._process.wait()
            raise self._failure() from None

    def finish(self) -> None:
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except OSError:
            pass  # the exit status and stderr below tell the story
        if self._process.wait() != 0:
            raise self._failure()
        self._stderr.close()

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except OSError:
                pass
        self._stderr.close()

    def _failure(self) -> UserError:
        self._stderr.seek(0)
        lines = [_strip_log_prefix(line) for line in self._stderr.read().decode("utf-8", "replace").splitlines()]
        lines = [line for line in lines if line]
        self._stderr.close()
        # ffmpeg's first error is the cause; the lines after it ("Conversion failed!", ...) are consequences.
        reason = lines[0] if lines else f"exit status {self._process.returncode}"
        return UserError(f"{self.out_path}: ffmpeg failed ({reason})")


class OpenCVSink:
    """OpenCV's own encoder for when there is no ffmpeg: mp4v, VP9 or FFV1, no audio, rate within 0.001."""

    def __init__(self, temp: Path, out_path: Path, codec: str, fps: Fraction, size_wh: tuple[int, int],
                 gray16: bool):
        self.out_path = out_path
        params = [cv2.VIDEOWRITER_PROP_IS_COLOR, 0 if gray16 else 1,
                  cv2.VIDEOWRITER_PROP_DEPTH, cv2.CV_16U if gray16 else cv2.CV_8U]
        self._writer = cv2.VideoWriter(
            str(temp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*_OPENCV_FOURCC[codec]), float(fps), size_wh, params
        )
        if not self._writer.isOpened():
            self._writer.release()
            raise UserError(
                f"{out_path}: writing {codec} needs ffmpeg and none was found "
                "(install imageio-ffmpeg or point DAV2_FFMPEG at an ffmpeg)"
            )

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)

    def finish(self) -> None:
        self._writer.release()

    def kill(self) -> None:
        self._writer.release()
