"""Outputs appear complete or not at all: the one scheme every writer (images, frames, videos) goes through.

A file is written under a hidden temporary name in its target folder and renamed into place only when complete,
so an interrupted run, a full disk or a crash never leaves a truncated depth map under a final name. Temporary
names are registered before the file exists and forgotten only after the rename or removal, so any still on
disk when the process exits (a second Ctrl-C mid-write) are removed then.
"""

import atexit
import contextlib
import errno
import os
import secrets
import shutil
import sys
from pathlib import Path

from dav2_cli.errors import UserError

STDIO = "-"
TEMP_SUFFIX = ".part"

_FATAL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # every later write would fail the same way
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class OutputStopped(UserError):
    """The output location refuses every write (disk full, quota, read-only): no point trying the next input."""


def describe_os_error(path, exc: OSError) -> str:
    """One line for the OS errors users actually meet, naming the path."""
    reasons = {
        errno.ENOENT: "no such file or folder",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.ENAMETOOLONG: "file name too long",
        errno.EISDIR: "is a folder",
        errno.EEXIST: "exists and is not a folder",  # what making a folder where a file is says
        errno.ENOTDIR: "a parent of it is not a folder",
        errno.EROFS: "read-only file system",
        errno.ELOOP: "too many levels of symbolic links",
    }
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)"
    return f"{path}: {reasons.get(exc.errno, exc.strerror or str(exc))}"



def prepare_output_folder(folder: Path) -> None:
    """Create `folder` and prove a file can be written in it, so an impossible output fails once, up front."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{folder}: cannot write output there (exists and is not a folder)") from None
    except OSError as exc:
        raise UserError(f"cannot create the output folder: {describe_os_error(exc.filename or folder, exc)}") \
            from None
    probe = folder / f".dav2-write-test.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        os.close(os.open(probe, _OPEN_FLAGS, 0o666))
        probe.unlink()
    except OSError as exc:
        reason = describe_os_error(folder, exc).split(": ", 1)[1]
        raise UserError(f"{folder}: cannot write output there ({reason})") from None


# Temporary files in flight, removed at exit whatever interrupted their writer; one interpreter-wide set.
_temp_files: set[str] = set()


@atexit.register
def remove_temp_files() -> None:
    for name in list(_temp_files):
        try:
            os.unlink(name)
        except OSError:
            pass
        _temp_files.discard(name)


def reserve_temp(final: Path, *, extension_last: bool = False) -> Path:
    """Create an empty hidden file beside `final` (same file system, so the final rename is atomic).

    Registered for removal at exit until `publish` or `discard`. `extension_last` keeps `final`'s extension at
    the end of the name, for writers (OpenCV's) that pick a container from it. Created with O_EXCL and mode
    0666 less the umask, so the finished file gets the permissions of any new file of the user's.
    """
    final = Path(final)
    if extension_last:
        temp = final.with_name(f".{final.stem[:64]}.{secrets.token_hex(4)}{TEMP_SUFFIX}{final.suffix}")
    else:
        temp = final.with_name(f".{final.name[:64]}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    _temp_files.add(str(temp))
    try:
        os.close(os.open(temp, _OPEN_FLAGS, 0o666))
    except BaseException:
        if not os.path.lexists(temp):  # interrupted after the create: it stays registered, for the exit
            _temp_files.discard(str(temp))
        raise
    return temp


def publish(temp: Path, final: Path) -> None:
    """Move a complete temporary file into place under its final name."""
    try:
        os.replace(temp, final)
    except OSError as exc:
        raise _output_error(final, exc) from None
    _temp_files.discard(str(temp))


def discard(temp: Path | None) -> None:
    """Delete an unfinished temporary file (nothing appears under the final name)."""
    if temp is not None:
        Path(temp).unlink(missing_ok=True)
        _temp_files.discard(str(temp))


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync and a rename.

    An interrupt at any point leaves nothing behind (`remove_temp_files`). Disk full, quota and read-only errors
    raise `OutputStopped`, since the next write would fail the same way.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = reserve_temp(path)
    except OSError as exc:
        raise _output_error(path.parent if exc.filename else path, exc) from None
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish(temp, path)
    except OSError as exc:
        raise _output_error(path, exc) from None
    finally:
        discard(temp)


def _output_error(path, exc: OSError) -> UserError:
    kind = OutputStopped if exc.errno in _FATAL_ERRNOS else UserError
    return kind(describe_os_error(path, exc))


def write_output(destination, data: bytes) -> None:
    if str(destination) == STDIO:
        if sys.stdout is None:  # started with stdout closed (`>&-`)
            raise UserError("<stdout>: standard output is closed")
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise UserError("<stdout>: the reading end of the pipe was closed") from None
        except OSError as exc:  # a full disk behind a redirect, ...
            raise UserError(describe_os_error("<stdout>", exc)) from None
        return
    write_atomic(Path(destination), data)


@contextlib.contextmanager
def written_first(path: Path, data: bytes):
    """Write `data` to `path` (atomically) for a block that then writes the file it describes.

    If the block fails, `path` gets back what it held before, or goes if it is new: an earlier output beside
    it keeps its own description (a gray16 file's only key to its values), never one of a run that failed.
    """
    path = Path(path)
    backup = None
    try:
        if path.is_file():
            backup = reserve_temp(path)
            shutil.copyfile(path, backup)
    except OSError as exc:
        discard(backup)
        raise _output_error(path, exc) from None
    written = False
    try:
        write_atomic(path, data)
        written = True
        yield
    except BaseException:
        if written:  # else nothing of ours is there, and the failure to write it is the one to report
            with contextlib.suppress(UserError, OSError):
                if backup is None:
                    path.unlink(missing_ok=True)
                else:
                    publish(backup, path)
        raise
    finally:
        discard(backup)


def write_with_sidecars(destination, outputs: list[tuple[str, bytes]]) -> None:
    """An output and the files that describe it, [("", main), (".json", sidecar), ...]: sidecars first and the
    output last, so an output that exists (what --skip-existing looks for) is complete with its description;
    if the output cannot be written, the sidecars are put back as they were. Stdout takes the main file only."""
    (_, main), *sidecars = outputs
    with contextlib.ExitStack() as written:
        if str(destination) != STDIO:
            for suffix, data in sidecars:
                written.enter_context(written_first(Path(f"{destination}{suffix}"), data))
        write_output(destination, main)
