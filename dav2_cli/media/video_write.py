"""Writing depth videos that browsers play, at the source's exact rate, never left half-written.

Frames go through an ffmpeg pipe (H.264, VP9 or FFV1) at the exact rate into a hidden temporary file that is
renamed into place only once complete; audio is muxed from the source afterwards, cut to the video's length.
Without ffmpeg, OpenCV's own encoders are the fallback, with a warning about what is lost.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from dav2_cli.errors import UserError
from dav2_cli.outputs.atomic import discard, publish, reserve_temp
from dav2_cli.media.video_encoders import FfmpegProcess, OpenCVSink
from dav2_cli.media.video_probe import (
    check_readable,
    ffmpeg_input,
    find_ffmpeg,
    list_streams,
    parse_rate,
)

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
# The tags go on the frames (setparams): ffmpeg 6+ takes a frame's own colour properties over the -color_*
# options, and the scaler leaves primaries and transfer unset, which players read as "unknown".
_BT709_420 = [
    "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
           "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv",
    "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
]
_ENCODER_ARGS = {
    # CRF 18 keeps the smooth gradients of depth maps free of banding; faststart lets browsers play at once.
    # veryfast: on 960x540 depth maps it spends a third of medium's CPU time for files 3% larger, and the
    # encoder shares the CPU with the model (benchmarks/pipeline.py).
    "h264": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", *_BT709_420],
    # Constant quality (-b:v 0); cpu-used 4 with row threading is several times faster than libvpx's default.
    "vp9": ["-c:v", "libvpx-vp9", "-crf", "30", "-b:v", "0", "-deadline", "good", "-cpu-used", "4",
            "-row-mt", "1", *_BT709_420],
    # Intra-only with per-slice CRCs: the archival settings, so any frame can be cut out and damage is found.
    "ffv1": ["-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1"],
}
_PIX_FMTS_IN = ("bgr24", "gray16le")
_warned: set[str] = set()



def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(f"dav2: warning: {message}", file=sys.stderr)


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
                 audio_from=None, codec: str | None = None, audio_start: Fraction | float = 0,
                 full_chroma: bool = False):
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
        self.fps = parse_rate(fps)
        self.pix_fmt_in = pix_fmt_in
        self.frames_written = 0
        self._muxer, self._audio_copy, self._audio_encoder = muxer, audio_copy, audio_encoder
        self._audio_start = Fraction(audio_start)
        self._gray16 = pix_fmt_in == "gray16le"
        self._full_chroma = full_chroma  # 4:4:4 instead of 4:2:0 (H.264 High 4:4:4, VP9 profile 1)
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
            discard(self._temp)
            raise

    # -- setup

    def _find_audio(self) -> tuple[str, ...]:
        if self._ffmpeg is None:
            _warn_once("no-audio", "no ffmpeg found, so audio is not copied into depth videos")
            return ()
        check_readable(self._audio_from)
        listing = list_streams(self._audio_from)
        if listing.error is not None:
            raise UserError(f"{self._audio_from}: cannot read its audio ({listing.error})")
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
            return reserve_temp(self.path, extension_last=True)
        except OSError as error:
            raise UserError(f"{self.path}: cannot write to folder {self.path.parent} ({error.strerror})") from None

    def _start_ffmpeg(self, codec: str) -> FfmpegProcess:
        height, width = self._coded_hw
        rate = f"{self.fps.numerator}/{self.fps.denominator}"
        encoder = list(_ENCODER_ARGS[codec])
        if self._full_chroma:  # chroma at every pixel: a red-cyan anaglyph's red is its left eye, not to be halved
            encoder = [arg.replace("format=yuv420p", "format=yuv444p") for arg in encoder]
        if codec == "ffv1":
            encoder += ["-pix_fmt", "gray16le" if self._gray16 else "bgr0"]  # bgr0: lossless, no chroma loss
        argv = [
            self._ffmpeg, "-hide_banner", "-nostdin", "-v", "error",
            "-f", "rawvideo", "-pix_fmt", self.pix_fmt_in, "-video_size", f"{width}x{height}",
            "-framerate", rate, "-i", "pipe:0",
            *encoder, "-r", rate, *self._container_args(), "-y", ffmpeg_input(self._temp),
        ]
        return FfmpegProcess(argv, self.path, feed=True)

    def _container_args(self) -> list[str]:
        faststart = ["-movflags", "+faststart"] if self._muxer == "mp4" else []
        return [*faststart, "-f", self._muxer]

    def _start_opencv(self, codec: str, extension: str) -> OpenCVSink:
        if extension == ".mp4":
            _warn_once(
                "mp4v",
                "no ffmpeg found: .mp4 files are written with OpenCV's mp4v codec, which web browsers may not "
                "play (install imageio-ffmpeg, or write .webm)",
            )
        height, width = self._coded_hw
        return OpenCVSink(self._temp, self.path, codec, self.fps, (width, height), self._gray16)

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

    def close(self, before_publish: Callable[[], None] | None = None) -> None:
        """Finish encoding, add the audio, and move the file into place. Does nothing once closed or aborted.

        `before_publish` runs once the video is complete but not yet under its final name (a sidecar that must
        exist whenever the video does); if it fails, the video is discarded.
        """
        if self._temp is None:
            return
        try:
            if self.frames_written == 0:
                raise UserError(f"{self.path}: no frames to write")
            self._sink.finish()
            if self._audio_codecs:
                self._mux_audio()
            if before_publish is not None:
                before_publish()
            publish(self._temp, self.path)
        except BaseException:
            self.abort()
            raise
        self._temp = None

    def abort(self) -> None:
        """Stop the encoder and delete the partial file; nothing appears under the final name."""
        if self._temp is None:
            return
        self._sink.kill()
        discard(self._temp)
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
                "-i", ffmpeg_input(self._temp), *seek, "-i", ffmpeg_input(self._audio_from),
                "-map", "0:v:0", "-map", "1:a", "-c:v", "copy", *audio_args, "-t", f"{duration:.6f}",
                *self._container_args(), "-y", ffmpeg_input(muxed),
            ]
            process = FfmpegProcess(argv, self.path, feed=False)
            try:
                process.finish()
            except BaseException:
                process.kill()
                raise
            publish(muxed, self._temp)
        except BaseException:
            discard(muxed)
            raise
