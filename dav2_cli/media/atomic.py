"""Outputs appear complete or not at all: the one scheme every writer (images, frames, videos) goes through.

A file is written under a hidden temporary name in its target folder and renamed into place only when complete,
so an interrupted run, a full disk or a crash never leaves a truncated depth map under a final name. Temporary
names are registered before the file exists and forgotten only after the rename or removal, so any still on
disk when the process exits (a second Ctrl-C mid-write) are removed then.
"""

import atexit
import errno
import os
import secrets
import sys
from pathlib import Path

from ..errors import UserError

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


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync and a rename.

    The temporary name is registered before the file exists and forgotten only after the rename, so an
    interrupt at any point leaves nothing behind (`remove_temp_files`). Disk full, quota and read-only errors
    raise `OutputStopped`, since the next write would fail the same way.
    """
    path = Path(path)
    temp_name = str(path.with_name(f".{path.name[:64]}.{secrets.token_hex(4)}{TEMP_SUFFIX}"))
    _temp_files.add(temp_name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(temp_name, _OPEN_FLAGS, 0o666)  # the umask applies, as to any new file of the user's
    except OSError as exc:
        _temp_files.discard(temp_name)
        raise _output_error(path.parent if exc.filename else path, exc) from None
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except OSError as exc:
        raise _output_error(path, exc) from None
    finally:
        Path(temp_name).unlink(missing_ok=True)
        _temp_files.discard(temp_name)


def _output_error(path, exc: OSError) -> UserError:
    kind = OutputStopped if exc.errno in _FATAL_ERRNOS else UserError
    return kind(describe_os_error(path, exc))


def write_output(destination, data: bytes) -> None:
    if str(destination) == STDIO:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise UserError("<stdout>: the reading end of the pipe was closed") from None
        return
    write_atomic(Path(destination), data)
