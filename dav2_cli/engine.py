"""Device and precision choice, model loading and batched inference: what every command and the Python API share.

The model's contract is float32 in and out; here is where the compute precision and device are decided, so the
rest of the package never sees them.

Precision ("auto" picks per machine, from what its hardware runs natively; measured in README's speed section):
- CUDA: bfloat16 where the GPU has native bf16, else float16 under autocast, which keeps LayerNorm, softmax
  and the residual stream in float32 so DINOv2's large activations cannot overflow float16's range.
- CPU with native bf16 (AVX512-BF16 or AMX): bfloat16, with attention as blocked bf16 matrix multiplies
  (model/image_encoder.py) instead of torch's fused CPU kernel. On such a CPU (2-core EPYC with AVX512-BF16,
  vits at 504x756) the fused kernel ran bf16 no faster than float32 and held attention at ~400 of ~580 ms,
  while the linear layers and convolutions took 160 ms: attention decides whether bf16 reaches 4x upstream.
  The blocked form keeps each block's scores in cache instead of sending them through memory; it has not yet
  been timed on such a CPU (`python -m benchmarks.speed` times both there). In float32 it loses to the fused
  kernel (1.49 vs 1.31 s for the whole model on AVX2), so float32 everywhere keeps the fused kernel.
- Any other CPU: float32, exact. bf16 has no hardware there (on the 2-core AVX2 EPYC this was built on, bf16
  matmuls ran ~300x and the whole model ~7x slower than float32), and the one faster path there, `int8`
  (model/int8.py), gained only 1.1-1.2x over float32 for ~0.5% of the depth range in error: too little to make
  a lossy result the default, so it stays an explicit choice.

Threads: torch keeps its default intra-op pool (one thread per physical core); dav2's own jobs hold OpenCV to one
thread (jobs/options.py), while the Python API leaves the caller's OpenCV settings alone. OpenCV's share of the
work (decode, resize, colour maps) is a few percent of a forward pass, and in the pipeline it runs in Python
threads beside the model; a second pool of OpenCV workers would compete with torch's OpenMP threads for the same
cores, and OpenMP's barrier-synchronised kernels stall whenever one of their threads is descheduled.
"""

import numpy as np
import torch

from . import prep
from .errors import UserError
from .model import VideoModelConfig
from .model.int8 import quantize_encoder_linears, quantized_engine
from .weights.checkpoint import build_model, load_checkpoint

PRECISIONS = ("float32", "bfloat16", "float16", "int8")
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# scores per attention block on native-bf16 CPUs: 2 MiB of bf16, a block of ~90 queries for vits at 504x756
BLOCKED_ATTENTION_SCORES = 1 << 20


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


def cpu_has_native_bf16(capabilities: dict) -> bool:
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def cuda_has_native_bf16() -> bool:
    # pre-Ampere GPUs "support" bf16 only by emulation, slower than float16
    return torch.cuda.is_bf16_supported(including_emulation=False)


def auto_precision(device: torch.device) -> str:
    """What `--dtype auto` means on `device` of this machine (see the module docstring for why)."""
    if device.type == "cuda":
        return "bfloat16" if cuda_has_native_bf16() else "float16"
    if device.type == "cpu" and cpu_has_native_bf16(cpu_capabilities()):
        return "bfloat16"
    return "float32"


def resolve_precision(spec: str, device: torch.device) -> str:
    """`--dtype` (auto or one of PRECISIONS) → the precision the model will compute in on `device`."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return auto_precision(device)
    if spec not in PRECISIONS:
        raise UserError(f"--dtype {spec}: expected auto, {', '.join(PRECISIONS)}")
    if device.type == "cpu" and spec == "float16":
        raise UserError("--dtype float16 is not supported on the CPU; use bfloat16, int8 or float32")
    if spec == "int8" and device.type != "cpu":
        raise UserError(f"--dtype int8 runs on the CPU only (asked for {device.type}); use --device cpu")
    if spec == "int8" and quantized_engine() is None:
        raise UserError("--dtype int8 needs an x86 CPU and a PyTorch build with its int8 (fbgemm) kernels")
    return spec


def prepare_model(model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """A float32 eval-mode model made ready to compute in `precision` on `device` (converted in place)."""
    model.precision = precision
    # the decoder runs channels-last (see model/reassembly.py); conv weights stored that way are not
    # re-laid-out on every call
    model.to(memory_format=torch.channels_last)
    if precision == "int8":
        return quantize_encoder_linears(model)
    if precision == "float16":
        model.autocast_dtype = torch.float16
        return model.to(device)
    if precision == "bfloat16" and device.type == "cpu" and cpu_has_native_bf16(cpu_capabilities()):
        model.image_encoder.use_blocked_attention(BLOCKED_ATTENTION_SCORES)
    return model.to(device=device, dtype=TORCH_DTYPES[precision])


def load_model(path_or_name, device: str = "auto", dtype: str = "auto", *, max_depth: float | None = None):
    """An eval-mode Depth-Anything V2 on `device`, computing in `dtype`; float32 (B,3,H,W) in, (B,H,W) out.

    `dtype`: auto (per machine, see the module docstring), float32, bfloat16, float16 (CUDA) or int8 (CPU).
    The precision actually used is in `model.precision`.
    """
    torch_device = resolve_device(device)
    precision = resolve_precision(dtype, torch_device)
    checkpoint = load_checkpoint(path_or_name, max_depth=max_depth)
    if isinstance(checkpoint.config, VideoModelConfig) and torch_device.type == "cpu" and dtype == "auto":
        precision = "float32"  # VDA in bf16/fp16 gave black or flickering depth upstream (VDA #92, #97)
    model = build_model(checkpoint)
    model.source = checkpoint.source
    return prepare_model(model, torch_device, precision)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def predict_batch(model: torch.nn.Module, images_bgr: list[np.ndarray],
                  input_size: int = prep.DEFAULT_INPUT_SIZE) -> list[np.ndarray]:
    """Depth for images of one shared size, each float32 HxW at that size."""
    image_hw = images_bgr[0].shape[:2]
    if any(image.shape[:2] != image_hw for image in images_bgr):
        raise ValueError("predict_batch needs images of one size; group them first")
    size_hw = prep.model_size(image_hw, input_size)
    batch_bchw = np.stack([prep.to_model_input(image, size_hw) for image in images_bgr])
    return predict_prepared(model, batch_bchw, image_hw)


@torch.inference_mode()
def predict_prepared(model: torch.nn.Module, batch_bchw: np.ndarray, image_hw: tuple[int, int]) -> list[np.ndarray]:
    """`predict_batch` after its preprocessing: `batch_bchw` stacks `prep.to_model_input` results, so a video
    pipeline can prepare frames in its decoding thread while the model runs."""
    batch_bchw = torch.from_numpy(batch_bchw)
    device = model_device(model)
    if device.type == "cuda":
        batch_bchw = batch_bchw.pin_memory()  # so the copy below is a true asynchronous DMA
    depth_bhw = model(batch_bchw.to(device, non_blocking=True))
    return list(prep.to_image_size(depth_bhw, image_hw).cpu().numpy())  # the batch's one wait for the device


def predict(model: torch.nn.Module, image_bgr: np.ndarray, input_size: int = prep.DEFAULT_INPUT_SIZE) -> np.ndarray:
    """Depth for one BGR image (as cv2.imread returns it), float32 HxW at the image's own size.

    Relative models return inverse depth (larger = nearer, no unit); metric models return meters.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    return predict_batch(model, [image_bgr], input_size)[0]
