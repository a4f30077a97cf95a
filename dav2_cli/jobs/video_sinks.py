"""Where a video's depth frames go: a picture video, a 16-bit depth video with its key, or a folder of frames.

Each sink takes frames in order and either closes into a complete output or aborts leaving none (a frame folder
keeps the whole frames it wrote). Each is given what it writes with, never the command line's options.
"""

import contextlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from dav2_cli.errors import UserError
from dav2_cli.jobs.measure import Measure
from dav2_cli.media.frame_sequence import frame_file_name, frame_files
from dav2_cli.media.video_probe import VideoInfo
from dav2_cli.media.video_selection import FrameSelection
from dav2_cli.media.video_write import VideoWriter
from dav2_cli.outputs import formats, metadata, pictures
from dav2_cli.outputs.range_tracker import RangeTracker
from dav2_cli.outputs.atomic import write_with_sidecars, written_first
from dav2_cli.pipeline import Frame


@dataclass(frozen=True)
class Look:
    """How depth becomes a picture: the format, colours, which end is bright, and the frame beside it."""

    fmt: str
    cmap: str | None = None
    invert: bool = False
    side_by_side: bool = False


class PictureVideo:
    """Colour or 8-bit gray depth pictures (optionally beside the frame) encoded into a video."""

    def __init__(self, out: Path, info: VideoInfo, fps: Fraction, look: Look, measure: Measure,
                 tracker: RangeTracker, audio_from: Path | None, audio_start: Fraction):
        self._look, self._measure, self._tracker, self._name = look, measure, tracker, str(info.path)
        width = info.width * (2 if look.side_by_side else 1)
        self._writer = VideoWriter(out, width=width, height=info.height, fps=fps, audio_from=audio_from,
                                   audio_start=audio_start)

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def write(self, frame: Frame, depth_hw: np.ndarray) -> None:
        look = self._look
        if frame.cut:  # a new scene's depth has its own range: the smoothed one starts again
            self._tracker.reset()
        depth_hw = self._measure.frame_values(depth_hw, self._name, frame.key)
        picture = pictures.to_visual(depth_hw, look.fmt, cmap=look.cmap, invert=look.invert,
                                   metric=self._measure.distances, value_range=self._tracker.update(depth_hw))
        if look.side_by_side:
            picture = pictures.side_by_side(frame.image, picture)
        elif picture.ndim == 2:
            picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
        self._writer.write(picture)

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()


class Gray16Video:
    """Depth values on one fixed range as lossless 16-bit video, with a JSON sidecar to map them back."""

    def __init__(self, out: Path, info: VideoInfo, fps: Fraction, value_range: tuple[float, float],
                 measure: Measure, model_name: str, input_size: int, video_keys: dict):
        self._range, self._measure, self._info, self._video_keys = value_range, measure, info, video_keys
        self._model_name, self._input_size = model_name, input_size
        self._sidecar = Path(f"{out}{formats.SIDECAR_SUFFIX}")
        self._writer = VideoWriter(out, width=info.width, height=info.height, fps=fps, pix_fmt_in="gray16le")

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def write(self, frame: Frame, depth_hw: np.ndarray) -> None:
        # v grows with the stored value (depth = lo + v / 65535 * (hi - lo)); pixels with no finite depth go to
        # the far end: metres (beyond infinity after --align-to, or a saturated metric model) at 65535
        depth_hw = self._measure.frame_values(depth_hw, str(self._info.path), frame.key)
        distances = self._measure.distances
        self._writer.write(pictures.to_visual(depth_hw, "gray16", value_range=self._range, metric=distances,
                                              invert=pictures.invert_for_values(distances)))

    def close(self) -> None:
        """The sidecar is written before the video is renamed into place, so the video never exists without
        the only key to its values; if the video cannot be published, the sidecar is put back as it was (an
        earlier run's video keeps its own)."""
        lo, hi = self._range
        measure = self._measure
        description = metadata.describe(
            model=self._model_name, metric=measure.metric, input_size=self._input_size, width=self._info.width,
            height=self._info.height, source=str(self._info.path), max_depth=measure.max_depth,
            conversion=measure.fixed, family=measure.family_name(), kind=measure.kind, sky=measure.sky_mode)
        sidecar = {**description, **self._video_keys, "frames": self.frames_written, "lo": lo, "hi": hi,
                   "decode": "depth = lo + v / 65535 * (hi - lo), v the 16-bit pixel value"}

        with contextlib.ExitStack() as written:  # put back as it was if the video is not published
            self._writer.close(before_publish=lambda: written.enter_context(
                written_first(self._sidecar, metadata.sidecar(sidecar))))

    def abort(self) -> None:
        self._writer.abort()


class FrameFolder:
    """One file per frame, named by media/frame_sequence.py's rule and numbered in output order from 0: raw
    float32 depth (an npy of metres with its `.json` beside it) or a point cloud."""

    def __init__(self, out: Path, info: VideoInfo, fmt: str, measure: Measure):
        self._folder, self._measure, self._name = out, measure, str(info.path)
        self._extension = formats.extension_for(fmt)
        self.frames_written = 0
        # an earlier run's frames (the plan allowed this with --overwrite) go before the first new one is
        # written, so an interrupted run leaves only its own frames, never a mix of two runs
        for stale in frame_files(out):
            stale.unlink(missing_ok=True)

    def write(self, frame: Frame, depth_hw: np.ndarray) -> None:
        path = self._folder / frame_file_name(self.frames_written, self._extension)
        outputs = self._measure.encode(depth_hw, frame.image, name=f"{self._name} frame {frame.key}",
                                       destination=str(path), frame=frame.key, sky_hw=frame.sky)
        write_with_sidecars(path, outputs)
        self.frames_written += 1

    def close(self) -> None:
        if self.frames_written == 0:
            raise UserError(f"{self._folder}: no frames to write")

    def abort(self) -> None:
        """Frames already written are complete files, so they stay."""


def open_sink(out: Path, info: VideoInfo, selection: FrameSelection, look: Look, measure: Measure, *,
              normalize: str, value_range: tuple[float, float] | None, audio: bool, model_name: str,
              input_size: int, stereo: bool = False):
    """The sink for `look.fmt` (or for --stereo's packed views), writing at the rate the selection leaves (every
    n-th frame: rate / n)."""
    fps = info.fps / selection.every
    video_keys = {"fps": f"{fps.numerator}/{fps.denominator}", "first_source_frame": selection.start,
                  "every": selection.every}
    if look.fmt in formats.FILE_PER_FRAME_FORMATS:
        return FrameFolder(out, info, look.fmt, measure)
    if look.fmt == "gray16":
        return Gray16Video(out, info, fps, value_range, measure, model_name, input_size, video_keys)
    audio_from = info.path if audio and info.has_audio else None
    audio_start = Fraction(selection.start) / info.fps
    if stereo:
        from dav2_cli.jobs.stereo_video import StereoVideo

        return StereoVideo(out, info, fps, measure, audio_from, audio_start, video_keys)
    tracker = RangeTracker(normalize, global_range=value_range)
    return PictureVideo(out, info, fps, look, measure, tracker, audio_from, audio_start)
