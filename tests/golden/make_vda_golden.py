"""Writes tests/golden/vda_vits_golden.npz: upstream Video Depth Anything's depth for synthetic clips.

Run from the repository root, with upstream's code beside it (the reference folder of the project's shared
material) and its two extra dependencies installed (`pip install einops easydict`):

    python tests/golden/make_vda_golden.py [--reference ../shared/reference/video-depth-anything]

It builds upstream's VDA-S twice (relative, and metric: upstream's `metric=True`, which only stops the
scale/shift between windows), gives each the seeded weights of benchmarks/seeded_vda.py (every trained tensor
perturbed, the temporal output projections included), and runs upstream's own `infer_video_depth` in float32
on `synthetic_clip(frames, HEIGHT, WIDTH)` for each length in LENGTHS: 24 frames fit one window (padded to 32),
60 take three windows (32, then two steps of 22) and end in a padded tail. The tests rebuild the same weights
with the same recipe from dav2's side, without this code, and compare. The frames are small so the file stays
small; the model still sees INPUT_SIZE.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.seeded_vda import VDA_CONFIGS, seeded_state_dict, synthetic_clip  # noqa: E402
from benchmarks.upstream import import_without_torchvision  # noqa: E402

LENGTHS = (24, 60)  # one window; several windows with a tail
HEIGHT, WIDTH, INPUT_SIZE, FPS = 14, 21, 56, 24.0
CLIP_SEED, RELATIVE_SEED, METRIC_SEED = 7, 11, 12
OUT = Path(__file__).resolve().parent / "vda_vits_golden.npz"


def upstream_video_model():
    """Upstream's VideoDepthAnything class, imported with a stand-in for torchvision where it is absent."""
    return import_without_torchvision("video_depth_anything.video_depth").VideoDepthAnything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference" /
                        "video-depth-anything")
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference.resolve()))
    torch.set_num_threads(2)
    video_depth_anything = upstream_video_model()

    results = {}
    for kind, seed, metric in (("relative", RELATIVE_SEED, False), ("metric", METRIC_SEED, True)):
        model = video_depth_anything(**VDA_CONFIGS["vits"], metric=metric).eval()
        model.load_state_dict(seeded_state_dict(model.state_dict(), seed), strict=True)
        for frames in LENGTHS:
            clip_rgb = synthetic_clip(frames, HEIGHT, WIDTH, seed=CLIP_SEED)
            depth, _ = model.infer_video_depth(clip_rgb, FPS, input_size=INPUT_SIZE, device="cpu", fp32=True)
            results[f"{kind}_{frames}"] = depth.astype(np.float32)
            print(f"{kind}, {frames} frames: {depth.shape}, range {depth.min():.4f}..{depth.max():.4f}")
    np.savez_compressed(OUT, **results, lengths=np.array(LENGTHS),
                        clip=np.array([HEIGHT, WIDTH, INPUT_SIZE, CLIP_SEED, RELATIVE_SEED, METRIC_SEED]))
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
