"""Which device runs the model, and what the CPU it may run on can do natively.

The capability probes are the one place the rest of the runtime asks about the hardware, so a test can simulate a
CPU kind (AVX2 only, AVX512-BF16, AMX) or a CUDA GPU by patching them here.
"""

import torch

from dav2_cli.errors import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"--device {spec}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: CUDA is not available in this PyTorch build or on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {spec}: Apple MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {spec}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def cpu_capabilities() -> dict:
    """The CPU's instruction-set flags as torch detects them ({} where this torch cannot tell)."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    return get_capabilities() if get_capabilities is not None else {}


def cpu_has_native_bf16(capabilities: dict | None = None) -> bool:
    capabilities = cpu_capabilities() if capabilities is None else capabilities
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def cuda_has_native_bf16() -> bool:
    # pre-Ampere GPUs "support" bf16 only by emulation, slower than float16
    return torch.cuda.is_bf16_supported(including_emulation=False)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
