"""Depth for one photo with the Python API, saved raw and as a picture.

    python examples/api_example.py MODEL PHOTO

MODEL is a model name (`dav2 models`), upstream's file name (depth_anything_v2_vits.pth, found in the cache
from any folder) or a checkpoint path. Writes depth.npy and depth.png in the current folder.
"""

import sys

import cv2
import numpy as np

import dav2_cli


def main(checkpoint: str, photo: str) -> None:
    model = dav2_cli.load_model(checkpoint, device="auto", dtype="auto")
    image = cv2.imread(photo)
    if image is None:
        sys.exit(f"cannot read {photo}")
    depth = dav2_cli.predict(model, image, input_size=504)  # float32, the photo's own size
    np.save("depth.npy", depth)
    # relative models: larger = nearer, so a plain min-max stretch already draws near as bright
    picture = ((depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-12) * 255).astype(np.uint8)
    cv2.imwrite("depth.png", picture)
    print(f"depth {depth.shape} in [{depth.min():.4f}, {depth.max():.4f}] → depth.npy, depth.png")


if __name__ == "__main__":
    if len(sys.argv) != 3:  # a usage mistake: say how to call it, exit 2 as the dav2 command does
        print(f"usage: python {sys.argv[0]} MODEL PHOTO\n" + __doc__.split("\n\n", 2)[2].rstrip(), file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
