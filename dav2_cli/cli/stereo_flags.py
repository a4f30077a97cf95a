"""--stereo and its settings, declared once and alike on `image`, `folder` and `video`."""

import click

from dav2_cli.cli.params import FiniteFloat
from dav2_cli.jobs.stereo import DEFAULT_CONVERGENCE, DEFAULT_DIVERGENCE, MAX_DIVERGENCE

# outputs.stereo_layouts.LAYOUTS and ANAGLYPHS, spelled out because that module loads OpenCV and `dav2 --help`
# must stay instant; tests/test_cli_stereo.py keeps them in step
LAYOUT_CHOICES = ("sbs", "half-sbs", "tb", "half-tb", "cross", "anaglyph")
ANAGLYPH_CHOICES = ("dubois", "color", "half-color", "gray")
STEREO_FIELDS = ("stereo", "anaglyph", "divergence", "convergence")


def stereo_flags(command):
    """The stereo options; `make_options` turns them into a `StereoOptions`."""
    options = [
        click.option("--stereo", type=click.Choice(LAYOUT_CHOICES), default=None, metavar="LAYOUT",
                     help="Write the input in 3D for VR players and 3D TVs instead of its depth: sbs (side by "
                          "side, 2W x H, name _LRF_Full_SBS), half-sbs (W x H, _LR), tb (top-bottom, W x 2H, "
                          "_TBF_fulltb), half-tb (_TB), cross (right eye left, _RLF_cross) or anaglyph (red-cyan, "
                          "_redcyan_TYPE). Each eye is the input shifted by its depth; see docs/stereo.md."),
        click.option("--anaglyph", type=click.Choice(ANAGLYPH_CHOICES), default=None, metavar="TYPE",
                     help="Red-cyan mix for --stereo anaglyph: dubois (default; least ghosting), color, "
                          "half-color or gray. Alone it means --stereo anaglyph."),
        click.option("--divergence", type=FiniteFloat(0, MAX_DIVERGENCE), default=None, metavar="PERCENT",
                     help=f"Strength of the 3D effect: the largest disparity between the eyes, in % of the "
                          f"picture's larger side [default: {DEFAULT_DIVERGENCE:g}]."),
        click.option("--convergence", type=FiniteFloat(0, 1), default=None, metavar="0..1",
                     help=f"Which depth sits on the screen: 0 the farthest (everything pops out), 1 the nearest "
                          f"(everything behind the screen) [default: {DEFAULT_CONVERGENCE:g}]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
