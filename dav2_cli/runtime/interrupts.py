"""Ctrl-C and SIGTERM stop a job cleanly: the item in hand is finished, then the job stops and says so.

A night-long batch must not lose finished work or leave half a file when a user presses Ctrl-C or a scheduler
sends SIGTERM, so the first signal only sets a flag that jobs check between items. A second Ctrl-C means "now":
it raises KeyboardInterrupt at once (temporary files are still cleaned up by the writers).
"""

import contextlib
import signal
import threading

from dav2_cli.errors import EXIT_SIGINT, EXIT_SIGTERM


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
    raised inside it comes out as the library's RuntimeError with a traceback, or aborts the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    for frame in held:
        if callable(previous):
            previous(signal.SIGINT, frame)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt
