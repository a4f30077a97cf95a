"""How close `dav2 folder` and `dav2 video` get to the model's own speed: job time against forward time.

The pipeline's promise is that decoding, resizing, colouring, encoding and writing hide behind the model, so a
job costs little more than the model's forward passes. This measures both on the same inputs, grid, dtype and
batch size, with seeded random vits weights (the speed does not depend on the values), and prints the ratios:
- folder: the marginal time per image of `dav2 folder` (a run over 2N images minus a run over the first N, so
  start-up and the model's loading cancel out) against the model alone on the same batches;
- video: end-to-end time per frame against forward time per frame.
Wall time is what users feel, but on a shared machine it mostly measures the neighbours, so CPU time (this
process and its ffmpeg children, all threads) is reported too, with the load average: a CPU-time ratio near 1
means little work is added to the model's, whatever else the machine was doing.

    python -m benchmarks.pipeline [--job folder|video|both] [--images DIR] [--video VIDEO] [--input-size 280]
                                  [--backend torch|openvino] [--copies N] [--rounds N]
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
from dav2_cli.runtime.loading import load_model
from dav2_cli.depth import sizing as prep
from dav2_cli.runtime.allocator import keep_freed_memory
from dav2_cli.runtime.interrupts import GracefulStop
from dav2_cli.jobs.options import DepthOptions
from dav2_cli.jobs.video import VideoOptions, depth_video, plan_video
from dav2_cli.media.video_read import iter_frames
from dav2_cli.pipeline import DEFAULT_BATCH_SIZE, SizeBatcher
from benchmarks.data import DEFAULT_VIDEO, SHARED_DATA

FOLDER_BATCH_SIZE = 4  # `dav2 folder`'s default


def seeded_vits(folder: Path, dtype: str, backend: str):
    """Random vits saved in upstream's layout and loaded the way users load a checkpoint."""
    checkpoint = folder / "depth_anything_v2_vits.pth"
    torch.save(upstream_model("vits", seed=0).state_dict(), checkpoint)
    return load_model(checkpoint, "cpu", dtype, backend=backend), checkpoint


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
    backend = getattr(model, "backend", "torch")  # the job runs what the model-only figures time
    options = DepthOptions(model=str(checkpoint), device="cpu", dtype=dtype, input_size=input_size, backend=backend)
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


def folder_batches(grids: list[tuple[int, int]], batch_size: int) -> list[tuple[tuple[int, int], int]]:
    """The (grid, count) of each batch `dav2 folder` runs for images of these grids, in this order."""
    batcher, batches = SizeBatcher(batch_size), []
    for grid in grids:
        batches += [(grid, len(batch)) for batch in batcher.add(grid, grid)]
    return batches + [(grid, len(batch)) for batch in batcher.flush() for grid in batch[:1]]


@torch.inference_mode()
def forward_costs(model, inputs: dict, shapes: set, repeats: int = 2) -> dict:
    """Wall and CPU seconds of `model(x)` alone for each (grid, count) batch shape: the mean of `repeats` runs."""
    costs = {}
    for grid, count in sorted(shapes):
        batch = inputs[grid][:1].expand(count, -1, -1, -1).contiguous()
        model(batch)  # warm-up for this shape
        cpu_began, began = cpu_seconds(), time.perf_counter()
        for _ in range(repeats):
            model(batch)
        costs[grid, count] = ((time.perf_counter() - began) / repeats, (cpu_seconds() - cpu_began) / repeats)
    return costs


def folder_run(checkpoint: Path, images: list[Path], folder: Path, input_size: int,
               dtype: str, backend: str) -> tuple[float, float]:
    """Wall and CPU seconds of a whole `dav2 folder` job over `images` (colour PNGs, as by default)."""
    from dav2_cli.jobs.images import JobOptions, run_folder

    source, out = folder / f"in{len(images)}", folder / f"out{len(images)}"
    source.mkdir()
    for index, path in enumerate(images):
        (source / f"{index:03d}_{path.name}").symlink_to(path.resolve())
    options = DepthOptions(model=str(checkpoint), device="cpu", dtype=dtype, input_size=input_size, backend=backend)
    cpu_began, began = cpu_seconds(), time.perf_counter()
    code = run_folder(str(source), str(out), options, JobOptions(batch_size=FOLDER_BATCH_SIZE))
    if code != 0:
        raise SystemExit(f"the folder job failed with exit code {code}")
    return time.perf_counter() - began, cpu_seconds() - cpu_began


def folder_ratio(model, checkpoint: Path, image_dir: Path, input_size: int, dtype: str, rounds: int,
                 repeats: int, copies: int) -> None:
    """Marginal job time per image against the model alone on the very batches the job runs.

    The job groups same-grid images into batches of FOLDER_BATCH_SIZE, which are a little cheaper per image
    than one image at a time; the model-only figure uses the same batches, so the ratio is the pipeline's cost
    alone. Model-only runs bracket each pair of job runs, so a machine whose speed drifts skews one round.
    `copies` > 1 lists every image that many times, so each run is longer and a neighbour's burst weighs less.
    """
    from dav2_cli.media.images import read_image

    backend = getattr(model, "backend", "torch")  # the job runs what the model-only figures time
    images = sorted(path for path in image_dir.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise SystemExit(f"{image_dir}: no images")
    images = images * copies
    inputs, grids = {}, []
    for path in images:
        image = read_image(path)
        grids.append(prep.model_size(image.shape[:2], input_size))
        inputs.setdefault(grids[-1], torch.from_numpy(prep.to_model_input(image, grids[-1])[None]))
    half_batches = folder_batches(grids, FOLDER_BATCH_SIZE)
    double_batches = folder_batches(grids * 2, FOLDER_BATCH_SIZE)
    shapes = set(half_batches) | set(double_batches)

    def model_only(costs: dict) -> tuple[float, float]:
        return tuple(sum(costs[shape][which] for shape in double_batches)
                     - sum(costs[shape][which] for shape in half_batches) for which in (0, 1))

    print(f"folder {image_dir} ({len(images)} images), {dtype} on {backend}, batch {FOLDER_BATCH_SIZE}, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    wall_ratios, cpu_ratios = [], []
    before = model_only(forward_costs(model, inputs, shapes, repeats))
    for round_number in range(1, rounds + 1):
        with tempfile.TemporaryDirectory() as folder:
            half = folder_run(checkpoint, images, Path(folder), input_size, dtype, backend)
            double = folder_run(checkpoint, images * 2, Path(folder), input_size, dtype, backend)
        after = model_only(forward_costs(model, inputs, shapes, repeats))
        forward = ((before[0] + after[0]) / 2, (before[1] + after[1]) / 2)
        wall_ratios.append((double[0] - half[0]) / forward[0])
        cpu_ratios.append((double[1] - half[1]) / forward[1])
        print(f"round {round_number}: marginal {1000 * (double[0] - half[0]) / len(images):7.1f} ms/image wall "
              f"({1000 * (double[1] - half[1]) / len(images):.1f} CPU), model forward alone "
              f"{1000 * forward[0] / len(images):7.1f} ms/image ({1000 * forward[1] / len(images):.1f} CPU): "
              f"ratio {wall_ratios[-1]:.3f} wall, {cpu_ratios[-1]:.3f} CPU; load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        before = after
    print(f"folder: median ratio, marginal job time / model forward: {statistics.median(wall_ratios):.3f} wall "
          f"(goal: <= 1.15), {statistics.median(cpu_ratios):.3f} CPU")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=("folder", "video", "both"), default="both")
    parser.add_argument("--images", type=Path, default=SHARED_DATA, help="a folder of photos for the folder job")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--input-size", type=int, default=280, help="280 runs quickly; 504 is dav2's default")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "int8"), default="float32")
    parser.add_argument("--backend", choices=("torch", "openvino"), default="torch",
                        help="what runs the model, in the jobs and in the model-only figures alike")
    parser.add_argument("--max-frames", type=int, default=None, help="default: the whole video")
    parser.add_argument("--repeats", type=int, default=5, help="forward passes timed for each model-only figure")
    parser.add_argument("--copies", type=int, default=1, help="each photo listed this many times in the folder job")
    parser.add_argument("--rounds", type=int, default=3, help="model-only / end-to-end pairs; the median counts")
    args = parser.parse_args(argv)
    if args.job != "folder" and not args.video.is_file():
        parser.error(f"{args.video}: no such video")

    keep_freed_memory()  # as in the jobs measured here, so the model-only figures run on the same allocator
    wall_ratios, cpu_ratios = [], []
    with tempfile.TemporaryDirectory() as folder:
        model, checkpoint = seeded_vits(Path(folder), args.dtype, args.backend)
        if args.job != "video":
            folder_ratio(model, checkpoint, args.images, args.input_size, args.dtype, args.rounds, args.repeats,
                         args.copies)
        if args.job == "folder":
            return 0
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
    print(f"video: median ratio, end to end / model forward: {statistics.median(wall_ratios):.3f} wall "
          f"(goal: <= 1.25), {statistics.median(cpu_ratios):.3f} CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
