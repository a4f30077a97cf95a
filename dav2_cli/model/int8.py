"""The int8 fast path for CPUs without native bf16: the encoder's Linear layers in int8, everything else float32.

On an AVX2 CPU (no AVX512-BF16, no AMX) bf16 matmuls have no hardware support and run far slower than float32,
so the only lower precision that can pay is int8: FBGEMM's packed int8 kernels ran the encoder's Linear shapes
1.5-2x faster than float32 on the AVX2 machine this was built on. Only the encoder's Linear layers are converted
(45% of the model's multiply-adds); the decoder's convolutions see outlier activations and stay float32, as do
attention, every norm and the residual stream.

Weights are quantised once, symmetric per output channel; each input is quantised on every call from its own
range (dynamic quantisation, 7-bit on x86 so the AVX2 kernels' 16-bit intermediate sums cannot saturate). The
range is taken per image, so a frame's depth does not depend on which other frames share its batch. The result
is not exact: with seeded random vits weights the mean difference from float32 was 0.4-1.1% of the depth range
depending on the seed (tests/test_speed_paths.py bounds one case); real weights were not available to measure.
"""

import platform
import warnings

import torch
import torch.nn.functional as F
from torch import nn

X86_ENGINES = ("x86", "fbgemm")


def quantized_engine() -> str | None:
    """The x86 quantised engine this torch build offers, if any (the int8 path is only measured on x86)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "x86"):
        return None
    if not (hasattr(torch.ops.quantized, "linear_prepack") and hasattr(torch.ops.quantized, "linear_dynamic")):
        return None  # torch has announced these kernels' retirement; without them there is no int8 path
    return next((engine for engine in X86_ENGINES if engine in torch.backends.quantized.supported_engines), None)


def _pack(linear: nn.Linear):
    weight_oi = linear.weight.detach().float()
    scale_o = (weight_oi.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
    zero_point_o = torch.zeros(weight_oi.shape[0], dtype=torch.long)
    bias_o = None if linear.bias is None else linear.bias.detach().float()
    with warnings.catch_warnings():
        # torch marks quantised *tensor* creation deprecated; the packed kernels used here are what it keeps
        warnings.simplefilter("ignore")
        qweight_oi = torch.quantize_per_channel(weight_oi, scale_o, zero_point_o, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(qweight_oi, bias_o)


class Int8Linear(nn.Module):
    """A float32-in, float32-out Linear computed by FBGEMM's int8 kernels, GELU after it on request (as the
    OneDNNLinear it replaces)."""

    form = "int8"

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._packed = _pack(linear)

    def forward(self, tokens_bnc: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        if tokens_bnc.shape[0] == 1:
            out_bnc = torch.ops.quantized.linear_dynamic(tokens_bnc, self._packed, True)
        else:
            out_bnc = torch.stack([torch.ops.quantized.linear_dynamic(tokens_nc, self._packed, True)
                                   for tokens_nc in tokens_bnc])
        return F.gelu(out_bnc) if gelu else out_bnc

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights, dynamic inputs"


def quantize_encoder_linears(model: nn.Module) -> nn.Module:
    """Swap every Linear inside `model.image_encoder` for an `Int8Linear`, in place; returns `model`."""
    engine = quantized_engine()
    if engine is None:
        raise RuntimeError("int8 needs an x86 CPU and a PyTorch build with the x86/fbgemm quantised engine")
    torch.backends.quantized.engine = engine
    encoder = model.image_encoder
    for module in list(encoder.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear(child))
    return model
