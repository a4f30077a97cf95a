"""Monocular depth head: fused features to one depth value per input pixel.

The 14-pixel patch makes the last upsample 1.75x (from 8x to 14x the patch grid), done as a bilinear resize
to exactly 14 * grid. Relative checkpoints end in ReLU (inverse depth, larger = nearer, no unit); metric ones
end in a Sigmoid scaled by max_depth (meters, larger = farther). The weights are identical in shape, so only the
checkpoint's name or config can tell which head applies.
"""

import torch
import torch.nn.functional as F
from torch import nn


class DepthHead(nn.Module):
    def __init__(self, channels: int, metric: bool = False, max_depth: float = 1.0, hidden: int = 32):
        super().__init__()
        self.metric = metric
        self.max_depth = float(max_depth)
        self.proj = nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1)
        self.conv = nn.Conv2d(channels // 2, hidden, kernel_size=3, padding=1)
        self.out_conv = nn.Conv2d(hidden, 1, kernel_size=1)

    def forward(self, fused_bchw: torch.Tensor, grid_hw: tuple[int, int], patch_size: int) -> torch.Tensor:
        x_bchw = F.interpolate(self.proj(fused_bchw), size=(grid_hw[0] * patch_size, grid_hw[1] * patch_size),
                               mode="bilinear", align_corners=True)
        # at full resolution every 32-channel tensor is tens of MB: rebinding x_bchw frees the upsampled one as
        # soon as the conv is done and the ReLU works in place, so at most two are ever alive (peak memory)
        x_bchw = F.relu_(self.conv(x_bchw))
        depth_b1hw = self.out_conv(x_bchw)
        if self.metric:
            return torch.sigmoid(depth_b1hw) * self.max_depth
        return F.relu(depth_b1hw)
