"""Peak RSS of `dav2 image` at several input sizes and backends, each run alone in a child process.

What runtime/memory.py's estimate is calibrated against. A seeded checkpoint (benchmarks/upstream.py) stands in
for the real weights, which are the same size. One line per run: backend, precision, input size, model grid,
peak RSS in MiB, and the estimate beside it.

    python benchmarks/peak_memory.py --encoder vits --backend torch openvino --size 504 1008
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.upstream import upstream_model


def peak_rss_mib(command: list[str], env: dict) -> tuple[int, float]:
    """Exit code and peak RSS of `command` run as a child (its own, not its parent's or siblings')."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace")
    if process.returncode != 0:
        print(stderr, file=sys.stderr)
    return process.returncode, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="vits")
    parser.add_argument("--backend", nargs="+", default=["torch", "openvino"])
    parser.add_argument("--dtype", nargs="+", default=["float32"])
    parser.add_argument("--size", nargs="+", type=int, default=[504, 1008])
    parser.add_argument("--image", default="480x640", help="HxW of the synthetic photo (its aspect sets the grid)")
    args = parser.parse_args()
    from dav2_cli.depth import sizing
    from dav2_cli.runtime import memory

    work = Path(tempfile.mkdtemp(prefix="dav2-peak-"))
    checkpoint = work / f"depth_anything_v2_{args.encoder}.pth"
    torch.save(upstream_model(args.encoder, seed=0).state_dict(), checkpoint)
    height, width = map(int, args.image.split("x"))
    photo = work / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    env = {**os.environ, "DAV2_HOME": str(work / "home"), "DAV2_MEMORY_CHECK": "off"}
    config = memory.shape_of(args.encoder)
    for backend in args.backend:
        for dtype in args.dtype:
            # a first run converts and caches OpenVINO's graph, as a user's first run does once
            peak_rss_mib([sys.executable, "-m", "dav2_cli", "image", str(photo), "-m", str(checkpoint), "--input-size",
                          "56", "--backend", backend, "--dtype", dtype, "-o", str(work / "warm.npy")], env)
            for size in args.size:
                code, peak = peak_rss_mib([sys.executable, "-m", "dav2_cli", "image", str(photo), "-m", str(checkpoint),
                                           "--input-size", str(size), "--backend", backend, "--dtype", dtype,
                                           "-o", str(work / "out.npy")], env)
                model_hw = sizing.model_size((height, width), size)
                grid_hw = (model_hw[0] // 14, model_hw[1] // 14)
                estimate = memory.estimate(config, backend, dtype, 1, grid_hw, height * width) / 2**20
                print(f"{backend:8s} {dtype:8s} {size:5d} {grid_hw[0]}x{grid_hw[1]} peak {peak:8.0f} MiB "
                      f"estimate {estimate:8.0f} MiB exit {code}", flush=True)


if __name__ == "__main__":
    main()
