"""Writes tests/golden/vda_vits_golden.npz: upstream Video Depth Anything's depth for a synthetic clip.

Run from the repository root, with upstream's code beside it (the reference folder of the project's shared
material) and its two extra dependencies installed (`pip install einops easydict`):

    python tests/golden/make_vda_golden.py [--reference ../shared/reference/video-depth-anything]

It builds upstream's VDA-S twice (relative, and metric: upstream's `metric=True`, which only stops the
scale/shift between windows), gives each the seeded weights of benchmarks/seeded_vda.py (every trained tensor
perturbed, the temporal output projections included), and runs upstream's own `infer_video_depth` in float32
on `synthetic_clip(FRAMES, HEIGHT, WIDTH)`: 56 frames, enough for three windows with a padded tail. The tests
rebuild the same weights with the same recipe from dav2's side, without this code, and compare.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.seeded_vda import VDA_CONFIGS, seeded_state_dict, synthetic_clip  # noqa: E402
from benchmarks.upstream import _stand_in_for_torchvision  # noqa: E402

FRAMES, HEIGHT, WIDTH, INPUT_SIZE, FPS = 56, 20, 30, 56, 24.0
CLIP_SEED, RELATIVE_SEED, METRIC_SEED = 7, 11, 12
OUT = Path(__file__).resolve().parent / "vda_vits_golden.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference" /
                        "video-depth-anything")
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference.resolve()))
    _stand_in_for_torchvision()
    torch.set_num_threads(2)
    from video_depth_anything.video_depth import VideoDepthAnything

    clip_rgb = synthetic_clip(FRAMES, HEIGHT, WIDTH, seed=CLIP_SEED)
    results = {}
    for kind, seed, metric in (("relative", RELATIVE_SEED, False), ("metric", METRIC_SEED, True)):
        model = VideoDepthAnything(**VDA_CONFIGS["vits"], metric=metric).eval()
        model.load_state_dict(seeded_state_dict(model.state_dict(), seed), strict=True)
        depth, _ = model.infer_video_depth(clip_rgb, FPS, input_size=INPUT_SIZE, device="cpu", fp32=True)
        results[kind] = depth.astype(np.float32)
        print(f"{kind}: {depth.shape}, range {depth.min():.4f}..{depth.max():.4f}")
    np.savez_compressed(OUT, relative=results["relative"], metric=results["metric"],
                        clip=np.array([FRAMES, HEIGHT, WIDTH, INPUT_SIZE, CLIP_SEED, RELATIVE_SEED, METRIC_SEED]))
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
