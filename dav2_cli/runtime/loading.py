"""Model loading and batched inference: what every command and the Python API share.

The model's contract is float32 in and out; device.py, precision.py and backends.py decide where and how it
computes, so the rest of the package never sees it.

Threads: torch keeps its default intra-op pool (one thread per physical core); dav2's own jobs hold OpenCV to one
thread (jobs/options.py), while the Python API leaves the caller's OpenCV settings alone. OpenCV's share of the
work (decode, resize, colour maps) is a few percent of a forward pass, and in the pipeline it runs in Python
threads beside the model; a second pool of OpenCV workers would compete with torch's OpenMP threads for the same
cores, and OpenMP's barrier-synchronised kernels stall whenever one of their threads is descheduled.
"""

import numpy as np
import torch

from dav2_cli.depth import sizing as prep
from dav2_cli.depth.sky import DEFAULT_SKY, apply_sky, check_sky_mode, sky_to_image_size
from dav2_cli.errors import UsageError
from dav2_cli.model import VideoModelConfig
from dav2_cli.runtime import backends
from dav2_cli.runtime.auto_backend import FastestBackend
from dav2_cli.runtime.device import model_device, resolve_device
from dav2_cli.runtime.precision import model_precision, resolve_precision
from dav2_cli.weights.checkpoint import build_model, load_checkpoint


def load_model(path_or_name, device: str = "auto", dtype: str = "auto", *, max_depth: float | None = None,
               backend: str | None = None):
    """An eval-mode Depth-Anything V2 on `device`, computing in `dtype`; float32 (B,3,H,W) in, (B,H,W) out.

    `dtype`: auto (per machine, see runtime/precision.py), float32, bfloat16, float16 (CUDA) or int8 (CPU).
    `backend`: torch, openvino (CPU, float32/bfloat16, `pip install "dav2-cli[openvino]"`), or auto: where more
    than one backend can run it, whichever is timed fastest here (runtime/auto_backend.py), else torch. None:
    $DAV2_BACKEND, else auto, as on the command line. Only a torch model has the module's parts
    (`image_encoder`...); pass backend="torch" to work on them. The precision actually used is in
    `model.precision`, the attention and Linear forms in `model.attention_form` and `model.linear_form` (as of the
    last forward), the backend in `model.backend` (torch models have no such attribute).
    """
    torch_device = resolve_device(device)
    precision = resolve_precision(dtype, torch_device)
    backend = backends.resolve_backend(backend, torch_device, precision)  # before loading: a missing package
    checkpoint = load_checkpoint(path_or_name, max_depth=max_depth)
    precision = model_precision(dtype, precision, checkpoint.config)
    if isinstance(checkpoint.config, VideoModelConfig):
        if backend not in ("torch", "auto"):
            raise UsageError(f"--backend {backend} runs Depth-Anything V2 models only; Video Depth Anything runs "
                             f"on torch (--backend torch or auto)")
        backend = "torch"
    model = build_model(checkpoint)
    model.source = checkpoint.source  # a declared attribute of the model, for messages
    if backend == "torch":
        return backends.build("torch", model, torch_device, precision)
    float32_model = backends.build("torch", model, torch_device, "float32")  # what other backends convert from
    if backend != "auto":
        return backends.build(backend, float32_model, torch_device, precision)
    return FastestBackend(float32_model, torch_device, precision, backends.candidates(torch_device, precision))


def predict_batch(model: torch.nn.Module, images_bgr: list[np.ndarray], input_size: int = prep.DEFAULT_INPUT_SIZE,
                  *, sky: str = DEFAULT_SKY) -> list[np.ndarray]:
    """Depth for images of one shared size, each float32 HxW at that size (`sky`: see `predict`)."""
    return [depth for depth, _ in _predict_with_sky(model, images_bgr, input_size, sky)]


def _predict_with_sky(model, images_bgr: list[np.ndarray], input_size: int, sky: str):
    image_hw = images_bgr[0].shape[:2]
    if any(image.shape[:2] != image_hw for image in images_bgr):
        raise ValueError("predict_batch needs images of one size; group them first")
    prep.check_sizing("image", image_hw, input_size)
    size_hw = prep.model_size(image_hw, input_size)
    batch_bchw = np.stack([prep.to_model_input(image, size_hw) for image in images_bgr])
    return predict_prepared(model, batch_bchw, image_hw, check_sky_mode(sky))


@torch.inference_mode()
def predict_prepared(model: torch.nn.Module, batch_bchw: np.ndarray, image_hw: tuple[int, int],
                     sky: str = DEFAULT_SKY) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """`predict_batch` after its preprocessing: `batch_bchw` stacks `prep.to_model_input` results, so a video
    pipeline can prepare frames in its decoding thread while the model runs. Each image's (depth, sky mask): the
    mask is bool HxW for a sky-head model (whatever `sky` says of the depth: depth/sky.py), else None."""
    batch_bchw = torch.from_numpy(batch_bchw)
    device = model_device(model)
    if device.type == "cuda":
        batch_bchw = batch_bchw.pin_memory()  # so the copy below is a true asynchronous DMA
    batch_bchw = batch_bchw.to(device, non_blocking=True)
    if not model.config.sky_head:
        depths = prep.to_image_size(model(batch_bchw), image_hw).cpu().numpy()  # the batch's one wait for it
        return [(depth, None) for depth in depths]
    depth_bhw, sky_bhw = apply_sky(model.signed_depth(batch_bchw), sky)
    depths = prep.to_image_size(depth_bhw, image_hw).cpu().numpy()
    return list(zip(depths, sky_to_image_size(sky_bhw, image_hw).cpu().numpy()))


def predict(model: torch.nn.Module, image_bgr: np.ndarray, input_size: int = prep.DEFAULT_INPUT_SIZE, *,
            sky: str = DEFAULT_SKY):
    """Depth for one BGR image (as cv2.imread returns it), float32 HxW at the image's own size.

    Relative models return inverse depth (larger = nearer, no unit); metric models return meters; Depth Anything
    3 returns depth (larger = farther). `sky` (a sky-head model's sky pixels, depth/sky.py): "far" (their image's
    farthest other depth), "keep" (the network's raw values), or "mask": far, and (depth, sky) is returned, sky a
    bool HxW array (all False for a model without a sky head).
    """
    if not isinstance(image_bgr, np.ndarray):
        raise TypeError(f"expected an HxWx3 BGR numpy array (as cv2.imread returns), got {type(image_bgr).__name__}")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    if image_bgr.dtype not in (np.uint8, np.uint16):  # the range decides the scaling: 0..255 or 0..65535
        raise ValueError(f"expected a uint8 or uint16 image (as cv2.imread returns), got {image_bgr.dtype}; "
                         f"scale a float image in 0..1 to uint16 first, e.g. (image * 65535).round().astype(np.uint16)")
    depth, sky_hw = _predict_with_sky(model, [image_bgr], input_size, sky)[0]
    if sky != "mask":
        return depth
    return depth, np.zeros(depth.shape, dtype=bool) if sky_hw is None else sky_hw
