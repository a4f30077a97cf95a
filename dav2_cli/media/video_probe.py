"""What a video file holds before its first frame is decoded: size, exact frame rate, length, audio.

Depth videos drift against their source when the rate is truncated to an integer (29.97 → 29), so the rate is
read as an exact fraction from the stream's own metadata through PyAV (FFmpeg's libraries, no log to parse);
OpenCV's float is only the fallback. The ffmpeg helpers that reading and writing share (which executable, how
it is started) live here too.
"""

from __future__ import annotations

import functools
import math
import os
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
    """What a container says it holds, read from its structured metadata (PyAV: FFmpeg's own libraries)."""

    error: str | None  # why the file could not be opened; None when it could
    container: str = ""  # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    video_codec: str | None = None  # the first video stream that is not cover art
    audio_codecs: tuple[str, ...] = ()
    rate: Fraction | None = None  # the rate FFmpeg decodes that stream at (av_guess_frame_rate), as OpenCV does
    declares_rate: bool = False  # whether the file states a rate (average or base); a guess from the time base is none
    pixel_format: str | None = None  # that stream's, e.g. yuv420p

    @property
    def is_still_image(self) -> bool:
        return self.container == "image2" or self.container.endswith("_pipe")


def ffmpeg_input(path: Path) -> str:
    # "file:" keeps names such as "-x.mp4" or "http:clip.mp4" from being read as options or protocols.
    return "file:" + str(path.absolute())


def list_streams(path: Path) -> _Listing:
    """What `path` holds, from the container's and streams' metadata; reads no frame."""
    import av

    try:
        container = av.open(ffmpeg_input(Path(path)), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        return _Listing(error=getattr(error, "strerror", None) or "FFmpeg could not read it")
    with container:
        attached = av.stream.Disposition.attached_pic
        videos = [stream for stream in container.streams.video if not stream.disposition & attached]
        # the codec's own name ("mp3"), not its decoder's ("mp3float"): the writer decides on it what to copy
        audio = tuple(stream.codec_context.codec.canonical_name for stream in container.streams.audio)
        if not videos:
            return _Listing(None, container.format.name, None, audio)
        video = videos[0]
        rate = Fraction(video.guessed_rate) if video.guessed_rate and video.guessed_rate > 0 else None
        if rate is not None and video.time_base and (rate * video.time_base).numerator != 1:
            # A frame is no whole number of time-base ticks (WebM's 1 ms holds no 30000/1001 frame), so the rate
            # FFmpeg read from the timestamps is rounded, as 2997/100 is: snapped like a decimal
            rate = _tidy_rate(Fraction(float(rate)))
        declares = bool(video.average_rate) or bool(video.base_rate)
        pixel_format = video.codec_context.format.name if video.codec_context.format is not None else None
        return _Listing(None, container.format.name, video.codec_context.codec.canonical_name, audio, rate, declares,
                        pixel_format)


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
        # The exact fraction first; OpenCV's float (the same rate as a double) where the stream gives none.
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
    files that state none. NTSC-style rates are returned as k*1000/1001. Still images and files without a
    video stream are refused. The size and the frame count are OpenCV's, the reader's: the size of the frames
    it decodes (rotated as the file asks), the count it will be held to when telling a truncated file.
    """
    path = Path(path)
    check_readable(path)
    listing = list_streams(path)
    if listing.error is not None:
        raise UserError(f"{path}: cannot open video ({listing.error})")
    if listing.video_codec is None:
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
    return VideoInfo(path, width, height, fps, frame_count, bool(listing.audio_codecs))

