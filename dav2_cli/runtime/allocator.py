"""glibc's malloc told to keep freed memory for reuse, in dav2's own jobs.

Every batch allocates and frees the same few hundred MB: activations, attention scores, full-size depth maps and
the pictures made from them. By default glibc returns blocks above its mmap threshold (at most 32 MB) to the
kernel when they are freed and trims the heap's top, so each batch faults its memory in again, zero-filled. On a
2-core Zen 4 that was ~50,000 page faults and ~110-200 ms of kernel time per float32 vits forward pass (504x756,
or a batch of four at 280x420), ~5% of the pass, and another ~50 MB of faults per photo in a folder job's reader
and writer threads. With blocks up to 256 MB served from the heap and the top trimmed only beyond 1 GiB, the
memory stays mapped after the first batch: the faults and their kernel time go, and peak memory stays where it
was, since what is kept is what the job needed anyway.

Only where the C library is glibc; elsewhere (macOS, Windows, musl) nothing changes. The Python API leaves the
allocator of the program that imports it alone.
"""

import ctypes
import platform

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 << 20
TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where that is not possible."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
