"""Monocular depth head: fused features to one depth value per input pixel.

The 14-pixel patch makes the last upsample 1.75x (from 8x to 14x the patch grid), done as a bilinear resize
to exactly 14 * grid. Its last activation says what the numbers are, and the weights cannot tell (identical
shapes), so the config read off the checkpoint's name or config.json decides it:
- DA-V2 relative: ReLU (inverse depth, larger = nearer, no unit);
- DA-V2 metric: a Sigmoid scaled by max_depth (metres, larger = farther);
- Depth Anything 3: exp, with no ReLU (depth, larger = farther: unitless for mono, and for metric metres once
  multiplied by focal_px / 300 outside the network, where the focal length is known).

DA3 also scores sky per pixel from the same upsampled features. Sky has no depth, and DA3's raw values there
are arbitrary, so what becomes of them is the user's choice (keep them, set them far, write the mask too:
depth/sky.py). The choice is made outside the graph, but the decision of what is sky (score >= 0.3, DA3's
threshold) is made inside it, so that every backend (torch, OpenVINO, onnxruntime) decides alike: the head
returns the depth with each sky pixel's sign flipped (`sky_signed`). DA3's exp output is strictly positive, so
the sign is free to carry one bit, and one output keeps every backend's graph and call contract as it was.
`split_signed` reads it back, and `sky_set_far` is the one rule for "far": each sky pixel gets the farthest
depth of its image's other pixels, deterministic, unlike DA3's own fill (its 99th percentile of a random
sample). An image that is all sky (or has none) keeps its values.
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
        """The depth (B,1,H,W); a sky-head model's with its sky pixels negated (`sky_signed`)."""
        depth_b1hw, sky_b1hw = self.depth_and_sky(fused_bchw, grid_hw, patch_size)
        return depth_b1hw if sky_b1hw is None else sky_signed(depth_b1hw, sky_b1hw)


def sky_signed(depth_bhw: torch.Tensor, sky_score_bhw: torch.Tensor) -> torch.Tensor:
    """Depth with every sky pixel's value negated. A depth that underflowed to 0 there is stored as minus the
    dtype's smallest normal number, so that the sign survives (-0.0 would read as ground)."""
    tiny = torch.finfo(depth_bhw.dtype).tiny
    return torch.where(sky_score_bhw >= SKY_THRESHOLD, -depth_bhw.clamp_min(tiny), depth_bhw)


def split_signed(signed_bhw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`sky_signed`'s output → (the network's depth, the sky mask (bool)), any shape."""
    return signed_bhw.abs(), signed_bhw < 0


def sky_set_far(depth_bhw: torch.Tensor, sky_bhw: torch.Tensor) -> torch.Tensor:
    """Each image's sky pixels (`sky_bhw`, bool, the shape of `depth_bhw`: B first) set to the largest depth among
    its other pixels (depth grows with distance); an image that is all sky or has none is left alone."""
    per_image = tuple(range(1, depth_bhw.ndim))
    ground = ~sky_bhw
    has_ground = ground.flatten(1).any(dim=1).reshape((-1,) + (1,) * len(per_image))
    lowest = depth_bhw.amin(dim=per_image, keepdim=True)
    farthest = torch.where(ground, depth_bhw, lowest).amax(dim=per_image, keepdim=True)
    return torch.where(sky_bhw & has_ground, farthest, depth_bhw)


def signed_sky_far(signed_bhw: torch.Tensor) -> torch.Tensor:
    """A sky-head model's public output: `sky_signed`'s depth with its sky set far."""
    return sky_set_far(*split_signed(signed_bhw))
