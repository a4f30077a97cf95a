"""Monocular depth head: fused features to one depth value per input pixel.

The 14-pixel patch makes the last upsample 1.75x (from 8x to 14x the patch grid), done as a bilinear resize
to exactly 14 * grid. Its last activation says what the numbers are, and the weights cannot tell (identical
shapes), so the config read off the checkpoint's name or config.json decides it:
- DA-V2 relative: ReLU (inverse depth, larger = nearer, no unit);
- DA-V2 metric: a Sigmoid scaled by max_depth (metres, larger = farther);
- Depth Anything 3: exp, with no ReLU (depth, larger = farther: unitless for mono, and for metric metres once
  multiplied by focal_px / 300 outside the network, where the focal length is known).

DA3 also scores sky per pixel from the same upsampled features. Sky has no depth, and DA3's raw values there
are arbitrary, so the head sets every sky pixel (score >= 0.3, DA3's threshold) to the farthest depth of the
image's other pixels: deterministic, unlike DA3's own fill (its 99th percentile of a random sample), and computed
in the graph so that every backend (torch, OpenVINO, onnxruntime) gives the same map. An image that is all sky
(or has none) keeps its values.
"""

import torch
import torch.nn.functional as F
from torch import nn

SKY_THRESHOLD = 0.3  # DA3's: a pixel whose (ReLU'd) sky score reaches it is sky


class DepthHead(nn.Module):
    def __init__(self, channels: int, metric: bool = False, max_depth: float = 1.0, hidden: int = 32, *,
                 exp_output: bool = False, sky_head: bool = False):
        super().__init__()
        self.metric = metric
        self.max_depth = float(max_depth)
        self.exp_output = exp_output
        self.proj = nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1)
        self.conv = nn.Conv2d(channels // 2, hidden, kernel_size=3, padding=1)
        self.out_conv = nn.Conv2d(hidden, 1, kernel_size=1)
        # DA3's sky head: the same two convs' shapes, from the same upsampled features
        self.sky_conv = nn.Conv2d(channels // 2, hidden, kernel_size=3, padding=1) if sky_head else None
        self.sky_out_conv = nn.Conv2d(hidden, 1, kernel_size=1) if sky_head else None

    def depth_and_sky(self, fused_bchw: torch.Tensor, grid_hw: tuple[int, int], patch_size: int):
        """(the network's depth (B,1,H,W), its sky score (B,1,H,W) or None), before sky is set far."""
        x_bchw = F.interpolate(self.proj(fused_bchw), size=(grid_hw[0] * patch_size, grid_hw[1] * patch_size),
                               mode="bilinear", align_corners=True)
        sky_b1hw = None
        if self.sky_conv is not None:
            sky_b1hw = F.relu(self.sky_out_conv(F.relu(self.sky_conv(x_bchw))))
        # at full resolution every 32-channel tensor is tens of MB: rebinding x_bchw frees the upsampled one as
        # soon as the conv is done and the ReLU works in place, so at most two are ever alive (peak memory)
        x_bchw = F.relu_(self.conv(x_bchw))
        depth_b1hw = self.out_conv(x_bchw)
        if self.exp_output:
            depth_b1hw = torch.exp(depth_b1hw)
        elif self.metric:
            depth_b1hw = torch.sigmoid(depth_b1hw) * self.max_depth
        else:
            depth_b1hw = F.relu(depth_b1hw)
        return depth_b1hw, sky_b1hw

    def forward(self, fused_bchw: torch.Tensor, grid_hw: tuple[int, int], patch_size: int) -> torch.Tensor:
        depth_b1hw, sky_b1hw = self.depth_and_sky(fused_bchw, grid_hw, patch_size)
        return depth_b1hw if sky_b1hw is None else sky_set_far(depth_b1hw, sky_b1hw)


def sky_set_far(depth_b1hw: torch.Tensor, sky_b1hw: torch.Tensor) -> torch.Tensor:
    """Each image's sky pixels set to the largest depth among its other pixels (depth grows with distance)."""
    sky = sky_b1hw >= SKY_THRESHOLD
    ground = ~sky
    has_ground = ground.flatten(1).any(dim=1)[:, None, None, None]
    lowest = depth_b1hw.amin(dim=(1, 2, 3), keepdim=True)
    farthest = torch.where(ground, depth_b1hw, lowest).amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(sky & has_ground, farthest, depth_b1hw)
