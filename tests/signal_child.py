"""`dav2` in a child process whose model call can be held, so signal tests wait for events, never for time.

Run as `python signal_child.py HOLD_AT RELEASE_FILE dav2-args...`: the HOLD_AT-th model call (1-based) writes
READY on stderr, then keeps torch busy in C++ until RELEASE_FILE exists ("-": never), as a long forward pass
at a large size would; every other call runs the real model. `start` runs it and returns once READY is seen.
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

READY = "signal-test: model call held"
GENEROUS_S = 120  # only bounds a broken run: nothing is asserted about time


def _hold(release: str) -> None:
    import torch

    matrix = torch.ones(256, 256)
    while release == "-" or not Path(release).exists():
        for _ in range(20):  # C++ work with the GIL released, as a real forward pass is
            torch.mm(matrix, matrix)


def main() -> None:
    hold_at, release, *args = sys.argv[1:]
    from dav2_cli.runtime import loading

    real = loading.predict_prepared
    calls = []

    def held_predict(*call_args, **kwargs):
        calls.append(1)
        if len(calls) == int(hold_at):
            print(READY, file=sys.stderr, flush=True)
            _hold(release)
        return real(*call_args, **kwargs)

    loading.predict_prepared = held_predict
    from dav2_cli.cli import main as dav2

    sys.argv = ["dav2", *args]
    dav2()


class Child:
    """The child process and everything it wrote on stderr, read as it comes."""

    def __init__(self, args, hold_at: int, release: str | Path = "-"):
        command = [sys.executable, __file__, str(hold_at), str(release), *map(str, args)]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                                         env={**os.environ, "OMP_NUM_THREADS": "1"})
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self):
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, text: str) -> bool:
        """True once a line holding `text` was written; False if the child ended without it."""
        deadline = time.monotonic() + GENEROUS_S
        with self._changed:
            while not any(text in line for line in self.lines):
                if not self._reader.is_alive() or time.monotonic() > deadline:
                    return False
                self._changed.wait(1)
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """Never leaves a child behind, whatever the test found (a held model call otherwise runs forever)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        return False

    def finish(self) -> int:
        try:
            code = self.process.wait(timeout=GENEROUS_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(GENEROUS_S)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def start(args, hold_at: int, release: str | Path = "-") -> Child:
    """The child, once its HOLD_AT-th model call is held (AssertionError with its stderr if it never gets there);
    use it in a `with` block, which kills it if it still runs at the end."""
    child = Child(args, hold_at, release)
    if not child.wait_for_line(READY):
        child.process.kill()
        child.finish()
        raise AssertionError(f"the model call was never reached:\n{child.stderr}")
    return child


if __name__ == "__main__":
    main()
