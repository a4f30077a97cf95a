"""Video Depth Anything: DA-V2's model with temporal modules in its decoder, run on windows of frames.

Every frame of a window goes through the same patch embedding, image encoder and reassembly as DA-V2 (the
maths and the weights' shapes are identical, so those modules are reused). Four `TemporalModule`s then mix
the frames, at the places the released weights were trained with:
- the 1x and 1/2x reassembly levels (upstream's layer_3, layer_4), after resampling, before `fuse_proj`;
- the outputs of the first two fusion blocks (upstream's path_4, path_3), at 1/2x and 1x the patch grid.
The two finer fusion blocks and the head are spatial only, so they run a few frames at a time: at full
resolution one 32-channel map of a 32-frame window is hundreds of MB, and per-frame work gives the same values.

The head ends in ReLU for relative and metric checkpoints alike (metric VDA outputs metres directly, with no
sigmoid and no max_depth). Contract as DA-V2's: float32 in, float32 out, whatever the compute dtype.
"""

import torch
from torch import nn

from dav2_cli.model.config import VideoModelConfig
from dav2_cli.model.dpt import DptTrunk
from dav2_cli.model.head import DepthHead
from dav2_cli.model.temporal import TemporalModule

# reassembly levels mixed over time (0 = finest); the fusion blocks whose outputs are mixed follow them
TEMPORAL_LEVELS = (2, 3)
TEMPORAL_FUSION_BLOCKS = (0, 1)


class VideoDepthAnything(DptTrunk):
    spatial_chunk_frames: int = 4  # frames per pass through the full-resolution part (peak memory)

    def __init__(self, config: VideoModelConfig):
        super().__init__(config)
        self.head = DepthHead(config.fusion_channels)  # ReLU: see the module docstring
        channels = config.reassembly_channels
        temporal_channels = [channels[level] for level in TEMPORAL_LEVELS] + [config.fusion_channels] * 2
        self.temporal = nn.ModuleList(TemporalModule(c, max_frames=config.max_frames) for c in temporal_channels)

    def forward(self, clips_btchw: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised RGB clips (B,T,3,H,W), T ≤ 32, H and W multiples of 14 → raw depth (B,T,H,W)."""
        if clips_btchw.ndim != 5 or clips_btchw.shape[2] != 3:
            raise ValueError(f"expected (B,T,3,H,W) clips, got shape {tuple(clips_btchw.shape)}")
        self._check(clips_btchw.shape[1], clips_btchw.shape[3:])
        with self.compute_context(clips_btchw.device):
            stage_tokens, grid_hw = self._encode(clips_btchw.flatten(0, 1))
            return self._decode(stage_tokens, grid_hw, clips_btchw.shape[1])

    def window(self, new_frames_nchw: torch.Tensor,
               carried_tokens: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One window of one video, reusing the encoder's work on frames an earlier window already held.

        The encoder sees each frame alone, so a frame's encoder output does not depend on its window: a video's
        windows share 10 frames, and re-encoding them would cost 10/32 of the encoder. `carried_tokens` are the
        four encoder outputs (k, tokens, width) of the window's first k frames, taken from an earlier call's
        result; `new_frames_nchw` (n,3,H,W) are the rest. Returns depth (k+n, H, W) in float32 and the window's
        four encoder outputs (k+n, tokens, width), from which the next window's can be picked.
        """
        if new_frames_nchw.ndim != 4 or new_frames_nchw.shape[1] != 3:
            raise ValueError(f"expected (N,3,H,W) frames, got shape {tuple(new_frames_nchw.shape)}")
        carried = 0 if carried_tokens is None else carried_tokens[0].shape[0]
        self._check(carried + new_frames_nchw.shape[0], new_frames_nchw.shape[2:])
        with self.compute_context(new_frames_nchw.device):
            stage_tokens, grid_hw = self._encode(new_frames_nchw)
            if carried_tokens is not None:
                stage_tokens = [torch.cat((old, new)) for old, new in zip(carried_tokens, stage_tokens)]
            return self._decode(stage_tokens, grid_hw, stage_tokens[0].shape[0])[0], stage_tokens

    def _check(self, frames: int, image_hw) -> None:
        size_multiple = self.config.patch_size
        if frames > self.config.max_frames:
            raise ValueError(f"a window holds at most {self.config.max_frames} frames, got {frames}")
        if image_hw[0] % size_multiple or image_hw[1] % size_multiple:
            raise ValueError(f"image sides must be multiples of {size_multiple}, got {tuple(image_hw)}")

    def _encode(self, frames_nchw: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        compute_dtype = self.patch_embed.proj.weight.dtype
        patch_tokens_nlc, grid_hw = self.patch_embed(frames_nchw.to(compute_dtype))
        return self.image_encoder(patch_tokens_nlc, grid_hw), grid_hw

    def _decode(self, stage_tokens: list[torch.Tensor], grid_hw: tuple[int, int], frames: int) -> torch.Tensor:
        """Encoder outputs of B clips of `frames` frames each, frame-major → depth (B, frames, H, W) in float32."""
        pyramid = self._reassemble(stage_tokens, grid_hw, frames)
        coarse_nchw = self._fuse_coarse(pyramid, frames)
        depth_chunks = [self._fine(coarse_nchw[start:start + self.spatial_chunk_frames],
                                   [level[start:start + self.spatial_chunk_frames] for level in pyramid[:2]],
                                   grid_hw)
                        for start in range(0, coarse_nchw.shape[0], self.spatial_chunk_frames)]
        return torch.cat(depth_chunks)[:, 0].float().unflatten(0, (-1, frames))

    def _reassemble(self, stage_tokens: list[torch.Tensor], grid_hw: tuple[int, int], frames: int) -> list:
        pyramid = []
        for level, (stage, tokens_nlc) in enumerate(zip(self.reassembly.stages, stage_tokens)):
            n, _, c = tokens_nlc.shape
            image_nchw = tokens_nlc.reshape(n, grid_hw[0], grid_hw[1], c).permute(0, 3, 1, 2)
            resampled_nchw = stage.resample(stage.proj(image_nchw))
            if level in TEMPORAL_LEVELS:
                resampled_nchw = self.temporal[TEMPORAL_LEVELS.index(level)](resampled_nchw, frames)
            pyramid.append(stage.fuse_proj(resampled_nchw))
        return pyramid

    def _fuse_coarse(self, pyramid: list[torch.Tensor], frames: int) -> torch.Tensor:
        """Fusion blocks 0 and 1 (coarsest first), each followed by its temporal module: 1x-grid features."""
        fused_nchw = None
        for index in TEMPORAL_FUSION_BLOCKS:
            coarse_nchw = pyramid[3 - index] if fused_nchw is None else fused_nchw
            lateral_nchw = None if fused_nchw is None else pyramid[3 - index]
            out_hw = tuple(pyramid[2 - index].shape[2:])
            fused_nchw = self.fusion.blocks[index](coarse_nchw, lateral_nchw, out_hw)
            fused_nchw = self.temporal[len(TEMPORAL_LEVELS) + index](fused_nchw, frames)
        return fused_nchw

    def _fine(self, fused_nchw: torch.Tensor, fine_levels: list[torch.Tensor],
              grid_hw: tuple[int, int]) -> torch.Tensor:
        """Fusion blocks 2 and 3 and the head, spatial only: (n, 1, 14·gh, 14·gw) depth."""
        finest_hw = fine_levels[0].shape[2:]
        fused_nchw = self.fusion.blocks[2](fused_nchw, fine_levels[1], tuple(finest_hw))
        fused_nchw = self.fusion.blocks[3](fused_nchw, fine_levels[0], (2 * finest_hw[0], 2 * finest_hw[1]))
        return self.head(fused_nchw, grid_hw, self.config.patch_size)
