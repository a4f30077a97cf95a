"""What a video file holds before its first frame is decoded: size, exact frame rate, length, audio.

Depth videos drift against their source when the rate is truncated to an integer (29.97 → 29), so the rate is
read as an exact fraction from ffmpeg's own account of the stream; OpenCV's float is only the fallback. The
ffmpeg helpers that reading and writing share (which executable, how it is started) live here too.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2

from dav2_cli.errors import UserError

# FFmpeg's decoder chatter inside OpenCV ("Invalid NAL unit size", "partial file") would bury the one line the
# runner prints about a damaged file. OpenCV reads this once, when it first opens a video; a user's own
# setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET



_PROBE_TIMEOUT_S = 120
DETACHED = (
    {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {"start_new_session": True}
)


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know before the first frame.

    `fps` is exact (30000/1001, not 29.97). `frame_count` is the container's figure (or its estimate from the
    duration), None when it has none: good for progress bars, not a promise. `width`/`height` are those of the
    decoded frames, after any rotation the file asks for.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int | None
    has_audio: bool


@functools.cache
def find_ffmpeg() -> str | None:
    """The ffmpeg executable to use, or None when there is none.

    $DAV2_FFMPEG wins (a path or a command name; "none" turns ffmpeg off, which tests use to force the OpenCV
    fallback), then imageio-ffmpeg's static build, then `ffmpeg` on PATH. Cached: call `find_ffmpeg.cache_clear()`
    after changing the environment.
    """
    chosen = os.environ.get("DAV2_FFMPEG", "").strip()
    if chosen:
        if chosen.lower() == "none":
            return None
        found = shutil.which(chosen)
        if found is None:
            raise UserError(f"DAV2_FFMPEG={chosen}: no such executable")
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")




@dataclass(frozen=True)
class _Listing:
    """ffmpeg's account of one input file: `ffmpeg -i FILE` stderr plus a one-frame y4m header on stdout."""

    error: str | None  # why ffmpeg could not open the file; None when it could
    container: str = ""
    video_line: str | None = None  # the first (non cover-art) video stream's line
    audio_codecs: tuple[str, ...] = ()
    rate: Fraction | None = None  # exact rate of the decoded stream, from the y4m "F<num>:<den>" header

    @property
    def declares_rate(self) -> bool:
        return self.video_line is not None and bool(re.search(r"\d(k)? (fps|tbr)\b", self.video_line))

    @property
    def is_still_image(self) -> bool:
        return self.container == "image2" or self.container.endswith("_pipe")


def ffmpeg_input(path: Path) -> str:
    # "file:" keeps names such as "-x.mp4" or "http:clip.mp4" from being read as options or protocols.
    return "file:" + str(path.absolute())


def list_streams(ffmpeg: str, path: Path) -> _Listing | None:
    """Ask ffmpeg what `path` holds. None when ffmpeg itself could not be run to the end."""
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-i", ffmpeg_input(path),
        # Decoding one frame to a 2x2 y4m is the only way ffmpeg alone states the rate as an exact fraction
        # (its listing rounds to 2 decimals); it is the rate OpenCV decodes at (both use av_guess_frame_rate).
        "-map", "0:v:0?", "-frames:v", "1", "-vf", "scale=2:2", "-pix_fmt", "gray", "-f", "yuv4mpegpipe", "pipe:1",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=_PROBE_TIMEOUT_S, **DETACHED)
    except (OSError, subprocess.TimeoutExpired):
        return None
    stderr = done.stderr.decode("utf-8", "replace")
    header = re.search(r"^Input #0, (.+), from '", stderr, re.MULTILINE)
    if header is None:
        return _Listing(error=_open_failure_reason(stderr))
    video_line, audio_codecs = None, []
    for line in stderr[header.end():].splitlines()[1:]:
        if not line.startswith(" "):
            break  # the input section ends where "Stream mapping:" / "Output #0" begin
        stream = re.match(r"\s+Stream #0:\d+\S*: (Video|Audio): (\w+)", line)
        if stream is None:
            continue
        if stream[1] == "Audio":
            audio_codecs.append(stream[2])
        elif video_line is None and "(attached pic)" not in line:
            video_line = line
    y4m = re.match(rb"YUV4MPEG2 [^\n]*?\bF(\d+):(\d+)", done.stdout)
    rate = Fraction(int(y4m[1]), int(y4m[2])) if y4m and int(y4m[1]) > 0 and int(y4m[2]) > 0 else None
    return _Listing(None, header[1], video_line, tuple(audio_codecs), rate)


def _open_failure_reason(stderr: str) -> str:
    for line in stderr.splitlines():
        found = re.search(r"Error opening input: (.+?)\.?$", line)
        if found:
            return found[1]
    lines = [strip_log_prefix(line) for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg could not read it"


def strip_log_prefix(line: str) -> str:
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())


def check_readable(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: cannot open video (no such file)")
    if path.is_dir():
        raise UserError(f"{path}: cannot open video (it is a folder)")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: cannot open video (permission denied)")


def open_capture(path: Path) -> cv2.VideoCapture:
    # CAP_FFMPEG only: other backends would read "%d" in a name as an image sequence or a device path.
    # (OpenCV's own warnings about a file it cannot open are silenced by the command line: cli.py)
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise UserError(f"{path}: cannot open video (not a video, or a format this OpenCV cannot decode)")
    return capture


def frame_count_of(capture: cv2.VideoCapture) -> int | None:
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    # Streams without an index (raw .h264, .mjpeg) report nonsense such as -1.9e14.
    return int(count) if math.isfinite(count) and count > 0 else None


MIN_RATE, MAX_RATE = Fraction(1, 1000), Fraction(1000)  # a frame every ~17 minutes .. a high-speed camera


def _tidy_rate(rate: Fraction) -> Fraction:
    """A rate as the fraction it was meant to be: NTSC rates become k*1000/1001, others at most /1001."""
    if rate.denominator <= 1001:
        return rate
    ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
    if ntsc > 0 and abs(rate - ntsc) <= Fraction(1, 1000):
        return ntsc
    return rate.limit_denominator(1001)


def parse_rate(value: Fraction | int | float | str) -> Fraction:
    """A caller's rate: fractions ("30000/1001", Fraction) are kept, decimals (29.97) snapped like OpenCV's."""
    given = value
    try:
        if isinstance(value, str) and "/" not in value:
            value = float(value)
        rate = Fraction(value)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise UserError(f"frame rate {given}: not a number or fraction (e.g. 25, 29.97, 30000/1001)") from None
    # A fraction is meant exactly (a video's rate divided by --every can have any denominator); only decimals
    # are approximations to snap.
    rate = _tidy_rate(rate) if isinstance(value, float) else rate
    if not MIN_RATE <= rate <= MAX_RATE:
        raise UserError(f"frame rate {given}: must be between 1/1000 and 1000 frames per second")
    return rate


def _choose_fps(path: Path, listing: _Listing | None, opencv_fps: float, fps_override) -> Fraction:
    if fps_override is not None:
        return parse_rate(fps_override)
    rate = None
    if listing is None or listing.declares_rate:
        # ffmpeg's exact fraction first; OpenCV's float (the same rate as a double) when ffmpeg is absent or
        # could not decode a first frame.
        if listing is not None and listing.rate is not None:
            rate = _tidy_rate(listing.rate)
        elif math.isfinite(opencv_fps) and opencv_fps > 0:
            rate = _tidy_rate(Fraction(opencv_fps))
    if rate is None:
        raise UserError(f"{path}: the file states no frame rate; give one with --fps (e.g. --fps 25)")
    return rate


def probe(path, fps_override=None) -> VideoInfo:
    """Open `path` as a video and describe it, or raise UserError saying why it cannot be read.

    `fps_override` (a number or fraction such as "30000/1001") replaces the file's rate; it is required for
    files that state none. NTSC-style rates are returned as k*1000/1001. With ffmpeg, still images and files
    without a video stream are refused and `has_audio` is known; without it `has_audio` is False.
    """
    path = Path(path)
    check_readable(path)
    ffmpeg = find_ffmpeg()
    listing = list_streams(ffmpeg, path) if ffmpeg else None
    if listing is not None:
        if listing.error is not None:
            raise UserError(f"{path}: cannot open video ({listing.error})")
        if listing.video_line is None:
            raise UserError(f"{path}: cannot open video (it has no video stream)")
        if listing.is_still_image:
            raise UserError(f"{path}: cannot open video (it is a still image)")
    capture = open_capture(path)
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        opencv_fps = capture.get(cv2.CAP_PROP_FPS)
        frame_count = frame_count_of(capture)
    finally:
        capture.release()
    if width <= 0 or height <= 0:
        raise UserError(f"{path}: cannot open video (no frame size in the file)")
    fps = _choose_fps(path, listing, opencv_fps, fps_override)
    has_audio = listing is not None and bool(listing.audio_codecs)
    return VideoInfo(path, width, height, fps, frame_count, has_audio)

