"""Small folders of photos and their outputs as bytes, for the tests that compare a run with another run's files
(local and on Ray, from a path and from a URI)."""

import cv2
from click.testing import CliRunner

from dav2_cli.cli import main

SIZE = "56"  # the smallest sensible model input: these tests are about files and bytes, not depth quality


def dav2(*args):
    """A command at SIZE on the CPU in float32, as the compared runs all use."""
    args = [str(a) for a in args] + ["--input-size", SIZE, "--device", "cpu", "--dtype", "float32"]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def make_tree(source, photos: dict, make_photo):
    """`photos` (relative name -> height, width, seed) written under `source`."""
    for name, (height, width, seed) in photos.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(source / name), make_photo(height, width, seed))
    return source


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
