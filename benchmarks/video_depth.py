"""What Video Depth Anything costs in dav2: time per frame against per-frame DA-V2, and peak memory over length.

- Time: the streamed VDA (`TemporalDepth`, windows of 32 stepping 22; a window's time over its 22 new frames,
  which is what each frame of a long video costs) against DA-V2 of the same encoder, grid and dtype run per
  frame in the video pipeline's batches, on the same synthetic frames (476x280 at input size
  280 by default), seeded weights (speed does not depend on the values). Goal: at most 1.4x. The overlap alone
  is 32/22 = 1.45x; 32-frame batches run more efficiently than small ones. Wall time and this process's CPU
  time (all threads) are both printed, with the load average, since on a shared machine wall time mostly
  measures the neighbours.
- Memory: peak RSS of a fresh process streaming N and 5N frames (frames are made on the fly, never held).
  Goal: at most 1.15x.
- `--bf16`: bf16's error against float32 for VDA on this CPU, and its time (VDA breaks in fp16/bf16 upstream:
  VDA #92, #97).

    python -m benchmarks.video_depth [--encoder vits] [--size 476x280] [--input-size 280] [--frames 76]
                                     [--rss-frames 32] [--bf16] [--skip-rss | --rss-only]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch

from benchmarks.seeded_vda import seeded_vda_model, synthetic_clip, vda_config
from dav2_cli.runtime.loading import predict_prepared
from dav2_cli.runtime.torch_backend import prepare_model
from dav2_cli.depth import sizing as prep
from dav2_cli.model import DepthAnythingV2, ModelConfig
from dav2_cli.pipeline import DEFAULT_BATCH_SIZE
from dav2_cli.depth.temporal_windows import TemporalDepth


def clocks():
    return time.perf_counter(), time.process_time()


def since(start):
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


def frames_for(count, image_hw, size_hw, seed=0):
    """Prepared frames made one at a time from a short synthetic loop, so nothing grows with `count`."""
    loop = synthetic_clip(8, *image_hw, seed=seed)
    for index in range(count):
        image_bgr = np.ascontiguousarray(loop[index % len(loop)][:, :, ::-1])
        yield SimpleNamespace(model_input=prep.to_model_input(image_bgr, size_hw), cut=False, index=index)


def vda_model(encoder, precision="float32"):
    return prepare_model(seeded_vda_model(vda_config(encoder), seed=0), torch.device("cpu"), precision)


def dav2_model(encoder, precision="float32"):
    video = vda_config(encoder)
    config = ModelConfig(width=video.width, blocks=video.blocks, mlp_hidden=video.mlp_hidden, swiglu=False,
                         reassembly_channels=video.reassembly_channels, fusion_channels=video.fusion_channels)
    torch.manual_seed(0)
    return prepare_model(DepthAnythingV2(config).requires_grad_(False).eval(), torch.device("cpu"),
                                precision)


def time_vda(model, frames, image_hw):
    """Per-frame cost in a long video: window 0 untimed, then each later window's 22 new frames timed alone."""
    temporal = TemporalDepth(model, image_hw=image_hw)
    done = temporal.push(frames[:32])
    walls, cpus = [], []
    for first in range(32, len(frames) - 21, 22):
        start = clocks()
        done += temporal.push(frames[first:first + 22])
        wall, cpu = since(start)
        walls.append(wall / 22)
        cpus.append(cpu / 22)
    done += temporal.finish()
    return statistics.median(walls), statistics.median(cpus), [depth for _, depth in done]


def time_dav2(model, frames, image_hw):
    start = clocks()
    for first in range(0, len(frames), DEFAULT_BATCH_SIZE):
        batch = np.stack([f.model_input for f in frames[first:first + DEFAULT_BATCH_SIZE]])
        predict_prepared(model, batch, image_hw)
    wall, cpu = since(start)
    return wall / len(frames), cpu / len(frames)


def rss_child(args):
    """Streams `args.rss_child` frames and prints this process's peak RSS in MiB."""
    torch.set_num_threads(args.threads)
    image_hw = args.size
    model = vda_model(args.encoder)
    temporal = TemporalDepth(model, image_hw=image_hw)
    size_hw = prep.model_size(image_hw, args.input_size)
    done = 0
    for frame in frames_for(args.rss_child, image_hw, size_hw):
        done += len(temporal.push([frame]))
    done += len(temporal.finish())
    assert done == args.rss_child
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_rss(args, count):
    command = [sys.executable, "-m", "benchmarks.video_depth", "--rss-child", str(count), "--encoder", args.encoder,
               "--size", f"{args.size[1]}x{args.size[0]}", "--input-size", str(args.input_size),
               "--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def parse_size(text):
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="vits", choices=("vits", "vitb", "vitl"))
    parser.add_argument("--size", type=parse_size, default=(280, 476), help="frame WxH (default 476x280)")
    parser.add_argument("--input-size", type=int, default=280)
    parser.add_argument("--frames", type=int, default=76, help="frames for the timing (76: a window to start, "
                        "then two timed ones)")
    parser.add_argument("--rss-frames", type=int, default=32, help="N for the peak-RSS comparison of N and 5N")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--bf16", action="store_true", help="also measure bf16's error and time")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--rss-only", action="store_true")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args)
    if args.rss_only:
        return print_rss(args)
    torch.set_num_threads(args.threads)
    image_hw, size_hw = args.size, prep.model_size(args.size, args.input_size)
    frames = list(frames_for(args.frames, image_hw, size_hw))
    print(f"{args.encoder}, frames {image_hw[1]}x{image_hw[0]} at model size {size_hw[1]}x{size_hw[0]}, float32, "
          f"{args.threads} threads, {args.frames} frames; load average {os.getloadavg()[0]:.1f}")

    vda, dav2 = vda_model(args.encoder), dav2_model(args.encoder)
    temporal = TemporalDepth(vda, image_hw=image_hw)
    temporal.push(frames[:32])  # warm-up: one window
    time_dav2(dav2, frames[:DEFAULT_BATCH_SIZE], image_hw)
    rows = []
    for _ in range(2):  # interleaved, so both see the same neighbours
        vda_wall, vda_cpu, float32_depth = time_vda(vda, frames, image_hw)
        dav2_wall, dav2_cpu = time_dav2(dav2, frames, image_hw)
        rows.append((vda_wall, vda_cpu, dav2_wall, dav2_cpu))
    vda_wall, vda_cpu, dav2_wall, dav2_cpu = (statistics.median(column) for column in zip(*rows))
    print(f"per frame: VDA {vda_wall:.3f} s wall / {vda_cpu:.3f} s CPU; DA-V2 (batch {DEFAULT_BATCH_SIZE}) "
          f"{dav2_wall:.3f} s wall / {dav2_cpu:.3f} s CPU")
    print(f"VDA / DA-V2: {vda_wall / dav2_wall:.2f}x wall, {vda_cpu / dav2_cpu:.2f}x CPU (goal <= 1.4x)")

    if args.bf16:
        bf16 = vda_model(args.encoder, "bfloat16")
        TemporalDepth(bf16, image_hw=image_hw).push(frames[:32])
        bf16_wall, bf16_cpu, bf16_depth = time_vda(bf16, frames, image_hw)
        reference = np.stack(float32_depth)
        error = np.abs(np.stack(bf16_depth) - reference) / (reference.max() - reference.min())
        print(f"bf16: {bf16_wall:.3f} s wall / {bf16_cpu:.3f} s CPU per frame; error vs float32: mean "
              f"{error.mean():.2e}, max {error.max():.2e} of the range (seeded weights)")

    if not args.skip_rss:
        print_rss(args)


def print_rss(args):
    short, long = peak_rss(args, args.rss_frames), peak_rss(args, 5 * args.rss_frames)
    print(f"peak RSS: {args.rss_frames} frames {short:.0f} MiB, {5 * args.rss_frames} frames {long:.0f} MiB: "
          f"{long / short:.3f}x (goal <= 1.15x)")


if __name__ == "__main__":
    main()
