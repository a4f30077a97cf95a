"""What Ray adds to `dav2 folder` on this machine: images per second locally and with `--ray`, and the
overhead per image.

Both runs go through the command line on the same synthetic images, with seeded random vits weights (speed does
not depend on the values), on one local Ray started once (as `--ray` alone would), so the cluster's start is not
counted; the actors' model loading and Ray's scheduling are, as a user pays them. On one small machine Ray can
only add overhead: its value is more machines, which this cannot show.

    python -m benchmarks.ray_overhead [--images 32] [--size 480x640] [--input-size 280] [--batch-size 4]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from click.testing import CliRunner

from benchmarks.upstream import upstream_model
from dav2_cli.cli import main


def run(args: list[str]) -> float:
    started = time.perf_counter()
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        sys.exit(f"dav2 {' '.join(args)} failed:\n{result.output}")
    return elapsed


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", default="480x640", help="HxW of each image")
    parser.add_argument("--input-size", default="280")
    parser.add_argument("--batch-size", default="4")
    parser.add_argument("--actors", default=None, help="--ray-actors (default: dav2's choice)")
    opts = parser.parse_args()
    import ray

    height, width = (int(v) for v in opts.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = tmp / "depth_anything_v2_vits.pth"
        torch.save(upstream_model("vits", seed=0).state_dict(), checkpoint)
        rng = np.random.default_rng(0)
        (tmp / "in").mkdir()
        for index in range(opts.images):
            image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 5)
            cv2.imwrite(str(tmp / "in" / f"{index:04d}.png"), image)
        common = ["-m", str(checkpoint), "--format", "npy", "--input-size", opts.input_size, "--batch-size",
                  opts.batch_size, "--device", "cpu", "--dtype", "float32", "-q"]
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(include_dashboard=False, logging_level="ERROR")
        ray_args = ["--ray"] + (["--ray-actors", opts.actors] if opts.actors else [])
        run(["folder", str(tmp / "in"), "-o", str(tmp / "warm"), *common])  # caches warm for both
        local = run(["folder", str(tmp / "in"), "-o", str(tmp / "local"), *common])
        on_ray = run(["folder", str(tmp / "in"), "-o", str(tmp / "ray"), *common, *ray_args])
        resources = ray.cluster_resources()
        ray.shutdown()
    n = opts.images
    print(f"{n} images {width}x{height}, --input-size {opts.input_size}, --batch-size {opts.batch_size}, "
          f"{os.cpu_count()} CPUs ({int(resources.get('CPU', 0))} for Ray), load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"local : {n / local:6.2f} images/s ({local:.1f} s)")
    print(f"--ray : {n / on_ray:6.2f} images/s ({on_ray:.1f} s)")
    print(f"overhead: {(on_ray - local) / n * 1000:+.0f} ms per image ({on_ray / local:.2f}x the local time)")


if __name__ == "__main__":
    main_()
