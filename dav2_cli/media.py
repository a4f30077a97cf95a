"""Reading images and writing results: files, stdin and stdout, never a half-written file.

Every file goes to a temporary name in its target folder and is renamed into place only when complete, so an
interrupted run, a full disk or a crash never leaves a truncated depth map under a final name. Images are
decoded from bytes (not by path) so files, stdin and unusual file names are handled alike, and so each failure
can be reported as one line naming the file.
"""

import errno
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError

STDIO = "-"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _file_mode() -> int:
    # mkstemp creates 0600 files; results should get the permissions any new file of the user's would
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


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
    return f"{path}: {reasons.get(exc.errno, exc.strerror or str(exc))}"


def read_input_bytes(source) -> bytes:
    if str(source) == STDIO:
        return sys.stdin.buffer.read()
    try:
        with open(source, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise UserError(describe_os_error(source, exc)) from None


def decode_image(data: bytes, name) -> np.ndarray:
    """Encoded bytes → BGR uint8 or uint16 HxWx3, EXIF orientation applied, alpha dropped."""
    if not data:
        raise UserError(f"{name}: empty file")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None or image.size == 0:
        raise UserError(f"{name}: not a readable image (unknown format or damaged data)")
    if image.dtype not in (np.uint8, np.uint16):
        # float or signed images: assume the usual 0..1 range and keep 16 bits of it
        image = (np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0) * 65535.0).astype(np.uint16)
    return image


def read_image(source) -> np.ndarray:
    return decode_image(read_input_bytes(source), "<stdin>" if str(source) == STDIO else source)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise UserError(describe_os_error(path.parent if exc.filename else path, exc)) from None
    try:
        with os.fdopen(handle, "wb") as temp:
            os.fchmod(temp.fileno(), FILE_MODE)
            temp.write(data)
        os.replace(temp_name, path)
    except OSError as exc:
        Path(temp_name).unlink(missing_ok=True)
        raise UserError(describe_os_error(path, exc)) from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_output(destination, data: bytes) -> None:
    if str(destination) == STDIO:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise UserError("<stdout>: the reading end of the pipe was closed") from None
        return
    write_atomic(Path(destination), data)
