"""The loaded half of a speed measurement: users run several jobs at once, and some kernels collapse under load."""

import os
import subprocess
import sys
import time


class BusyCores:
    """One busy process per core for the duration of a `with` block."""

    def __enter__(self):
        self.processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                          for _ in range(os.cpu_count() or 1)]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.kill()
            process.wait()
