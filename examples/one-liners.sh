#!/usr/bin/env bash
# Everyday dav2 one-liners. Run from a folder with photo.jpg (and a checkpoint, or a model name once cached).
set -euo pipefail

dav2 image photo.jpg                                   # photo_depth.png, colour, near = bright
dav2 image photo.jpg --format gray16 -o depth16.png    # 16-bit for compositing tools
dav2 image photo.jpg -o depth.npy                      # float32 raw model output
dav2 image photo.jpg --side-by-side --cmap turbo -o compare.png
cat photo.jpg | dav2 image - -o - --format gray > depth_gray.png

# folders: a mirrored tree of depth maps; rerun with --skip-existing after an interruption
dav2 folder photos/ -o depth/ --format npy
dav2 folder photos/ -o depth/ --format npy --skip-existing

# split one folder over 4 machines or processes (each covers every 4th image)
for k in 1 2 3 4; do dav2 folder photos/ -o depth/ --shard "$k/4" -q & done; wait

# videos: same frame count and exact fps, audio kept, flicker-free colour
dav2 video clip.mp4 -o clip_depth.mp4
dav2 video clip.mp4 -o clip_depth.mkv --format gray16     # lossless 16-bit depth + clip_depth.mkv.json
dav2 video clip.mp4 -o frames/ --format npy --every 5     # float32 depth of every 5th frame

dav2 models                                               # what is cached, sizes, licences
dav2 bench                                                # speed on this machine
