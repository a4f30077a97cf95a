"""What stereo output adds to a 1080p frame, beside what the model costs for the same frame.

iw3's users wait on SBS rendering and encoding more than on the model; the goal here is that turning a depth map
into two views and packing them costs at most 0.3x the model's forward pass. Both are timed on the same
synthetic 1920x1080 frame, interleaved round by round so a neighbour's burst on a shared machine hits both
alike: the model (seeded random vits, loaded as users load a checkpoint, at the default input size and
precision) and each stereo step (nearness, both eyes' warp, each layout's packing). Medians of wall time and of
CPU time (all threads): on a shared machine the wall mostly measures the neighbours, while the CPU time is the
work each step adds; the load average is printed beside them.

    python -m benchmarks.stereo [--rounds 5] [--input-size 504] [--backend torch|openvino|auto]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.upstream import upstream_model
from dav2_cli.depth import nearness as nearness_rules
from dav2_cli.depth import sizing
from dav2_cli.depth.stereo import stereo_views
from dav2_cli.outputs.stereo_layouts import LAYOUTS, pack
from dav2_cli.runtime.loading import load_model

HEIGHT, WIDTH = 1080, 1920


def synthetic_frame(seed: int = 0) -> np.ndarray:
    """A textured 1080p frame: smooth gradients, blobs and noise, so the model's depth has edges to warp."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    frame = np.stack([127 + 100 * np.sin(cols / 90 + k) * np.cos(rows / 60 - k) for k in range(3)], axis=2)
    frame[300:700, 700:1200] = (40, 200, 90)
    frame += rng.normal(0, 12, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def timed(run) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU time counts every thread of this process."""
    began, cpu_began = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - began, time.process_time() - cpu_began


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=sizing.DEFAULT_INPUT_SIZE)
    parser.add_argument("--backend", default=None)
    args = parser.parse_args(argv)

    frame = synthetic_frame()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "depth_anything_v2_vits.pth"
        torch.save(upstream_model("vits", seed=0).state_dict(), checkpoint)
        model = load_model(checkpoint, "cpu", "auto", backend=args.backend)
    size_hw = sizing.model_size(frame.shape[:2], args.input_size)
    batch_bchw = torch.from_numpy(sizing.to_model_input(frame, size_hw)[None])

    with torch.inference_mode():
        def forward():
            return sizing.to_image_size(model(batch_bchw), frame.shape[:2])

        depth_hw = np.asarray(forward()[0], dtype=np.float32)  # warm-up, and the depth the stereo steps use
        near_hw = nearness_rules.nearness(depth_hw, nearness_rules.LARGER_NEARER)
        left, right = stereo_views(frame, near_hw)
        steps = {"model (forward + resize to 1080p)": forward,
                 "nearness": lambda: nearness_rules.nearness(depth_hw, nearness_rules.LARGER_NEARER),
                 "both eyes' views": lambda: stereo_views(frame, near_hw)}
        steps.update({f"pack {layout}": (lambda layout=layout: pack(left, right, layout)) for layout in LAYOUTS})
        times = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, run in steps.items():
                times[name].append(timed(run))

    wall = {name: statistics.median(t[0] for t in values) * 1000 for name, values in times.items()}
    cpu = {name: statistics.median(t[1] for t in values) * 1000 for name, values in times.items()}
    model_name = "model (forward + resize to 1080p)"
    print(f"1920x1080 frame, vits at input size {args.input_size}, precision {getattr(model, 'precision', '?')}, "
          f"backend {getattr(model, 'backend', 'torch')}; {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; medians of {args.rounds} interleaved rounds")
    print(f"{'step':<34}{'wall ms':>9}{'x model':>9}{'CPU ms':>9}{'x model':>9}")
    for name in times:
        print(f"{name:<34}{wall[name]:9.1f}{wall[name] / wall[model_name]:9.2f}"
              f"{cpu[name]:9.1f}{cpu[name] / cpu[model_name]:9.2f}")
    for layout in ("half-sbs", "sbs", "anaglyph"):
        steps_of = ("nearness", "both eyes' views", f"pack {layout}")
        ratio_wall = sum(wall[step] for step in steps_of) / wall[model_name]
        ratio_cpu = sum(cpu[step] for step in steps_of) / cpu[model_name]
        verdict = "meets" if max(ratio_wall, ratio_cpu) <= 0.3 else "misses"
        print(f"stereo {layout:<27}{ratio_wall:18.2f}{ratio_cpu:18.2f}  ({verdict} the 0.3x goal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
