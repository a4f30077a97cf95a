"""What a depth file says about itself, and how each container carries it.

A depth map whose meaning is lost is useless for measuring: a gray16 PNG stretched over 0..65535 cannot be turned
back into depth without its range, and nobody can tell inverse depth from metres by looking at the numbers. So
every file dav2 writes carries one description (`describe`), in the place its format has for text:

* PNG: one `tEXt` chunk per key (`iTXt` when a value is not Latin-1), so `lo` and `hi` are keys of their own
  (`png`);
* JPEG: a `COM` segment holding the description as JSON (`jpeg`);
* EXR: one `string` header attribute per key (`exr`);
* TIFF: the `ImageDescription` tag, as JSON (`tiff`);
* WebP: an XMP packet whose `dc:description` is the JSON (`webp`);
* PLY: one `comment` line per key (`ply`);
* npy, gray16 PNG: a JSON sidecar (`OUT.json`) too, built by `sidecar`.

Each container's module writes and reads its own place; this module holds what they share: the description
itself and how one value becomes text (`as_text`) and back (`from_text`), so `dav2 info` prints what was
written. Pure bytes in, bytes out: no I/O here.
"""

import json

RELATIVE_UNIT = "none (relative inverse depth)"
RELATIVE_DEPTH_UNIT = "none (relative depth)"
METRIC_UNIT = "meters"


def describe(*, model: str, metric: bool, input_size: int, width: int, height: int, source: str | None = None,
             max_depth: float | None = None, conversion=None, intrinsics=None, family: str | None = None,
             kind: str | None = None, focal: dict | None = None, sky: str | None = None) -> dict:
    """The description every output of one depth map carries, with the keys of the gray16 video's sidecar.

    `family` is the model's (Depth-Anything V2, Distill-Any-Depth...; omitted where unknown, as for a depth file
    read back without one). `kind` is what the model's numbers are (inverse depth, relative depth or metric
    depth: weights/catalog.py's output_kind; None: inverse depth unless `metric`), recorded as `output`; the
    `kind` key says relative or metric. `unit` and `larger` describe the stored values, which are metres (larger
    = farther) once a relative map has been converted by `conversion` (an `align` DisparityToDepth), whose fit is
    then included as `alignment`. `focal`: the focal length a model's metres were computed from (DA3 metric).
    `sky`: a sky-head model's --sky mode (keep, far or mask: depth/sky.py); None (other models) says nothing.
    """
    converted = conversion is not None
    farther = metric or (kind is not None and kind != "inverse depth")
    description = {}
    if source is not None:
        description["source"] = printable_path(source)
    description.update({
        "model": printable_path(model),
        **({"family": family} if family else {}),
        "kind": "metric" if metric else "relative",
        **({"output": kind} if kind else {}),
        "unit": METRIC_UNIT if metric or converted else (RELATIVE_DEPTH_UNIT if farther else RELATIVE_UNIT),
        "larger": "farther" if farther or converted else "nearer",
        "input_size": input_size,
        "width": width,
        "height": height,
    })
    if max_depth is not None:
        description["max_depth"] = max_depth
    if intrinsics is not None:
        description["intrinsics"] = intrinsics.as_dict()
    if focal is not None:
        description["metric_focal"] = focal
    if sky is not None:
        description["sky"] = sky
    if converted:
        description["alignment"] = conversion.as_dict(farther)
    return description


def printable_path(name: str) -> str:
    """A path as text every format can hold: bytes of a file name that are not UTF-8 (which Python keeps as
    lone surrogates) written as \\xNN escapes, instead of failing the file that describes it."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def sidecar(description: dict) -> bytes:
    """The JSON sidecar (OUT.json) for files whose container has no room for text: npy, and gray16 as well."""
    return (json.dumps(description, indent=2) + "\n").encode()


def as_text(value) -> str:
    """One description value as the text a container stores: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def from_text(text: str):
    """`as_text` undone: JSON where the text is JSON (numbers, nested values), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text
