"""Write a checkpoint of seeded RANDOM weights, to try dav2 with no download. Its depth maps are meaningless.

    python examples/seeded_model.py seeded-random-vits.pth [--encoder vits|vitb|vitl] [--seed N]
    dav2 image photo.jpg -m seeded-random-vits.pth -o noise.png

The file is in upstream's layout, so every command, format and option runs as with real weights; only the values
are noise. A file name that says "metric" (with "hypersim" or "vkitti") would load as a metric model, as upstream's
names do.
"""

import argparse
import sys
from pathlib import Path

import torch

from dav2_cli.weights.seeded import ENCODER_CONFIGS, seeded_checkpoint


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Write a seeded random (meaningless) DA-V2 checkpoint.")
    parser.add_argument("output", type=Path, help="the .pth file to write (refused if it exists)")
    parser.add_argument("--encoder", choices=sorted(ENCODER_CONFIGS), default="vits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.output.exists():
        parser.error(f"{args.output} exists; not overwriting it")
    if args.output.suffix != ".pth":
        parser.error("the output must end in .pth")
    part = args.output.with_name(f".{args.output.name}.part")
    torch.save(seeded_checkpoint(args.encoder, args.seed), part)
    part.rename(args.output)
    print(f"wrote {args.output}: seeded random {args.encoder} weights (seed {args.seed}); its depth is meaningless")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
