"""Checks on single option values, made while click parses: a bad value is a usage error before any work.

Each turns click's text into the value a job takes, or fails with the reason in one line. Rules that involve
more than one option, or the file system, belong to `jobs.plan`; these only read one value.
"""

import math
import re

import click

from dav2_cli.errors import UsageError, UserError


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf, which pass its bounds (every comparison with nan is false)."""

    name = "finite number"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        """No `x<=None` in --help for a number with no bound at all (click prints both sides of any range)."""
        return "" if self.min is None and self.max is None else super()._describe_range()


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?", re.IGNORECASE)


def model_argument(ctx, param, value):
    """A model name or an existing file or folder, checked before anything loads (see lookup.spec_for)."""
    if value is None:
        return value
    from dav2_cli.weights.lookup import check_model_argument

    try:
        check_model_argument(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc).removeprefix(f"{value}: ")) from None
    return value


def model_option(ctx, param, value):
    """`model_argument`, and for a command of still images, not a video model's name."""
    if model_argument(ctx, param, value) is None:
        return value
    if ctx.command.name != "video":
        from dav2_cli.weights.catalog import VIDEO_FAMILY
        from dav2_cli.weights.lookup import spec_for

        spec = spec_for(value)
        if spec is not None and spec.family == VIDEO_FAMILY:
            from dav2_cli.jobs.options import VIDEO_MODEL_FOR_IMAGES

            raise click.BadParameter(VIDEO_MODEL_FOR_IMAGES.format(model=value))
    return value


def device_option(ctx, param, value):
    if not DEVICE_PATTERN.fullmatch(value.strip()):
        raise click.BadParameter(f"{value!r}: expected auto, cpu, cuda, cuda:N or mps")
    return value.strip().lower()


def shard_option(ctx, param, value):
    from dav2_cli.jobs.plan import parse_shard

    try:
        return None if value is None else parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def fps_option(ctx, param, value):
    if value is None:
        return None
    from dav2_cli.media.video_probe import parse_rate

    try:
        return parse_rate(value)
    except UserError as exc:
        raise click.BadParameter(str(exc)) from None


def pixel_option(ctx, param, value):
    """X,Y → (x, y), whole pixels of the depth map (0,0 is the top-left pixel)."""
    if value is None:
        return None
    try:
        x, y = (int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected X,Y in whole pixels, e.g. 320,240") from None
    if x < 0 or y < 0:
        raise click.BadParameter(f"{value!r}: pixels count from 0,0 at the top left")
    return x, y


def image_size_option(ctx, param, value):
    """WIDTHxHEIGHT → (height, width)."""
    try:
        width, height = (int(side) for side in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected WIDTHxHEIGHT, e.g. 756x504") from None
    if not (14 <= width <= 16384 and 14 <= height <= 16384):
        raise click.BadParameter(f"{value!r}: each side must be 14 to 16384 pixels")
    return height, width
