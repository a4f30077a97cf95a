"""What `--dtype` means on each device: the model's contract is float32 in and out, and this is where the compute
precision is decided, so the rest of the package never sees it.

"auto" picks per machine, from what its hardware runs natively (measured in docs/performance.md):
- CUDA: bfloat16 where the GPU has native bf16, else float16 under autocast, which keeps LayerNorm, softmax and
  the residual stream in float32 so DINOv2's large activations cannot overflow float16's range.
- CPU with native bf16 (AVX512-BF16 or AMX): bfloat16. Measured against dav2's float32 (vits, 504x756, 2 cores):
  on an AMX Xeon 423 vs 1114 ms quiet and 1848 vs 4270 ms with one busy process per core beside it; on an
  AVX512-BF16 Zen 4 (no AMX) also faster quiet and loaded (docs/performance.md). Its mean error is ~0.2-0.5% of
  the range.
- Any other CPU: float32, exact. bf16 has no hardware there (on a 2-core AVX2 EPYC, bf16 matmuls ran ~300x and
  the whole model ~7x slower than float32), and the one faster path there, `int8` (model/int8.py), gained only
  1.1-1.2x over float32 for ~0.5% of the depth range in error: too little to make a lossy result the default.
- Video Depth Anything: float32 on every device. Upstream's own threads report black or flickering depth in
  bf16/fp16 (VDA #92, #97), and no reduced precision has been shown to match it; `--dtype` still asks for one.
"""

import torch

from dav2_cli.errors import UsageError, UserError
from dav2_cli.model import VideoModelConfig
from dav2_cli.model.compute import PRECISIONS
from dav2_cli.model.int8 import quantized_engine
from dav2_cli.runtime import device as devices

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def auto_precision(device: torch.device) -> str:
    """What `--dtype auto` means for a per-image model on `device` of this machine (see the module docstring)."""
    if device.type == "cuda":
        return "bfloat16" if devices.cuda_has_native_bf16() else "float16"
    if device.type == "cpu" and devices.cpu_has_native_bf16():
        return "bfloat16"
    return "float32"


def resolve_precision(spec: str, device: torch.device) -> str:
    """`--dtype` (auto or one of PRECISIONS) → the precision a per-image model will compute in on `device`."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return auto_precision(device)
    if spec not in PRECISIONS:
        raise UsageError(f"--dtype {spec}: expected auto, {', '.join(PRECISIONS)}")
    if device.type == "cpu" and spec == "float16":
        raise UsageError("--dtype float16 is not supported on the CPU; use bfloat16, int8 or float32")
    if spec == "int8" and device.type != "cpu":
        raise UsageError(f"--dtype int8 runs on the CPU only (asked for {device.type}); use --device cpu")
    if spec == "int8" and quantized_engine() is None:
        raise UserError("--dtype int8 needs an x86 CPU and a PyTorch build with its int8 (fbgemm) kernels")
    return spec


def model_precision(spec: str, resolved: str, config) -> str:
    """The precision a model of `config` computes in, given `--dtype spec` already resolved to `resolved`: Video
    Depth Anything stays float32 under auto, on every device (see the module docstring)."""
    if isinstance(config, VideoModelConfig) and str(spec).strip().lower() == "auto":
        return "float32"
    return resolved
