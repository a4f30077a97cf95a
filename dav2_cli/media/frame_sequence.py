"""A folder of numbered images read as one video, the way VFX renders and extracted frames arrive.

Frames are ordered by natural sort (`f2.png` before `f10.png`), so unpadded numbering works as a person reads
it. A sequence states no frame rate, so the caller must give one. It reads like `video_read.FrameReader`: the
same selection, the same `(index, frame)` stream, and a damaged image ends the stream with one line saying
where, so the frames before it still make a valid depth video.
"""

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from dav2_cli.errors import UsageError, UserError
from dav2_cli.media.images import image_header, is_image_name, read_image, read_input_bytes
from dav2_cli.media.video_probe import VideoInfo
from dav2_cli.media.video_selection import FrameSelection


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", path.name)]


# A video's per-frame outputs: `frame_000000.npy` ... numbered from 0 in output order. Six digits at least, more
# past frame 999999 (`frame_1000000`): the natural order above reads them back in sequence either way.
_FRAME_FILE = re.compile(r"frame_\d{6,}\..+")  # the frame itself and anything written beside it (its .json)


def frame_file_name(number: int, extension: str) -> str:
    """The name of output frame `number` (from 0) of a video written one file per frame."""
    return f"frame_{number:06d}{extension}"


def frame_files(folder: Path) -> list[Path]:
    """The per-frame outputs a video job wrote into `folder`, in frame order (none when it does not exist)."""
    try:
        return sorted((entry for entry in Path(folder).iterdir() if _FRAME_FILE.fullmatch(entry.name)),
                      key=_natural_key)
    except (FileNotFoundError, NotADirectoryError):
        return []


def sequence_files(folder: Path) -> list[Path]:
    """The images directly in `folder` (hidden files and other files left alone), in natural order."""
    try:
        entries = [entry for entry in Path(folder).iterdir() if entry.is_file() and is_image_name(entry.name)]
    except OSError as exc:
        raise UserError(f"{folder}: cannot list the frame folder ({exc.strerror})") from None
    return sorted(entries, key=_natural_key)


def probe_sequence(folder, fps: Fraction | None) -> VideoInfo:
    """Describe a frame folder as a video: its first image's size, its image count, the rate given."""
    folder = Path(folder)
    if fps is None:
        raise UsageError(f"{folder}: a folder of frames states no frame rate; give one with --fps (e.g. 24)")
    files = sequence_files(folder)
    if not files:
        raise UserError(f"{folder}: no images in the frame folder (jpg jpeg png bmp tif tiff webp)")
    _, size_wh = image_header(read_input_bytes(files[0]))
    if size_wh is None:  # a format whose header we do not parse: decode the first frame once
        height, width = read_image(files[0]).shape[:2]
    else:
        width, height = size_wh
    return VideoInfo(folder, width, height, Fraction(fps), len(files), has_audio=False)


class SequenceReader:
    """Iterates `(index, frame)` over a frame folder, keeping images `start, start+every, ...` below `end`."""

    def __init__(self, folder, *, start: int = 0, end: int | None = None, every: int = 1):
        self.path = Path(folder)
        self._files = sequence_files(self.path)
        self.selection = FrameSelection(start, end, every)
        self.frame_count = len(self._files)
        self.frames_read = 0
        self.stopped_early = False
        self.error: str | None = None
        self._frames = self._decode()

    def __iter__(self) -> "SequenceReader":
        return self

    def __next__(self) -> tuple[int, np.ndarray]:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        frame_hw = None
        for index in self.selection.indices(len(self._files)):
            try:
                frame = read_image(self._files[index])
            except UserError as exc:
                self.stopped_early = True
                self.error = f"{self.path}: decoding stopped at frame {index} of {self.frame_count} ({exc})"
                return
            if frame_hw is None:
                frame_hw = frame.shape[:2]
            elif frame.shape[:2] != frame_hw:
                raise UserError(f"{self._files[index]}: {frame.shape[1]}x{frame.shape[0]}, but the sequence began "
                                f"at {frame_hw[1]}x{frame_hw[0]}; a depth video has one size")
            self.frames_read = index + 1
            yield index, frame
