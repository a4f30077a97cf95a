"""Where the real photos and video for benchmarks and manual runs lie: beside the checkout, in shared/data. Kept
apart from the benchmarks that read them, so a benchmark that runs dav2 only in child processes imports no torch
to find them."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DEFAULT_VIDEO = SHARED_DATA / "davis_rollercoaster.mp4"
