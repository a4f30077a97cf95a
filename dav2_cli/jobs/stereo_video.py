"""Stereo 3D videos: each frame seen by two eyes, packed for players, at the source's exact rate with its audio.

Nearness is normalised over time (`NearnessRange`: a robust range, smoothed, restarted at scene cuts), so the
3D depth of a scene does not breathe from frame to frame. The description (model, layout, divergence,
convergence) goes into OUT.json beside the video, which `dav2 info OUT` reads.

Anaglyph videos keep full chroma (4:4:4) in .mp4 and .webm: 4:2:0 halves colour resolution, and in an anaglyph
the colour channels are the two eyes, so 4:2:0 would smear each eye's edges into the other. The cost: browsers
and most hardware decoders play only 4:2:0 H.264; desktop players (VLC, mpv) play 4:4:4. The side-by-side and
top-bottom layouts stay 4:2:0, which every headset decodes.
"""

import contextlib
from fractions import Fraction
from pathlib import Path

from dav2_cli.depth.nearness import NearnessRange
from dav2_cli.jobs.measure import Measure
from dav2_cli.jobs.options import note
from dav2_cli.jobs.stereo import larger_of, views, wide_frame_note
from dav2_cli.media.video_write import VideoWriter
from dav2_cli.outputs import formats, metadata
from dav2_cli.outputs.atomic import written_first
from dav2_cli.outputs.stereo_layouts import frame_size


class StereoVideo:
    """A video sink (as the video job's others: write, close, abort, frames_written) of packed stereo frames."""

    def __init__(self, out: Path, info, fps: Fraction, measure: Measure, audio_from: Path | None,
                 audio_start: Fraction, video_keys: dict):
        self._measure, self._info, self._name, self._video_keys = measure, info, str(info.path), video_keys
        self._stereo = measure.options.stereo
        self._sidecar = Path(f"{out}{formats.SIDECAR_SUFFIX}")
        warning = wide_frame_note(self._stereo, info.width, info.height)
        if warning:
            note(f"warning: {warning}")
        width, height = frame_size(self._stereo.layout, info.width, info.height)
        self._writer = VideoWriter(out, width=width, height=height, fps=fps, audio_from=audio_from,
                                   audio_start=audio_start, full_chroma=self._stereo.layout == "anaglyph")
        self._nearness = NearnessRange(larger_of(measure))
        self._description: dict | None = None

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def write(self, frame, depth_hw) -> None:
        values, description, _, _ = self._measure.described(depth_hw, name=self._name, frame=frame.key)
        if self._description is None:
            self._description = description
        picture = views(self._stereo, values, frame.image, larger_of(self._measure), self._nearness, cut=frame.cut)
        self._writer.write(picture)

    def close(self) -> None:
        """The description is written before the video is renamed into place, and put back if it is not."""
        description = {**(self._description or {}), **self._video_keys, "frames": self.frames_written,
                       **self._stereo.describe(), "nearness": "robust range of inverse depth, smoothed over time, "
                                                              "restarted at scene cuts"}
        description.pop("source", None)
        description = {"source": metadata.printable_path(self._name), **description}
        with contextlib.ExitStack() as written:
            self._writer.close(before_publish=lambda: written.enter_context(
                written_first(self._sidecar, metadata.sidecar(description))))

    def abort(self) -> None:
        self._writer.abort()
