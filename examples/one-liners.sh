#!/usr/bin/env bash
# Everyday dav2 one-liners. Run from a folder with photo.jpg (and a checkpoint, or a model name once cached).
set -euo pipefail

dav2 image photo.jpg                                   # photo_depth.png, colour, near = bright
dav2 image photo.jpg --format gray16 -o depth16.png    # 16-bit for compositing tools
dav2 image photo.jpg -o depth.npy                      # float32 raw model output
dav2 image photo.jpg --side-by-side --cmap turbo -o compare.png
cat photo.jpg | dav2 image - -o - --format gray > depth_gray.png
