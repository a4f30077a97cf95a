"""Device and dtype choice, model loading and batched inference: what every command and the Python API share.

The model's contract is float32 in and out; here is where the compute dtype and device are decided, so the
rest of the package never sees them.
"""

import numpy as np
import torch

from . import prep
from .errors import UserError
from .weights import build_model, load_checkpoint

DEVICES = ("auto", "cpu", "cuda", "mps")  # cuda:N is accepted too
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    if spec == "auto":
        if device.type == "cuda":
            # bf16 keeps float32's exponent range; DINOv2 activations can overflow float16
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if spec not in DTYPES:
        raise UserError(f"--dtype {spec}: expected auto, {', '.join(DTYPES)}")
    dtype = DTYPES[spec]
    if device.type == "cpu" and dtype == torch.float16:
        raise UserError("--dtype float16 is not supported on the CPU; use bfloat16 or float32")
    return dtype


def load_model(path_or_name, device: str = "auto", dtype: str = "auto", *, max_depth: float | None = None):
    """An eval-mode Depth-Anything V2 on `device`, computing in `dtype`; float32 (B,3,H,W) in, (B,H,W) out."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    checkpoint = load_checkpoint(path_or_name, max_depth=max_depth)
    model = build_model(checkpoint)
    model.source = checkpoint.source
    return model.to(device=torch_device, dtype=torch_dtype)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def predict_batch(model: torch.nn.Module, images_bgr: list[np.ndarray],
                  input_size: int = prep.DEFAULT_INPUT_SIZE) -> list[np.ndarray]:
    """Depth for images of one shared size, each float32 HxW at that size."""
    image_hw = images_bgr[0].shape[:2]
    if any(image.shape[:2] != image_hw for image in images_bgr):
        raise ValueError("predict_batch needs images of one size; group them first")
    size_hw = prep.model_size(image_hw, input_size)
    batch_bchw = np.stack([prep.to_model_input(image, size_hw) for image in images_bgr])
    device = model_device(model)
    depth_bhw = model(torch.from_numpy(batch_bchw).to(device, non_blocking=True))
    depth_bhw = prep.to_image_size(depth_bhw, image_hw)
    return list(depth_bhw.cpu().numpy())


def predict(model: torch.nn.Module, image_bgr: np.ndarray, input_size: int = prep.DEFAULT_INPUT_SIZE) -> np.ndarray:
    """Depth for one BGR image (as cv2.imread returns it), float32 HxW at the image's own size.

    Relative models return inverse depth (larger = nearer, no unit); metric models return meters.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    return predict_batch(model, [image_bgr], input_size)[0]
