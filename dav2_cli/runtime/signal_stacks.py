"""A thread's alternate signal stack, kept as it was around a library call that swaps it.

On CPUs with AMX, OpenVINO's CPU plugin gives the compiling thread a signal stack of its own (sigaltstack) when it
compiles a model, remembering the one it replaced, and puts that one back when the compiled model is destroyed. With
two compiled models destroyed in the order they were made, the second puts back the first one's stack, which the
first has already freed: the next signal the thread takes (Ctrl-C, a service manager's SIGTERM) is written to freed
memory and the process dies with SIGSEGV instead of stopping cleanly. Measured on an AMX Xeon with OpenVINO 2026.4
(strace: sigaltstack calls from create_plugin_engine and ~ICompiledModel). Keeping the thread's own stack in place
after the call leaves the plugin's destructors nothing of theirs to put back. Elsewhere (no AMX, not Linux) the
call changes nothing and this does nothing.
"""

import contextlib
import ctypes
import functools
import sys


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


SS_DISABLE = 2  # Linux's value on every architecture


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def current():
    """The calling thread's alternate signal stack as (address, flags, size), or None where it cannot be read."""
    libc = _libc()
    stack = _StackT()
    if libc is None or libc.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack.ss_sp or 0, stack.ss_flags, stack.ss_size


def install(stack) -> bool:
    """Make `stack` ((address, flags, size), as `current` gives) the calling thread's; False where refused (the
    kernel refuses a stack too small for the AMX state a thread may hold, and one the thread is running on)."""
    libc = _libc()
    if libc is None:
        return False
    address, flags, size = stack
    wanted = _StackT(None, SS_DISABLE, 0) if flags & SS_DISABLE else _StackT(address, 0, size)
    return libc.sigaltstack(ctypes.byref(wanted), None) == 0


@contextlib.contextmanager
def kept():
    """Run the block, then give the calling thread back the signal stack it had before it."""
    before = current()
    try:
        yield
    finally:
        if before is not None and current() != before:
            install(before)
