"""How a model computes, as options it declares: precision, attention and Linear forms, and where its weights came
from.

Both model families (Depth-Anything V2 and Video Depth Anything) are built in float32 with torch's fused
attention and plain Linear layers; `compute_in` is the one switch that converts them for speed (the runtime
decides what a machine gets), and `back_to_float32` the one way back. Their contract stays float32 in and out
whatever they compute in.
"""

import contextlib

import torch

from dav2_cli.model.image_encoder import check_form
from dav2_cli.model.int8 import quantize_encoder_linears

PRECISIONS = ("float32", "bfloat16", "float16", "int8")
HALF_PRECISIONS = ("bfloat16", "float16")


class ComputeOptions:
    """Mixed into an nn.Module that has an `image_encoder`; call `_start_in_float32` in its __init__."""

    def _start_in_float32(self) -> None:
        self.source: str | None = None  # where the weights came from, for messages; set by whoever loads them
        self.precision = "float32"
        # float16: float32 parameters under autocast (matmuls and convs in float16; norms, softmax and the
        # residual stream in float32, where DINOv2's large activations would approach float16's limit)
        self._autocast_dtype: torch.dtype | None = None

    @property
    def attention_form(self) -> str:
        return self.image_encoder.attention_form

    @property
    def linear_form(self) -> str:
        return self.image_encoder.linear_form

    def compute_in(self, precision: str, attention_form="fused", linear_form="plain"):
        """Converts this float32 model, in place, to compute in `precision` with attention in `attention_form` and
        the encoder's Linear layers in `linear_form` (each a form of FORMS, or a chooser per grid: see
        ImageEncoder.set_attention_form).

        precision: float32 and bfloat16 cast the parameters; float16 keeps them float32 and runs under autocast;
        int8 swaps the encoder's Linear layers for FBGEMM int8 ones (model/int8.py), which cannot be undone, and
        which have no other form.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        for kind, form in (("attention", attention_form), ("linear", linear_form)):
            if not callable(form):
                check_form(kind, form)  # before anything is converted
        if precision == "int8" and linear_form != "plain":
            raise ValueError("int8 replaces the encoder's Linear layers: their form is int8's own")
        if self.precision != "float32":
            raise ValueError(f"compute_in needs a float32 model; this one already computes in {self.precision}")
        self.image_encoder.set_attention_form(attention_form)
        self.image_encoder.set_linear_form(linear_form)
        if precision == "int8":
            quantize_encoder_linears(self)
        elif precision == "float16":
            self._autocast_dtype = torch.float16
        elif precision == "bfloat16":
            self.to(torch.bfloat16)
        self.precision = precision
        return self

    def back_to_float32(self):
        """Undo a half precision in place: float32 parameters, no autocast, fused attention, plain Linear layers.
        bf16 weights can only be widened, so their results keep bf16's rounding of the weights. int8 cannot be
        undone (ValueError)."""
        if self.precision == "int8":
            raise ValueError("an int8 model cannot be turned back into float32; load it again")
        self._autocast_dtype = None
        self.image_encoder.set_attention_form("fused")
        self.image_encoder.set_linear_form("plain")
        self.float()
        self.precision = "float32"
        return self

    def compute_context(self, device: torch.device):
        """Where the forward pass runs: under float16 autocast, or as the parameters are."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self._autocast_dtype)
