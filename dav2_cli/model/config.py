"""The architecture as data: everything the model needs to know, derived from a checkpoint's tensors."""

from dataclasses import dataclass

ENCODER_BY_WIDTH = {384: "vits", 768: "vitb", 1024: "vitl", 1536: "vitg"}

# Blocks whose outputs feed the decoder, by encoder depth. vitl's first tap is 4, not 5: upstream's choice,
# and the weights were trained with it.
TAPS_BY_BLOCKS = {12: (2, 5, 8, 11), 24: (4, 11, 17, 23), 40: (9, 19, 29, 39)}

HEAD_DIM = 64  # every DINOv2 size uses 64-wide heads, so the head count follows from the width


@dataclass(frozen=True)
class ModelConfig:
    width: int
    blocks: int
    mlp_hidden: int
    swiglu: bool
    reassembly_channels: tuple[int, int, int, int]
    fusion_channels: int
    metric: bool = False
    max_depth: float | None = None
    patch_size: int = 14
    # Depth Anything 3's mono and metric networks are DA-V2-L's with these differences, each read off its
    # weights (sky head, fusion units) or its recognised layout (the rest), never taken from a flag:
    exp_output: bool = False  # exp of the last conv (depth, larger = farther) instead of ReLU or Sigmoid
    sky_head: bool = False  # a second head scoring sky per pixel (model/head.py marks it; depth/sky.py applies --sky)
    out_norm_eps: float = 1e-6  # DA3's final LayerNorm uses 1e-5 (its blocks keep DINOv2's 1e-6)
    coarsest_lateral: bool = True  # DA-V2's refinenet4 holds a lateral unit it never uses; DA3's has none
    canonical_focal: float | None = None  # DA3 metric: metres = focal_px * output / canonical_focal

    @property
    def encoder(self) -> str:
        return ENCODER_BY_WIDTH.get(self.width, f"vit-{self.width}")

    @property
    def heads(self) -> int:
        return self.width // HEAD_DIM

    @property
    def taps(self) -> tuple[int, int, int, int]:
        return TAPS_BY_BLOCKS[self.blocks]

    @property
    def kind(self) -> str:
        return "metric" if self.metric else "relative"


@dataclass(frozen=True)
class VideoModelConfig(ModelConfig):
    """Video Depth Anything: DA-V2's encoder and decoder plus temporal modules over windows of frames.

    `metric` only changes how windows are chained (metric depth is not re-scaled between windows): the head
    ends in ReLU for both kinds, so metric VDA outputs metres directly and has no `max_depth`.
    """

    max_frames: int = 32  # rows of the temporal position table: the longest window the weights accept
