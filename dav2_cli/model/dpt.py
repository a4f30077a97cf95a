"""The whole Depth-Anything V2 model: patch embedding → image encoder → reassembly → fusion → head.

Built from a `ModelConfig` read off the weights (see weights.py), never from flags, so a checkpoint always gets
the architecture it was trained with. It is built in float32 with torch's fused attention; `compute_in` is the
one switch for its speed options: the precision (bf16 weights, float16 under autocast, int8 encoder Linears) and
the attention form (see image_encoder.ATTENTION_FORMS). engine.py decides which of them a machine gets. The
contract is float32 in and float32 out whatever they are, so callers never see the compute dtype.
"""

import torch
from torch import nn

from .config import ModelConfig
from .fusion import Fusion
from .head import DepthHead
from .image_encoder import ATTENTION_FORMS, ImageEncoder
from .int8 import quantize_encoder_linears
from .patch_embed import PatchEmbedding
from .reassembly import Reassembly


PRECISIONS = ("float32", "bfloat16", "float16", "int8")


class DepthAnythingV2(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.source: str | None = None  # where the weights came from, for messages; set by whoever loads them
        self.precision = "float32"
        # float16: float32 parameters under autocast (matmuls and convs in float16; norms, softmax and the
        # residual stream in float32, where DINOv2's large activations would approach float16's limit)
        self._autocast_dtype: torch.dtype | None = None
        self.patch_embed = PatchEmbedding(config.width, config.patch_size)
        self.image_encoder = ImageEncoder(config.width, config.heads, config.blocks, config.mlp_hidden,
                                          config.swiglu, config.taps)
        self.reassembly = Reassembly(config.width, config.reassembly_channels, config.fusion_channels)
        self.fusion = Fusion(config.fusion_channels)
        self.head = DepthHead(config.fusion_channels, config.metric, config.max_depth or 1.0)

    @property
    def attention_form(self) -> str:
        return self.image_encoder.attention_form

    def compute_in(self, precision: str, attention_form="fused") -> "DepthAnythingV2":
        """Converts this float32 model, in place, to compute in `precision` with attention in `attention_form`
        (one of ATTENTION_FORMS, or a chooser per grid: see ImageEncoder.set_attention_form).

        precision: float32 and bfloat16 cast the parameters; float16 keeps them float32 and runs under autocast;
        int8 swaps the encoder's Linear layers for FBGEMM int8 ones (model/int8.py), which cannot be undone.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        if not callable(attention_form) and attention_form not in ATTENTION_FORMS:
            raise ValueError(f"attention form {attention_form!r}: expected one of {', '.join(ATTENTION_FORMS)}")
        if self.precision != "float32":
            raise ValueError(f"compute_in needs a float32 model; this one already computes in {self.precision}")
        self.image_encoder.set_attention_form(attention_form)
        if precision == "int8":
            quantize_encoder_linears(self)
        elif precision == "float16":
            self._autocast_dtype = torch.float16
        elif precision == "bfloat16":
            self.to(torch.bfloat16)
        self.precision = precision
        return self

    def forward(self, image_bchw: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised RGB (B,3,H,W), H and W multiples of 14 → raw depth (B,H,W) in float32."""
        size_multiple = self.config.patch_size
        if image_bchw.ndim != 4 or image_bchw.shape[1] != 3:
            raise ValueError(f"expected a (B,3,H,W) image batch, got shape {tuple(image_bchw.shape)}")
        if image_bchw.shape[2] % size_multiple or image_bchw.shape[3] % size_multiple:
            raise ValueError(f"image sides must be multiples of {size_multiple}, got {tuple(image_bchw.shape[2:])}")
        if self._autocast_dtype is None:
            return self._depth(image_bchw)
        with torch.autocast(image_bchw.device.type, dtype=self._autocast_dtype):
            return self._depth(image_bchw)

    def _depth(self, image_bchw: torch.Tensor) -> torch.Tensor:
        compute_dtype = self.patch_embed.proj.weight.dtype
        patch_tokens_bnc, grid_hw = self.patch_embed(image_bchw.to(compute_dtype))
        stage_tokens = self.image_encoder(patch_tokens_bnc, grid_hw)
        pyramid = self.reassembly(stage_tokens, grid_hw)
        fused_bchw = self.fusion(pyramid)
        depth_b1hw = self.head(fused_bchw, grid_hw, self.config.patch_size)
        return depth_b1hw[:, 0].float()
