"""Fusion: the pyramid is merged coarse to fine, each step upsampling by 2 into the next level's size.

Bilinear with align_corners=True depends only on the input and output sizes, so passing the next level's size
equals upstream's behaviour on every grid, and on even grids it is exactly a 2x upsample.
"""

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return x_bchw + self.conv2(F.relu(self.conv1(F.relu(x_bchw))))


class FusionBlock(nn.Module):
    def __init__(self, channels: int, lateral: bool = True):
        super().__init__()
        self.lateral_rcu = ResidualConvUnit(channels) if lateral else None
        self.merged_rcu = ResidualConvUnit(channels)
        self.out_proj = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, coarse_bchw: torch.Tensor, lateral_bchw: torch.Tensor | None,
                out_hw: tuple[int, int]) -> torch.Tensor:
        merged_bchw = coarse_bchw if lateral_bchw is None else coarse_bchw + self.lateral_rcu(lateral_bchw)
        merged_bchw = self.merged_rcu(merged_bchw)
        merged_bchw = F.interpolate(merged_bchw, size=out_hw, mode="bilinear", align_corners=True)
        return self.out_proj(merged_bchw)


class Fusion(nn.Module):
    def __init__(self, channels: int, coarsest_lateral: bool = True):
        super().__init__()
        # blocks[0] starts from the coarsest level (upstream's refinenet4), blocks[3] ends at the finest. blocks[0]
        # has no lateral input: DA-V2's checkpoints still hold its lateral unit (unused), DA3's do not.
        self.blocks = nn.ModuleList(FusionBlock(channels, lateral=index > 0 or coarsest_lateral)
                                    for index in range(4))

    def forward(self, pyramid_fine_to_coarse: list[torch.Tensor]) -> torch.Tensor:
        levels = pyramid_fine_to_coarse[::-1]
        finest_hw = levels[-1].shape[2:]
        out_sizes = [tuple(level.shape[2:]) for level in levels[1:]] + [(2 * finest_hw[0], 2 * finest_hw[1])]
        fused_bchw = self.blocks[0](levels[0], None, out_sizes[0])
        for block, lateral_bchw, out_hw in zip(self.blocks[1:], levels[1:], out_sizes[1:]):
            fused_bchw = block(fused_bchw, lateral_bchw, out_hw)
        return fused_bchw
