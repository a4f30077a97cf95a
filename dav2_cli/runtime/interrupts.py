"""Ctrl-C and SIGTERM stop a job cleanly and at once: the user hears at once, the job ends within seconds, and
nothing is left half-written.

A night-long batch must not lose finished work or leave half a file when a user presses Ctrl-C or a scheduler
sends SIGTERM, so the first signal sets a flag that jobs check, and says `stopping…` on stderr straight away: a
forward pass at a large size can take minutes, and silence reads as a hang. The pipeline runs the model in a
thread of its own, so the main thread can leave a forward pass that does not end soon (pipeline.py). A second
Ctrl-C means "now": it raises KeyboardInterrupt at once (temporary files are still cleaned up by the writers).

A model call left running in its thread must not be waited for at exit, nor meet the interpreter's shutdown: a
daemon thread inside torch's C++ code when Python 3.11 finalises is unwound through destructors that cannot throw,
which aborts the process instead of exiting with the documented code. So the process ends with `os._exit` once
everything of the job's own is flushed (`exit_without_waiting_for`), after any held block (below) has ended.
"""

import atexit
import contextlib
import os
import signal
import sys
import threading
import time

from dav2_cli.errors import EXIT_SIGINT, EXIT_SIGTERM

STOPPING = "dav2: stopping…"
HELD_AT_EXIT_S = 120.0  # the longest a held block (a model's conversion) is waited for at exit

_held_lock = threading.Lock()
_held_count = 0  # held blocks running in threads other than the main one
_held_ended = threading.Condition(_held_lock)


def say_stopping(signum: int) -> None:
    """The stop's one line, written straight to the file descriptor: a signal handler may run while the main
    thread is inside a write to sys.stderr, which Python's buffered streams refuse to re-enter."""
    hint = " (Ctrl-C again to quit at once)" if signum == signal.SIGINT else ""
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    try:
        on_terminal = os.isatty(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        on_terminal = False
    line = f"{chr(10) if on_terminal else ''}{STOPPING}{hint}\n"  # on a terminal, past a progress bar's line
    try:
        data = line.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        data = line.replace("…", "...").encode("ascii")
    try:
        sys.stderr.flush()
    except (OSError, ValueError, RuntimeError):
        pass
    try:
        os.write(sys.stderr.fileno(), data)
    except (OSError, ValueError, AttributeError):  # no real stderr (an embedding caller): the flag still counts
        pass


class GracefulStop:
    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.signum == signal.SIGTERM else EXIT_SIGINT

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            say_stopping(signum)
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        return False


@contextlib.contextmanager
def ctrl_c_held():
    """Ctrl-C held until the block ends, then handled as it would have been (a KeyboardInterrupt, or the job's
    GracefulStop). For C++ code that calls back into Python, such as OpenVINO's model converter: an exception
    raised inside it comes out as the library's RuntimeError with a traceback, or aborts the process.

    Outside the main thread no signal can reach the block; there it marks the block instead, so that a job
    leaving its model thread behind waits for the block to end before the process exits (`held_elsewhere`)."""
    global _held_count
    if threading.current_thread() is not threading.main_thread():
        with _held_lock:
            _held_count += 1
        try:
            yield
        finally:
            with _held_lock:
                _held_count -= 1
                _held_ended.notify_all()
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    if previous is None:  # a handler set outside Python cannot be put back: Python's own stands in for it
        previous = signal.default_int_handler
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    for frame in held:
        if callable(previous):
            previous(signal.SIGINT, frame)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def held_elsewhere() -> bool:
    """Whether a held block is running in another thread (a model being converted in the model thread)."""
    with _held_lock:
        return _held_count > 0


def _wait_for_held_blocks(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with _held_lock:
        while _held_count > 0 and time.monotonic() < deadline:
            _held_ended.wait(0.1)


def exit_without_waiting_for(thread: threading.Thread, exit_code) -> None:
    """At exit, if `thread` still runs, end the process with `exit_code()` without finalising the interpreter
    (see the module docstring), once held blocks have ended and the standard streams are flushed."""
    def leave():
        if not thread.is_alive():
            return
        code = exit_code()
        try:
            _wait_for_held_blocks(HELD_AT_EXIT_S)
        except KeyboardInterrupt:  # a third Ctrl-C: the user wants out even at that cost
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(code)

    atexit.register(leave)
