"""Folders and files named by URI (`s3://`, `gs://`, `file://`) for `dav2 folder --ray`, through pyarrow's file
systems, which take their credentials where pyarrow always does (docs/scale-out.md).

The driver lists the input once and, with --skip-existing, the output once; actors read each input's bytes and
write each result through the same file system. On a bucket every file is one upload (sidecars first, the depth
map last, as locally), so a reader never sees half an object; on a local file system (a `file://` URI) the
usual temporary name and rename apply. Plain paths pass through to the local functions unchanged.
"""

import functools
import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from dav2_cli.errors import UsageError, UserError
from dav2_cli.outputs.atomic import STDIO, write_with_sidecars

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(text: str | None) -> bool:
    """`s3://...`, `gs://...`, `file://...`: never a plain path (a drive letter has no `//`)."""
    return text is not None and _SCHEME.match(text) is not None


def as_uri(text: str) -> str:
    """A URI for `text`: itself, or a local path's `file://` URI, so a job mixing the two has one kind of name."""
    return text.rstrip("/") if is_uri(text) else Path(text).resolve().as_uri()


def require_ray_for_uris(source: str, output: str | None, ray: str | None) -> None:
    """URIs are read and written by `--ray` jobs only: a usage error otherwise, before any work."""
    uri = source if is_uri(source) else output if is_uri(output) else None
    if uri is not None and ray is None:
        raise UsageError(f"{uri}: URIs (s3://, gs://, file://) are read and written by `dav2 folder --ray` only; "
                         f"add --ray, or give a local path")


@functools.lru_cache(maxsize=None)
def _file_system(scheme_and_host: str):
    """One file system per bucket and process: opening an S3 one may ask the bucket's region over the network."""
    from pyarrow.fs import FileSystem

    try:
        return FileSystem.from_uri(f"{scheme_and_host}/")
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, its IO errors OSErrors
        raise UserError(f"{scheme_and_host}: cannot open ({_one_line(exc)})") from None


def locate(uri: str):
    """(file system, path within it) for a URI."""
    parts = urlsplit(uri)
    file_system, root = _file_system(f"{parts.scheme}://{parts.netloc}")
    tail = parts.path.strip("/")
    if not root:  # a file system whose paths start at the top (a bucket named in the path)
        return file_system, tail
    return file_system, f"{root.rstrip('/')}/{tail}".rstrip("/") or "/"


def _is_local(file_system) -> bool:
    from pyarrow.fs import LocalFileSystem

    return isinstance(file_system, LocalFileSystem)


def list_files(root_uri: str, *, recursive: bool, keep, exclude_uri: str | None = None,
               allow_missing: bool = False) -> list[PurePosixPath]:
    """Files under `root_uri` that `keep` takes by name, as sorted paths relative to it; hidden files and folders
    and the folder `exclude_uri` (the output, when inside the input) are left out, as in a local folder."""
    from pyarrow.fs import FileSelector, FileType

    file_system, root = locate(root_uri)
    excluded = None
    if exclude_uri is not None and exclude_uri.startswith(root_uri.rstrip("/") + "/"):
        excluded = PurePosixPath(exclude_uri[len(root_uri.rstrip("/")) + 1:])
    try:
        infos = file_system.get_file_info(FileSelector(root, recursive=recursive, allow_not_found=allow_missing))
    except (OSError, ValueError) as exc:
        raise UserError(f"{root_uri}: cannot list ({_one_line(exc)})") from None
    found = []
    for info in infos:
        relative = PurePosixPath(info.path[len(root.rstrip("/")) + 1:] if root != "/" else info.path.lstrip("/"))
        if info.type != FileType.File or any(part.startswith(".") for part in relative.parts):
            continue
        if excluded is not None and relative.is_relative_to(excluded):
            continue
        if keep(relative.name):
            found.append(relative)
    return sorted(found, key=lambda relative: relative.parts)


def plan_uri_folder(source: str, output: str | None, fmt: str, *, recursive: bool, tail: str = "",
                    default_tail: str = "_depth"):
    """Like plan.plan_folder, for a folder named by URI or written to one: every image paired with its URI in the
    mirrored output tree. Both ends become URIs, so one rule reads and writes every item."""
    from dav2_cli.jobs.plan import Item, distinct_names
    from dav2_cli.media.images import IMAGE_EXTENSIONS, is_image_name
    from dav2_cli.outputs import formats

    source_uri = as_uri(source)
    output_uri = as_uri(output) if output is not None else source_uri + default_tail  # beside it, as locally
    if output_uri == source_uri:
        raise UsageError(f"{output}: the output folder is the input folder; choose another with -o")
    relatives = list_files(source_uri, recursive=recursive, keep=is_image_name, exclude_uri=output_uri)
    if not relatives:
        raise UserError(f"{source}: no images found ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    names = distinct_names([Path(relative) for relative in relatives], tail + formats.extension_for(fmt))
    return [Item(f"{source_uri}/{relative}", f"{output_uri}/{name.as_posix()}", relative.as_posix())
            for relative, name in zip(relatives, names)], output_uri


def prepare_output(output_uri: str) -> None:
    """A local output folder is made and proved writable up front, as locally; a bucket has no folders to make."""
    from dav2_cli.outputs.atomic import prepare_output_folder

    file_system, path = locate(output_uri)
    if _is_local(file_system):
        prepare_output_folder(Path(path))


def existing_outputs(destinations: list[str]) -> set[str]:
    """The destinations that exist: local ones by a stat each, URIs by one listing of the folder they share."""
    local = {d for d in destinations if d != STDIO and not is_uri(d) and os.path.isfile(d)}
    uris = [d for d in destinations if is_uri(d)]
    if not uris:
        return local
    common = os.path.commonprefix(uris)
    root = common[:common.rfind("/")]  # the deepest folder holding them all
    listed = list_files(root, recursive=True, keep=lambda name: True, allow_missing=True)
    return local | ({f"{root}/{relative}" for relative in listed} & set(uris))


def read_source(source: str) -> bytes:
    """An input's bytes, from a URI's file system or as `dav2 image` reads a path."""
    if not is_uri(source):
        from dav2_cli.media.images import read_input_bytes

        return read_input_bytes(source)
    file_system, path = locate(source)
    try:
        with file_system.open_input_stream(path) as stream:
            return stream.readall()
    except (OSError, ValueError) as exc:
        raise UserError(f"{source}: cannot read ({_one_line(exc)})") from None


def write_result(destination: str, outputs: list[tuple[str, bytes]]) -> None:
    """An output and its sidecars, as outputs/atomic.write_with_sidecars writes them locally; on a bucket each is
    one upload, sidecars first and the depth map last, and the sidecars go again if the depth map fails."""
    if not is_uri(destination):
        write_with_sidecars(destination, outputs)
        return
    file_system, path = locate(destination)
    if _is_local(file_system):
        write_with_sidecars(path, outputs)
        return
    (_, main), *sidecars = outputs
    written = []
    try:
        for suffix, data in [*sidecars, ("", main)]:
            with file_system.open_output_stream(path + suffix) as stream:  # one object, whole or not at all
                stream.write(data)
            written.append(path + suffix)
    except (OSError, ValueError) as exc:
        for done in written:
            try:
                file_system.delete_file(done)
            except (OSError, ValueError):
                pass
        raise UserError(f"{destination}: cannot write ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or exc.__class__.__name__
