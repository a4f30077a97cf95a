"""Size buckets: the inputs that one timing on this machine answers for.

A folder of photos in ten aspect ratios at one --input-size runs the model at ten patch grids. Timing something
at each new grid (torch against OpenVINO, or torch's attention form) made a first folder pay ten timings for one
answer: on an AMX Xeon, torch's attention timings alone cost a cold folder of ten vits photos in bf16 ~4 s over a
warm one's 7.7 s, and one timing at --input-size 1008 took ~3 s. So each answer is timed once per bucket, on the
first input that falls in it, and read from the tuning cache for every other.

A bucket is the shorter side of the patch grid to the nearest power of 2, so one --input-size is one bucket whatever
the aspect ratio (at 504: a 36-patch short side, 1296 tokens at 1:1 up to 3024 at 21:9), and sizes a factor of 2
apart are timed apart. Measured, the answers hold within a bucket and move between them:
- backends (AVX2 EPYC, OpenVINO f32 over torch): 0.92x at 504x672 and 0.89x at 504x1176, but 0.65x at 252x336 and
  0.82x at 1008x1344; bucketing by token count instead (1:1, 16:9 and 21:9 in three buckets at 504) paid three
  conversions and timings for one answer;
- attention forms (AMX Xeon, bf16, matmul over fused): 3.2x to 3.9x from 36x36 to 36x84 patches, 1.4x at 18x24,
  4.3x at 72x96.
"""

import math


def of_grid(grid_hw: tuple[int, int]) -> str:
    """The bucket of a patch grid (rows, columns)."""
    short = max(1, min(grid_hw))
    return f"short side ~{2 ** round(math.log2(short))} patches"


def of_image(size_hw: tuple[int, int], patch: int) -> str:
    """The bucket of a model input's size in pixels."""
    return of_grid((size_hw[0] // patch, size_hw[1] // patch))
