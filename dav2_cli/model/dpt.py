"""The whole Depth-Anything V2 model: patch embedding → image encoder → reassembly → fusion → head.

Built from a `ModelConfig` read off the weights (see weights.py), never from flags, so a checkpoint always gets
the architecture it was trained with. The module computes in whatever dtype its parameters are in, or, when
`autocast_dtype` is set, with float32 parameters under autocast (float16 GPUs: matmuls and convs in float16,
norms, softmax and the residual stream in float32). Its contract is float32 in and float32 out either way, so
callers never see the compute dtype.
"""

import torch
from torch import nn

from .config import ModelConfig
from .fusion import Fusion
from .head import DepthHead
from .image_encoder import ImageEncoder
from .patch_embed import PatchEmbedding
from .reassembly import Reassembly


class DepthAnythingV2(nn.Module):
    autocast_dtype: torch.dtype | None = None

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbedding(config.width, config.patch_size)
        self.image_encoder = ImageEncoder(config.width, config.heads, config.blocks, config.mlp_hidden,
                                          config.swiglu, config.taps)
        self.reassembly = Reassembly(config.width, config.reassembly_channels, config.fusion_channels)
        self.fusion = Fusion(config.fusion_channels)
        self.head = DepthHead(config.fusion_channels, config.metric, config.max_depth or 1.0)

    def forward(self, image_bchw: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised RGB (B,3,H,W), H and W multiples of 14 → raw depth (B,H,W) in float32."""
        size_multiple = self.config.patch_size
        if image_bchw.ndim != 4 or image_bchw.shape[1] != 3:
            raise ValueError(f"expected a (B,3,H,W) image batch, got shape {tuple(image_bchw.shape)}")
        if image_bchw.shape[2] % size_multiple or image_bchw.shape[3] % size_multiple:
            raise ValueError(f"image sides must be multiples of {size_multiple}, got {tuple(image_bchw.shape[2:])}")
        if self.autocast_dtype is None:
            return self._depth(image_bchw)
        with torch.autocast(image_bchw.device.type, dtype=self.autocast_dtype):
            return self._depth(image_bchw)

    def _depth(self, image_bchw: torch.Tensor) -> torch.Tensor:
        compute_dtype = self.patch_embed.proj.weight.dtype
        patch_tokens_bnc, grid_hw = self.patch_embed(image_bchw.to(compute_dtype))
        stage_tokens = self.image_encoder(patch_tokens_bnc, grid_hw)
        pyramid = self.reassembly(stage_tokens, grid_hw)
        fused_bchw = self.fusion(pyramid)
        depth_b1hw = self.head(fused_bchw, grid_hw, self.config.patch_size)
        return depth_b1hw[:, 0].float()
