"""How close `dav2 video` gets to the model's own speed: end-to-end time per frame against forward time per frame.

The video pipeline's promise is that decoding, resizing, colouring and encoding hide behind the model, so a
video costs little more than the model's forward passes. This measures both on the same frames, grid, dtype
and batch size, with seeded random vits weights (the speed does not depend on the values), and prints the ratio.
Wall time is what users feel, but on a shared machine it mostly measures the neighbours, so CPU time (this
process and its ffmpeg children, all threads) is reported too, with the load average: a CPU-time ratio near 1
means little work is added to the model's, whatever else the machine was doing.

    python -m benchmarks.video_pipeline [VIDEO] [--input-size 280] [--batch-size 2] [--dtype float32]
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.upstream import upstream_model
from dav2_cli import engine, prep
from dav2_cli.interrupts import GracefulStop
from dav2_cli.jobs.options import DepthOptions
from dav2_cli.media.video_read import iter_frames
from dav2_cli.jobs.video import VideoOptions, depth_video, plan_video
from dav2_cli.pipeline import DEFAULT_BATCH_SIZE

DEFAULT_VIDEO = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "davis_rollercoaster.mp4"


def seeded_vits(folder: Path, dtype: str):
    """Random vits saved in upstream's layout and loaded the way users load a checkpoint."""
    checkpoint = folder / "depth_anything_v2_vits.pth"
    torch.save(upstream_model("vits", seed=0).state_dict(), checkpoint)
    return engine.load_model(checkpoint, "cpu", dtype), checkpoint


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children (ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@torch.inference_mode()
def forward_per_frame(model, video: Path, input_size: int, batch_size: int, repeats: int) -> tuple[float, float]:
    """Median wall time and mean CPU time of `model(x)` alone on a batch of prepared frames, per frame."""
    frames = [frame for _, frame in iter_frames(video, end=batch_size)]
    size_hw = prep.model_size(frames[0].shape[:2], input_size)
    batch_bchw = torch.from_numpy(np.stack([prep.to_model_input(frame, size_hw) for frame in frames]))
    model(batch_bchw)  # warm-up: first-call allocations
    times = []
    cpu_began = cpu_seconds()
    for _ in range(repeats):
        began = time.perf_counter()
        model(batch_bchw)
        times.append(time.perf_counter() - began)
    return statistics.median(times) / len(frames), (cpu_seconds() - cpu_began) / repeats / len(frames)


def end_to_end_per_frame(model, checkpoint: Path, video: Path, out: Path, input_size: int, batch_size: int,
                         dtype: str, max_frames: int | None) -> tuple[float, float, int]:
    """Wall and CPU time of the whole job (probe, decode, model, render, H.264 encode, finalise) per frame."""
    options = DepthOptions(model=str(checkpoint), device="cpu", dtype=dtype, input_size=input_size)
    video_options = VideoOptions(batch_size=batch_size, max_frames=max_frames, audio=False)
    cpu_began, began = cpu_seconds(), time.perf_counter()
    job = plan_video(str(video), str(out), options, video_options)
    with GracefulStop() as stop:
        code = depth_video(model, job, options, video_options, stop)
    elapsed, cpu = time.perf_counter() - began, cpu_seconds() - cpu_began
    if code != 0:
        raise SystemExit(f"the video job failed with exit code {code}")
    frames = sum(1 for _ in iter_frames(out))
    return elapsed / frames, cpu / frames, frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--input-size", type=int, default=280, help="280 runs quickly; 504 is dav2's default")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "int8"), default="float32")
    parser.add_argument("--max-frames", type=int, default=None, help="default: the whole video")
    parser.add_argument("--repeats", type=int, default=5, help="forward passes timed for each model-only figure")
    parser.add_argument("--rounds", type=int, default=3, help="model-only / end-to-end pairs; the median counts")
    args = parser.parse_args(argv)
    if not args.video.is_file():
        parser.error(f"{args.video}: no such video")

    wall_ratios, cpu_ratios = [], []
    with tempfile.TemporaryDirectory() as folder:
        model, checkpoint = seeded_vits(Path(folder), args.dtype)
        size_hw = prep.model_size(next(iter_frames(args.video))[1].shape[:2], args.input_size)
        print(f"video {args.video.name}, grid {size_hw[0]}x{size_hw[1]}, {args.dtype}, batch {args.batch_size}, "
              f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs", flush=True)
        forward = forward_per_frame(model, args.video, args.input_size, args.batch_size, args.repeats)
        for round_number in range(1, args.rounds + 1):
            # each pipeline run is compared with the model-only runs just before and after it, so a machine
            # whose speed drifts (other jobs, clocks) skews one round, not the result
            wall, cpu, frames = end_to_end_per_frame(model, checkpoint, args.video, Path(folder) / "depth.mp4",
                                                     args.input_size, args.batch_size, args.dtype, args.max_frames)
            after = forward_per_frame(model, args.video, args.input_size, args.batch_size, args.repeats)
            forward_wall, forward_cpu = (forward[0] + after[0]) / 2, (forward[1] + after[1]) / 2
            wall_ratios.append(wall / forward_wall)
            cpu_ratios.append(cpu / forward_cpu)
            print(f"round {round_number}: model forward only {forward_wall * 1000:7.1f} ms/frame wall "
                  f"({forward_cpu * 1000:.1f} CPU), end to end {wall * 1000:7.1f} ms/frame wall "
                  f"({cpu * 1000:.1f} CPU) over {frames} frames: ratio {wall_ratios[-1]:.3f} wall, "
                  f"{cpu_ratios[-1]:.3f} CPU; load average {os.getloadavg()[0]:.2f}", flush=True)
            forward = after
    print(f"median ratio, end to end / model forward: {statistics.median(wall_ratios):.3f} wall (goal: <= 1.25), "
          f"{statistics.median(cpu_ratios):.3f} CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
