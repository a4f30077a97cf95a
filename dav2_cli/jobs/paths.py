"""What a path on disk is, as far as a plan cares: the same file as another, readable, a place a file can be
written, or one of dav2's own earlier outputs. Only stats and small reads: no model, no torch."""

import os
import struct
import sys
import zlib
from pathlib import Path

from dav2_cli.errors import UsageError, UserError
from dav2_cli.outputs.atomic import STDIO, describe_os_error
from dav2_cli.outputs.formats import SKY_MASK_SUFFIX

OWN_OUTPUT_STEM_END = "_depth"  # what every name dav2 gives a depth map beside its input ends in (x_depth.png)


def file_identity(path) -> tuple[int, int] | None:
    """The file a path names as the file system knows it (device, inode); None when there is none.

    Two names are one file exactly when these agree: a hard link, another spelling on a case-insensitive file
    system, or a path through a symbolic link all count, which comparing resolved names would miss.
    """
    try:
        status = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None
    return status.st_dev, status.st_ino


def is_same_file(a, b) -> bool:
    """Whether writing to `b` would write over `a` (or into it, for folders): the one "output is the input"
    rule of every job."""
    identity = file_identity(a)
    return identity is not None and identity == file_identity(b)


def refuse_outputs_onto_inputs(items: list) -> None:
    """A command line whose outputs would overwrite its own inputs is a usage error before any work, in every
    shard alike."""
    inputs = {file_identity(item.source) for item in items if item.source != STDIO} - {None}
    clashes = [item for item in items if item.destination != STDIO and file_identity(item.destination) in inputs]
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise UsageError(f"{clashes[0].name}: its output {clashes[0].destination} is one of the inputs{more}; "
                         f"choose another -o")


def unreadable_input(source: str) -> str | None:
    """Why an input cannot be read, found with a stat alone (so before any heavy import); None when it can."""
    if source == STDIO:
        return None
    try:
        os.stat(source)
    except OSError as exc:
        return describe_os_error(source, exc)
    except ValueError:  # a NUL character, which no file name can hold
        return f"{source!r}: not a possible file name"
    return None


def require_input(source: str) -> None:
    """The one input of a job, or a one-line error before anything heavy is imported."""
    problem = unreadable_input(source)
    if problem:
        raise UserError(problem)


def check_output_location(output: str) -> None:
    """`-o` under a file (`-o notes.txt/x.png`) can never be written: said before the model loads, as the same
    error the write would meet. Folders that do not exist yet are made later; `-o` itself is each job's rule."""
    folder = ancestor = Path(output).parent
    try:
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        under_a_file = ancestor.exists() and not ancestor.is_dir()
    except (OSError, ValueError):  # a name the system refuses: the write says why, in its own line
        return
    if under_a_file:
        what = "exists and is" if ancestor == folder else "a parent of it is"
        raise UserError(f"{folder}: {what} not a folder")


def refuse_binary_on_terminal(output: str | None) -> None:
    """`-o -` writes image bytes: on a terminal they would only garble the screen, so that is a usage error."""
    if output == STDIO and stdout_is_terminal():
        raise UsageError("-o - writes binary data to standard output, which is a terminal here; redirect it "
                         "(> depth.png) or pipe it, or give a file name")


def stdout_is_terminal() -> bool:
    return sys.stdout is not None and sys.stdout.isatty()


def embedded_description(data: bytes) -> dict:
    """The description a picture file carries in its own container ({} when none), in each picture format an
    input may also be. The containers' readers are imported here, not at the top: a stat needs none of them."""
    from dav2_cli.outputs import jpeg, png, tiff, webp

    if data.startswith(png.SIGNATURE):
        return png.read_description(data)
    if data.startswith(jpeg.SIGNATURE):
        return jpeg.read_description(data)
    if webp.is_webp(data):
        return webp.read_description(data)
    if tiff.is_tiff(data):
        return tiff.read_description(data)
    return {}


def is_own_output(path) -> bool:
    """A depth map dav2 wrote beside its input (`x_depth.png` with dav2's description in it), which a later
    `dav2 folder` over the same folder must not take for a photo. Named so and described so, never either alone:
    a user's own `house_depth.png` is still an input. An npy's sky mask (`x_depth.npy.sky.png`) is judged by the
    npy's name."""
    path = Path(path)
    named = path.name[:-len(SKY_MASK_SUFFIX)] if path.name.lower().endswith(SKY_MASK_SUFFIX) else path.name
    if not Path(named).stem.lower().endswith(OWN_OUTPUT_STEM_END):
        return False
    try:
        description = embedded_description(path.read_bytes())
    except (OSError, ValueError, IndexError, KeyError, struct.error, zlib.error):  # damaged: an input, reported
        return False  # as such when it is read
    return isinstance(description, dict) and {"model", "kind", "unit"} <= description.keys()
