"""Stereo 3D in the jobs: what the user asked for, what it cannot be combined with, the names players detect,
and each picture's or frame's views.

The geometry is `depth.stereo`'s, the nearness `depth.nearness`'s, the packing `outputs.stereo_layouts`'s; this
module only decides, once per job, how they apply: from the values a job writes (the model's, or metres after
--near/--far or --align-to) to the picture a player shows.
"""

from dataclasses import dataclass
from pathlib import Path

from dav2_cli.errors import UsageError

# depth.stereo's defaults and limits, spelled out so the command line need not import numpy to show them;
# tests/test_cli_stereo.py keeps the two in step
DEFAULT_DIVERGENCE = 2.0
DEFAULT_CONVERGENCE = 0.5
MAX_DIVERGENCE = 10.0
DECODER_WIDTH_LIMIT = 4096  # H.264 decoders in headsets and TVs top out near this width


@dataclass(frozen=True)
class StereoOptions:
    """--stereo LAYOUT with its anaglyph type, divergence (% of the larger side) and convergence (0 far .. 1 near)."""

    layout: str
    anaglyph: str = "dubois"
    divergence: float = DEFAULT_DIVERGENCE
    convergence: float = DEFAULT_CONVERGENCE

    @property
    def suffix(self) -> str:
        """What players look for in the name, before the extension: `_LR`, `_LRF_Full_SBS`, ..."""
        from dav2_cli.outputs.stereo_layouts import suffix

        return suffix(self.layout, self.anaglyph)

    def describe(self) -> dict:
        """The keys a stereo output adds to its description."""
        keys = {"stereo_layout": self.layout}
        if self.layout == "anaglyph":
            keys["anaglyph"] = self.anaglyph
        keys.update({"divergence": self.divergence, "convergence": self.convergence,
                     "geometry": "per-eye shift = divergence/100 * max(W,H)/2 * (nearness - convergence); "
                                 "left eye +, right eye -"})
        return keys


def stereo_options(layout: str | None, anaglyph: str | None, divergence: float | None,
                   convergence: float | None) -> StereoOptions | None:
    """The job's stereo request from the command line's four flags; usage errors for what makes no sense.

    --anaglyph alone means `--stereo anaglyph` with that type.
    """
    if anaglyph is not None and layout is None:
        layout = "anaglyph"
    if layout is None:
        given = [flag for flag, value in (("--divergence", divergence), ("--convergence", convergence))
                 if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --stereo LAYOUT")
        return None
    if anaglyph is not None and layout != "anaglyph":
        raise UsageError(f"--anaglyph {anaglyph}: only with --stereo anaglyph, not --stereo {layout}")
    return StereoOptions(layout, anaglyph or "dubois",
                         DEFAULT_DIVERGENCE if divergence is None else divergence,
                         DEFAULT_CONVERGENCE if convergence is None else convergence)


def check_stereo(options) -> None:
    """Refuse flags that draw or store depth: a stereo output is the photo seen by two eyes, not a depth map.

    `options.fmt` is the format the command line asked for, or the output name implied (colour pictures and
    videos by default)."""
    if options.stereo is None:
        return
    if options.fmt != "color":
        raise UsageError(f"--stereo writes a 3D picture of the input, not a depth map: no --format {options.fmt} "
                         f"(name the output .png, .jpg or .webp; a video .mp4, .webm or .mkv)")
    if options.side_by_side:
        raise UsageError("--side-by-side puts the input beside its depth picture; --stereo lays out two views "
                         "itself (--stereo sbs)")
    if options.invert:
        raise UsageError("--invert applies to depth pictures; with --stereo, --convergence sets what is near")


def output_tail(options, default: str = "_depth") -> str:
    """What a default output name ends with before its extension: the layout's suffix for stereo."""
    return options.stereo.suffix if options.stereo is not None else default


def views(stereo: StereoOptions, values_hw, image, larger: str, nearness_range=None, *, cut: bool = False):
    """The packed stereo picture of `image` seen with depth `values_hw` (larger = `larger`).

    `nearness_range`: a video's `NearnessRange` (steady over time, restarted at `cut`); None for one picture.
    """
    import cv2
    import numpy as np

    from dav2_cli.depth import nearness as nearness_rules
    from dav2_cli.depth.stereo import stereo_views
    from dav2_cli.outputs.stereo_layouts import pack

    image = np.asarray(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = image[:, :, :3]  # players show no transparency; the warp would need a rule for it
    if nearness_range is None:
        near_hw = nearness_rules.nearness(values_hw, larger)
    else:
        near_hw = nearness_range.nearness(values_hw, cut=cut)
    left, right = stereo_views(image, near_hw, divergence=stereo.divergence, convergence=stereo.convergence)
    return pack(left, right, stereo.layout, stereo.anaglyph)


def larger_of(measure) -> str:
    """Which way the values a job writes grow: metres (metric models, or converted) grow with distance."""
    from dav2_cli.depth.nearness import LARGER_FARTHER, LARGER_NEARER

    return LARGER_FARTHER if measure.distances else LARGER_NEARER


def encode_stereo(measure, values_hw, image, description: dict, destination: str) -> list[tuple[str, bytes]]:
    """One image's stereo picture file, described: [("", bytes)] as `render.encode_outputs` returns."""
    from dav2_cli.outputs.atomic import STDIO
    from dav2_cli.outputs.stereo_files import encode_stereo_picture

    stereo = measure.options.stereo
    picture = views(stereo, values_hw, image, larger_of(measure))
    ext = Path(destination).suffix.lower() if destination != STDIO else None
    return [("", encode_stereo_picture(picture, ext, {**description, **stereo.describe()}))]


def wide_frame_note(stereo: StereoOptions, width: int, height: int) -> str | None:
    """A warning when the packed frame is wider than headsets' and TVs' H.264 decoders take."""
    from dav2_cli.outputs.stereo_layouts import frame_size

    packed_width, packed_height = frame_size(stereo.layout, width, height)
    if packed_width <= DECODER_WIDTH_LIMIT:
        return None
    return (f"--stereo {stereo.layout} makes {packed_width}x{packed_height} frames; H.264 decoders in headsets and "
            f"TVs stop near {DECODER_WIDTH_LIMIT} px wide, so many will not play it (half-sbs keeps {width} px)")
