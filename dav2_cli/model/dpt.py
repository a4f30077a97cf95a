"""The whole Depth-Anything V2 model: patch embedding → image encoder → reassembly → fusion → head.

Built from a `ModelConfig` read off the weights (see weights.py), never from flags, so a checkpoint always gets
the architecture it was trained with. It is built in float32 with torch's fused attention; `compute_in` is the
one switch for its speed options: the precision (bf16 weights, float16 under autocast, int8 encoder Linears),
the attention form and the form of the encoder's Linear layers (model/compute.py). The runtime decides which of
them a machine gets. The contract is float32 in and float32 out whatever they are, so callers never see the
compute dtype.
"""

import torch
from torch import nn

from dav2_cli.model.compute import ComputeOptions
from dav2_cli.model.config import ModelConfig
from dav2_cli.model.fusion import Fusion
from dav2_cli.model.head import DepthHead, signed_sky_far
from dav2_cli.model.image_encoder import ImageEncoder
from dav2_cli.model.patch_embed import PatchEmbedding
from dav2_cli.model.reassembly import Reassembly


def check_image_batch(image_bchw: torch.Tensor, patch_size: int) -> None:
    """The one input contract of a per-image model, whatever runs it: (B,3,H,W), sides multiples of the patch."""
    if image_bchw.ndim != 4 or image_bchw.shape[1] != 3:
        raise ValueError(f"expected a (B,3,H,W) image batch, got shape {tuple(image_bchw.shape)}")
    if image_bchw.shape[2] % patch_size or image_bchw.shape[3] % patch_size:
        raise ValueError(f"image sides must be multiples of {patch_size}, got {tuple(image_bchw.shape[2:])}")


class DptTrunk(ComputeOptions, nn.Module):
    """The parts both model families share, with the same weights' shapes: patch embedding, image encoder,
    reassembly and fusion. Each family adds its head (and Video Depth Anything its temporal modules)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self._start_in_float32()
        self.patch_embed = PatchEmbedding(config.width, config.patch_size)
        self.image_encoder = ImageEncoder(config.width, config.heads, config.blocks, config.mlp_hidden,
                                          config.swiglu, config.taps, out_norm_eps=config.out_norm_eps)
        self.reassembly = Reassembly(config.width, config.reassembly_channels, config.fusion_channels)
        self.fusion = Fusion(config.fusion_channels, config.coarsest_lateral)


class SkyFarForward:
    """`forward` for whatever runs a per-image model's graph (the torch model itself, OpenVINO, onnxruntime, the
    auto choice between them), from its `signed_depth`: raw depth (B,H,W) in float32, a sky-head model's with its
    sky set far (head.py), which is what the public API's model gives."""

    def forward(self, image_bchw: torch.Tensor, *graph_inputs) -> torch.Tensor:
        signed_bhw = self.signed_depth(image_bchw, *graph_inputs)
        return signed_sky_far(signed_bhw) if self.config.sky_head else signed_bhw


class DepthAnythingV2(SkyFarForward, DptTrunk):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.head = DepthHead(config.fusion_channels, config.metric, config.max_depth or 1.0,
                              exp_output=config.exp_output, sky_head=config.sky_head)

    def signed_depth(self, image_bchw: torch.Tensor, position_1nc: torch.Tensor | None = None) -> torch.Tensor:
        """ImageNet-normalised RGB (B,3,H,W), H and W multiples of 14 → what every backend's graph computes: the
        raw depth (B,H,W) in float32 before any sky rule, a sky-head model's sky pixels negated (head.sky_signed),
        so that the sky decision is the graph's own on every backend.

        `position_1nc` gives the encoder's position embedding for this patch grid instead of computing it (the
        same values: `image_encoder.position_embedding`). It is the one part resized per grid in Python, so a
        graph traced with it as an input holds for every input size: OpenVINO converts the model that way.
        """
        check_image_batch(image_bchw, self.config.patch_size)
        with self.compute_context(image_bchw.device):
            return self._depth(image_bchw, position_1nc)

    def depth_and_sky(self, image_bchw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's own outputs, float32: depth (B,H,W) before sky is set far, and a sky-head model's sky
        score (B,H,W), else None. For checking against a family's reference code and for sky masks."""
        check_image_batch(image_bchw, self.config.patch_size)
        with self.compute_context(image_bchw.device):
            fused_bchw, grid_hw = self._fused(image_bchw, None)
            depth_b1hw, sky_b1hw = self.head.depth_and_sky(fused_bchw, grid_hw, self.config.patch_size)
        return depth_b1hw[:, 0].float(), None if sky_b1hw is None else sky_b1hw[:, 0].float()

    def _fused(self, image_bchw: torch.Tensor, position_1nc: torch.Tensor | None):
        compute_dtype = self.patch_embed.proj.weight.dtype
        patch_tokens_bnc, grid_hw = self.patch_embed(image_bchw.to(compute_dtype))
        stage_tokens = self.image_encoder(patch_tokens_bnc, grid_hw, position_1nc)
        pyramid = self.reassembly(stage_tokens, grid_hw)
        return self.fusion(pyramid), grid_hw

    def _depth(self, image_bchw: torch.Tensor, position_1nc: torch.Tensor | None = None) -> torch.Tensor:
        fused_bchw, grid_hw = self._fused(image_bchw, position_1nc)
        depth_b1hw = self.head(fused_bchw, grid_hw, self.config.patch_size)
        return depth_b1hw[:, 0].float()
