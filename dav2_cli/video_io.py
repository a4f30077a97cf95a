"""Streaming video in and out, without the usual ways of losing a user's work.

Depth videos go wrong in well-known ways: the frame rate truncated to an integer (29.97 → 29, so the depth
drifts against the source), the audio dropped, every frame held in RAM, mp4v files browsers refuse, odd sizes
the H.264 encoder rejects, and half-written files left behind by a crash. So: frames are decoded one at a time
with OpenCV; the rate is kept as an exact fraction read from ffmpeg; frames are written through an ffmpeg pipe
at that exact rate into a hidden temporary file that is renamed into place only once it is complete; audio is
muxed from the source afterwards, cut to the video's length. Without ffmpeg, OpenCV's own encoders are the
fallback, with a warning about what is lost.
"""

from __future__ import annotations

import functools
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from dav2_cli.errors import UserError

# FFmpeg's decoder chatter inside OpenCV ("Invalid NAL unit size", "partial file") would bury the one line the
# runner prints about a damaged file. OpenCV reads this once, when it first opens a video; a user's own
# setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

SUPPORTED_EXTENSIONS = (".mp4", ".webm", ".mkv")

# Output containers: the ffmpeg muxer, the codec a bare extension means, the codecs the container can hold,
# and the audio codecs it takes as they are (None: any), with the encoder used for everything else.
_CONTAINERS = {
    ".mp4": ("mp4", "h264", ("h264", "vp9"), frozenset({"aac", "mp3", "alac", "ac3", "eac3"}), ("aac", "192k")),
    ".webm": ("webm", "vp9", ("vp9",), frozenset({"opus", "vorbis"}), ("libopus", "128k")),
    ".mkv": ("matroska", "ffv1", ("ffv1", "h264", "vp9"), None, None),
}

# 4:2:0 video is tagged BT.709 / limited range and converted with that matrix explicitly, so browsers and
# players agree on the colours of a colormap (untagged video is guessed as BT.601 by some, BT.709 by others).
_BT709_420 = [
    "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
    "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
]
_ENCODER_ARGS = {
    # CRF 18 keeps the smooth gradients of depth maps free of banding; faststart lets browsers play at once.
    # veryfast: on 960x540 depth maps it spends a third of medium's CPU time for files 3% larger, and the
    # encoder shares the CPU with the model (benchmarks/video_pipeline.py).
    "h264": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", *_BT709_420],
    # Constant quality (-b:v 0); cpu-used 4 with row threading is several times faster than libvpx's default.
    "vp9": ["-c:v", "libvpx-vp9", "-crf", "30", "-b:v", "0", "-deadline", "good", "-cpu-used", "4",
            "-row-mt", "1", *_BT709_420],
    # Intra-only with per-slice CRCs: the archival settings, so any frame can be cut out and damage is found.
    "ffv1": ["-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1"],
}
# OpenCV's bundled FFmpeg has no H.264 encoder, so H.264 degrades to MPEG-4 Part 2 there.
_OPENCV_FOURCC = {"h264": "mp4v", "vp9": "VP90", "ffv1": "FFV1"}

_PIX_FMTS_IN = ("bgr24", "gray16le")
_PROBE_TIMEOUT_S = 120
_DETACHED = (
    {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {"start_new_session": True}
)
_warned: set[str] = set()


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


# ---------------------------------------------------------------------------------------------------- reading


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


def _ffmpeg_input(path: Path) -> str:
    # "file:" keeps names such as "-x.mp4" or "http:clip.mp4" from being read as options or protocols.
    return "file:" + str(path.absolute())


def _list_streams(ffmpeg: str, path: Path) -> _Listing | None:
    """Ask ffmpeg what `path` holds. None when ffmpeg itself could not be run to the end."""
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-i", _ffmpeg_input(path),
        # Decoding one frame to a 2x2 y4m is the only way ffmpeg alone states the rate as an exact fraction
        # (its listing rounds to 2 decimals); it is the rate OpenCV decodes at (both use av_guess_frame_rate).
        "-map", "0:v:0?", "-frames:v", "1", "-vf", "scale=2:2", "-pix_fmt", "gray", "-f", "yuv4mpegpipe", "pipe:1",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=_PROBE_TIMEOUT_S, **_DETACHED)
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
    lines = [_strip_log_prefix(line) for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg could not read it"


def _strip_log_prefix(line: str) -> str:
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: cannot open video (no such file)")
    if path.is_dir():
        raise UserError(f"{path}: cannot open video (it is a folder)")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: cannot open video (permission denied)")


def _open_capture(path: Path) -> cv2.VideoCapture:
    # CAP_FFMPEG only: other backends would read "%d" in a name as an image sequence or a device path.
    # OpenCV warns on stderr about files it cannot open; the UserError below says it better.
    log_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    finally:
        cv2.utils.logging.setLogLevel(log_level)
    if not capture.isOpened():
        capture.release()
        raise UserError(f"{path}: cannot open video (not a video, or a format this OpenCV cannot decode)")
    return capture


def _frame_count(capture: cv2.VideoCapture) -> int | None:
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    # Streams without an index (raw .h264, .mjpeg) report nonsense such as -1.9e14.
    return int(count) if math.isfinite(count) and count > 0 else None


def _tidy_rate(rate: Fraction) -> Fraction:
    """A rate as the fraction it was meant to be: NTSC rates become k*1000/1001, others at most /1001."""
    if rate.denominator <= 1001:
        return rate
    ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
    if ntsc > 0 and abs(rate - ntsc) <= Fraction(1, 1000):
        return ntsc
    return rate.limit_denominator(1001)


def _parse_rate(value: Fraction | int | float | str) -> Fraction:
    """A caller's rate: fractions ("30000/1001", Fraction) are kept, decimals (29.97) snapped like OpenCV's."""
    try:
        if isinstance(value, str) and "/" not in value:
            value = float(value)
        rate = Fraction(value)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise UserError(f"frame rate {value!r}: not a number or fraction (e.g. 25, 29.97, 30000/1001)") from None
    if rate <= 0:
        raise UserError(f"frame rate {value!r}: must be positive")
    # A fraction is meant exactly (a video's rate divided by --every can have any denominator); only decimals
    # are approximations to snap.
    return _tidy_rate(rate) if isinstance(value, float) else rate


def _choose_fps(path: Path, listing: _Listing | None, opencv_fps: float, fps_override) -> Fraction:
    if fps_override is not None:
        return _parse_rate(fps_override)
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
    _check_readable(path)
    ffmpeg = find_ffmpeg()
    listing = _list_streams(ffmpeg, path) if ffmpeg else None
    if listing is not None:
        if listing.error is not None:
            raise UserError(f"{path}: cannot open video ({listing.error})")
        if listing.video_line is None:
            raise UserError(f"{path}: cannot open video (it has no video stream)")
        if listing.is_still_image:
            raise UserError(f"{path}: cannot open video (it is a still image)")
    capture = _open_capture(path)
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        opencv_fps = capture.get(cv2.CAP_PROP_FPS)
        frame_count = _frame_count(capture)
    finally:
        capture.release()
    if width <= 0 or height <= 0:
        raise UserError(f"{path}: cannot open video (no frame size in the file)")
    fps = _choose_fps(path, listing, opencv_fps, fps_override)
    has_audio = listing is not None and bool(listing.audio_codecs)
    return VideoInfo(path, width, height, fps, frame_count, has_audio)


class FrameReader:
    """Iterates `(index, frame)` over a video: BGR uint8 HxWx3 frames, one alive at a time.

    Keeps frames `start, start+every, ...` below `end` (frame indices, `end` exclusive, None = to the end).
    Frames it skips are only grabbed (decoded, never converted to BGR). A damaged or truncated file is read
    as far as it decodes, then iteration simply stops; afterwards `stopped_early` tells whether that happened
    and `error` is one line for the user. That needs the container's frame count: a file that has none cannot
    be told from a complete one, and one frame short of the count is taken as a normal end, because counts
    derived from a duration are rounded.

    `frames_read` is how far decoding got: the number of frames taken from the file, skipped ones included.
    The file is opened at construction (so a bad file raises UserError there) and closed when iteration ends
    or `close()` is called.
    """

    def __init__(self, path, *, start: int = 0, end: int | None = None, every: int = 1):
        if start < 0 or every < 1 or (end is not None and end < start):
            raise ValueError(f"bad frame selection start={start} end={end} every={every}")
        self.path = Path(path)
        self.start, self.end, self.every = start, end, every
        _check_readable(self.path)
        self._capture = _open_capture(self.path)
        self.frame_count = _frame_count(self._capture)
        self.frames_read = 0
        self.stopped_early = False
        self.error: str | None = None
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
            while self.end is None or index < self.end:
                wanted = index >= self.start and (index - self.start) % self.every == 0
                if not self._capture.grab():
                    self._note_stop(index)
                    return
                frame = None
                if wanted:
                    ok, frame = self._capture.retrieve()
                    if not ok:
                        self._note_stop(index)
                        return
                index += 1
                self.frames_read = index
                if frame is not None:
                    yield index - 1, frame
                    frame = None  # let it go before decoding the next one
        finally:
            self._capture.release()

    def _note_stop(self, index: int) -> None:
        if self.frame_count is not None and index < self.frame_count - 1:
            self.stopped_early = True
            self.error = (
                f"{self.path}: decoding stopped at frame {index} of {self.frame_count} (file truncated or damaged)"
            )


def iter_frames(path, *, start: int = 0, end: int | None = None, every: int = 1) -> FrameReader:
    """Stream `(index, BGR uint8 frame)` from `path`; see FrameReader for selection and how damage shows."""
    return FrameReader(path, start=start, end=end, every=every)


# ---------------------------------------------------------------------------------------------------- writing


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(f"dav2: warning: {message}", file=sys.stderr)


def _reserve_temp(final: Path) -> Path:
    """Create an empty hidden file beside `final` (same filesystem, so the final rename is atomic).

    The real extension stays last so OpenCV picks the right container from the name; created with O_EXCL and
    mode 0666 (less the umask) so the finished file gets ordinary permissions.
    """
    temp = final.with_name(f".{final.stem}.{secrets.token_hex(4)}.part{final.suffix}")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(descriptor)
    return temp


def _remove(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


class _FfmpegProcess:
    """One ffmpeg run, its stderr in a file (a pipe nobody reads would fill and deadlock it)."""

    def __init__(self, argv: list[str], out_path: Path, *, feed: bool):
        self.out_path = out_path
        self._stderr = tempfile.TemporaryFile()
        # A session of its own: Ctrl-C in the terminal must not kill ffmpeg under the runner, which finishes
        # the item in hand and then stops.
        try:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.PIPE if feed else subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self._stderr, **_DETACHED,
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


class _OpenCVSink:
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


class VideoWriter:
    """Write frames into a video at an exact rate; the file appears under its name only once it is complete.

    The extension picks the container and codec: `.mp4` H.264 (yuv420p, CRF 18, faststart), `.webm` VP9,
    `.mkv` lossless FFV1 (BGR, or 16-bit gray for `pix_fmt_in="gray16le"`: the raw-depth video). `codec`
    ("h264", "vp9", "ffv1") picks another codec the container holds. Frames are BGR uint8 HxWx3, or uint16 HxW
    for "gray16le".

    Sizes: H.264 stores 4:2:0 chroma and needs even sides, so an odd width or height gets one more column/row
    on the right/bottom, a copy of the last one (a black line would darken the edge and its chroma). VP9 and
    FFV1 keep the exact size. (Without ffmpeg every codec is padded so: OpenCV would crop odd sizes.)

    Audio: when `audio_from` names a file with audio and ffmpeg is available, its audio tracks are muxed in
    after encoding, starting `audio_start` seconds into that file and cut at the video's end: copied when the
    container takes the codec (then the cut falls on the next audio packet boundary, some tens of ms), else
    AAC (mp4) or Opus (webm).

    Without ffmpeg, OpenCV's encoders stand in (mp4v for .mp4, with a warning that browsers may not play it;
    VP9; FFV1), without audio and with the rate rounded by OpenCV to within 0.001 fps.

    Use as a context manager: leaving it with an exception (or calling `abort()`) deletes the temporary file and
    leaves nothing under the final name. Closing with no frames written is an error. An existing file of the
    final name is replaced.
    """

    def __init__(self, path, *, width: int, height: int, fps: Fraction, pix_fmt_in: str = "bgr24",
                 audio_from=None, codec: str | None = None, audio_start: Fraction | float = 0):
        self.path = Path(path)
        extension = self.path.suffix.lower()
        if extension not in _CONTAINERS:
            raise UserError(
                f"{self.path}: unsupported video extension '{self.path.suffix}' "
                f"(use {', '.join(SUPPORTED_EXTENSIONS)})"
            )
        muxer, default_codec, codecs, audio_copy, audio_encoder = _CONTAINERS[extension]
        codec = codec or default_codec
        if codec not in codecs:
            raise UserError(f"{self.path}: {extension} cannot hold {codec} video (it holds {', '.join(codecs)})")
        if pix_fmt_in not in _PIX_FMTS_IN:
            raise ValueError(f"pix_fmt_in must be one of {_PIX_FMTS_IN}, not {pix_fmt_in!r}")
        if pix_fmt_in == "gray16le" and codec != "ffv1":
            raise UserError(f"{self.path}: 16-bit depth video needs lossless FFV1; write it as .mkv")
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, not {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.fps = _parse_rate(fps)
        self.pix_fmt_in = pix_fmt_in
        self.frames_written = 0
        self._muxer, self._audio_copy, self._audio_encoder = muxer, audio_copy, audio_encoder
        self._audio_start = Fraction(audio_start)
        self._gray16 = pix_fmt_in == "gray16le"
        self._ffmpeg = find_ffmpeg()
        # OpenCV's writer silently crops odd sizes to even ones, whatever the codec.
        pads = codec == "h264" or self._ffmpeg is None
        self._coded_hw = (self.height + pads * (self.height % 2), self.width + pads * (self.width % 2))
        self._pad_buffer = None

        self._audio_from = Path(audio_from) if audio_from is not None else None
        self._audio_codecs: tuple[str, ...] = ()
        if self._audio_from is not None:
            self._audio_codecs = self._find_audio()

        self._check_target()
        self._temp: Path | None = self._reserve()
        try:
            self._sink = self._start_ffmpeg(codec) if self._ffmpeg else self._start_opencv(codec, extension)
        except BaseException:
            _remove(self._temp)
            raise

    # -- setup

    def _find_audio(self) -> tuple[str, ...]:
        if self._ffmpeg is None:
            _warn_once("no-audio", "no ffmpeg found, so audio is not copied into depth videos")
            return ()
        _check_readable(self._audio_from)
        listing = _list_streams(self._ffmpeg, self._audio_from)
        if listing is None or listing.error is not None:
            reason = listing.error if listing is not None else "ffmpeg did not answer"
            raise UserError(f"{self._audio_from}: cannot read its audio ({reason})")
        return listing.audio_codecs

    def _check_target(self) -> None:
        if self.path.is_dir():
            raise UserError(f"{self.path}: cannot write video (it is a folder)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"{self.path}: cannot create folder {self.path.parent} ({error.strerror})") from None

    def _reserve(self) -> Path:
        try:
            return _reserve_temp(self.path)
        except OSError as error:
            raise UserError(f"{self.path}: cannot write to folder {self.path.parent} ({error.strerror})") from None

    def _start_ffmpeg(self, codec: str) -> _FfmpegProcess:
        height, width = self._coded_hw
        rate = f"{self.fps.numerator}/{self.fps.denominator}"
        encoder = list(_ENCODER_ARGS[codec])
        if codec == "ffv1":
            encoder += ["-pix_fmt", "gray16le" if self._gray16 else "bgr0"]  # bgr0: lossless, no chroma loss
        argv = [
            self._ffmpeg, "-hide_banner", "-nostdin", "-v", "error",
            "-f", "rawvideo", "-pix_fmt", self.pix_fmt_in, "-video_size", f"{width}x{height}",
            "-framerate", rate, "-i", "pipe:0",
            *encoder, "-r", rate, *self._container_args(), "-y", _ffmpeg_input(self._temp),
        ]
        return _FfmpegProcess(argv, self.path, feed=True)

    def _container_args(self) -> list[str]:
        faststart = ["-movflags", "+faststart"] if self._muxer == "mp4" else []
        return [*faststart, "-f", self._muxer]

    def _start_opencv(self, codec: str, extension: str) -> _OpenCVSink:
        if extension == ".mp4":
            _warn_once(
                "mp4v",
                "no ffmpeg found: .mp4 files are written with OpenCV's mp4v codec, which web browsers may not "
                "play (install imageio-ffmpeg, or write .webm)",
            )
        height, width = self._coded_hw
        return _OpenCVSink(self._temp, self.path, codec, self.fps, (width, height), self._gray16)

    # -- writing

    def write(self, frame: np.ndarray) -> None:
        """Append one frame; raises UserError (and removes the partial file) if the encoder has failed."""
        expected = (self.height, self.width) if self._gray16 else (self.height, self.width, 3)
        dtype = np.uint16 if self._gray16 else np.uint8
        if frame.shape != expected or frame.dtype != dtype:
            raise ValueError(f"frame must be {dtype.__name__} {expected}, got {frame.dtype} {frame.shape}")
        if self._temp is None:
            raise ValueError(f"{self.path}: writer is closed")
        if self._coded_hw != (self.height, self.width):
            frame = self._pad(frame)
        try:
            self._sink.write(np.ascontiguousarray(frame))
        except BaseException:
            self.abort()
            raise
        self.frames_written += 1

    def _pad(self, frame: np.ndarray) -> np.ndarray:
        if self._pad_buffer is None:
            self._pad_buffer = np.empty(self._coded_hw + frame.shape[2:], frame.dtype)
        padded = self._pad_buffer
        padded[: self.height, : self.width] = frame
        padded[: self.height, self.width:] = frame[:, -1:]
        padded[self.height:] = padded[self.height - 1: self.height]
        return padded

    # -- finishing

    def close(self) -> None:
        """Finish encoding, add the audio, and move the file into place. Does nothing once closed or aborted."""
        if self._temp is None:
            return
        try:
            if self.frames_written == 0:
                raise UserError(f"{self.path}: no frames to write")
            self._sink.finish()
            if self._audio_codecs:
                self._mux_audio()
            os.replace(self._temp, self.path)
        except BaseException:
            self.abort()
            raise
        self._temp = None

    def abort(self) -> None:
        """Stop the encoder and delete the partial file; nothing appears under the final name."""
        if self._temp is None:
            return
        self._sink.kill()
        _remove(self._temp)
        self._temp = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _mux_audio(self) -> None:
        """Copy the video stream and the source's audio into a second temporary file, cut to the video."""
        muxed = self._reserve()
        try:
            audio_args = []
            for index, name in enumerate(self._audio_codecs):
                if self._audio_copy is None or name in self._audio_copy:
                    audio_args += [f"-c:a:{index}", "copy"]
                else:
                    encoder, bitrate = self._audio_encoder
                    audio_args += [f"-c:a:{index}", encoder, f"-b:a:{index}", bitrate]
            seek = ["-ss", f"{float(self._audio_start):.6f}"] if self._audio_start else []
            # -t, not -shortest: audio shorter than the video must not cut the video.
            duration = math.ceil(self.frames_written / self.fps * 1_000_000) / 1_000_000
            argv = [
                self._ffmpeg, "-hide_banner", "-nostdin", "-v", "error",
                "-i", _ffmpeg_input(self._temp), *seek, "-i", _ffmpeg_input(self._audio_from),
                "-map", "0:v:0", "-map", "1:a", "-c:v", "copy", *audio_args, "-t", f"{duration:.6f}",
                *self._container_args(), "-y", _ffmpeg_input(muxed),
            ]
            process = _FfmpegProcess(argv, self.path, feed=False)
            try:
                process.finish()
            except BaseException:
                process.kill()
                raise
            os.replace(muxed, self._temp)
        except BaseException:
            _remove(muxed)
            raise
