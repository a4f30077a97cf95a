"""Patch embedding: the image becomes one token per 14x14 patch.

A strided convolution is exactly a per-patch linear projection, which is why the model only accepts sides that
are multiples of the patch size; the runner's sizing (depth/sizing.py) guarantees that.
"""

import torch
from torch import nn


class PatchEmbedding(nn.Module):
    def __init__(self, width: int, patch_size: int = 14):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, image_bchw: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        patches_bchw = self.proj(image_bchw)
        # plain ints when run; while torch.jit.trace records the model (for OpenVINO) they stay traced values, so
        # every reshape and resize that follows holds for any input size
        grid_hw = (patches_bchw.shape[2], patches_bchw.shape[3])
        return patches_bchw.flatten(2).transpose(1, 2), grid_hw
