"""`dav2 bench`: how fast each precision this machine offers runs the model, and how far each strays from float32.

Which precision pays depends on instruction sets a spec sheet rarely states (an AVX2 CPU runs bf16 matmuls far
slower than float32; an AMX one runs them several times faster), so the honest answer is a measurement on the
user's own machine. Each row times `predict` end to end (resize in, model, resize out) on one synthetic
photo-like image, reports the model's achieved GFLOP/s against a matrix-multiply peak measured here for the
same precision, and the mean difference from CPU float32 on that image.
"""

import os
import platform
import statistics
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dav2_cli.depth import sizing as prep
from dav2_cli.runtime import device as devices
from dav2_cli.runtime import onnxruntime_backend, openvino_backend
from dav2_cli.runtime.loading import load_model, predict
from dav2_cli.runtime.precision import TORCH_DTYPES, auto_precision
from dav2_cli.runtime.torch_backend import prepare_model
from dav2_cli.runtime.allocator import keep_freed_memory
from dav2_cli.model import DepthAnythingV2, ModelConfig
from dav2_cli.model.int8 import Int8Linear, quantized_engine
from dav2_cli.weights.seeded import ENCODER_CONFIGS, seeded_model

# Upstream's vits: the default model, random weights, so the bench needs no download (speed ignores the values).
VITS = ENCODER_CONFIGS["vits"]
PEAK_SECONDS = 0.4  # per precision; long enough for a stable best-of, short enough to keep the bench quick


@dataclass(frozen=True)
class Variant:
    device: str
    precision: str
    is_auto: bool  # what `--dtype auto` picks on this device (on the CPU, one backend's row of it: see run_bench)
    backend: str = "torch"

    @property
    def label(self) -> str:
        return f"{self.device} {self.precision}" + (f" {self.backend}" if self.backend != "torch" else "")


def available_variants() -> list[Variant]:
    """CPU float32, CPU bf16 where native, CPU int8 where its kernels exist, the same float32 and bf16 run by
    OpenVINO where it is installed, and CUDA or Apple MPS when present."""
    cpu = torch.device("cpu")
    cpu_auto = auto_precision(cpu)
    precisions = ["float32"]
    if devices.cpu_has_native_bf16():
        precisions.append("bfloat16")
    if quantized_engine() is not None:
        precisions.append("int8")
    variants = [Variant("cpu", p, p == cpu_auto) for p in precisions]
    if openvino_backend.installed():
        variants += [Variant("cpu", p, p == cpu_auto, "openvino") for p in precisions
                     if p in openvino_backend.PRECISIONS]
    if onnxruntime_backend.installed():  # float32: what its CPU provider computes
        variants.append(Variant("cpu", "float32", cpu_auto == "float32", "onnxruntime"))
    if torch.cuda.is_available():
        cuda_auto = auto_precision(torch.device("cuda"))
        variants += [Variant("cuda", "float32", False), Variant("cuda", cuda_auto, True)]
    if torch.backends.mps.is_available():
        variants.append(Variant("mps", auto_precision(torch.device("mps")), True))
    return variants


def default_rows(variants: list[Variant], seconds: list[float]) -> set[int]:
    """Which rows the default runs: per device, the `--dtype auto` row, and on the CPU with both backends
    timed, the one `--backend` (or DAV2_BACKEND) names, or for auto the faster here, as auto decides."""
    setting = os.environ.get("DAV2_BACKEND", "auto").strip().lower()
    chosen = set()
    for device in dict.fromkeys(variant.device for variant in variants):
        rows = [i for i, variant in enumerate(variants) if variant.device == device and variant.is_auto]
        named = [i for i in rows if variants[i].backend == setting]
        if named:
            rows = named
        elif len(rows) > 1:  # auto: OpenVINO only where it was faster, ties to torch
            torch_row = next(i for i in rows if variants[i].backend == "torch")
            fastest = min(rows, key=lambda i: seconds[i])
            rows = [fastest if seconds[fastest] < seconds[torch_row] else torch_row]
        chosen.update(rows[:1])
    return chosen


def random_model(config: ModelConfig = VITS, seed: int = 0) -> DepthAnythingV2:
    """The seeded random model of weights/seeded.py: speed ignores the values, the error column needs them varied."""
    return seeded_model(config, seed)


def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth noise over a ramp, BGR uint8: photo-like enough that no layer sees a degenerate input."""
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    image = 0.6 * cv2.GaussianBlur(noise, (0, 0), max(1.0, min(height, width) / 40)) + 0.4 * ramp
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def count_flops(config: ModelConfig, model_hw: tuple[int, int]) -> int:
    """Multiply-adds x2 of one forward pass at `model_hw`, counted on the meta device (no compute, no memory)."""
    with torch.device("meta"):
        model = DepthAnythingV2(config).eval()
        image_bchw = torch.empty(1, 3, *model_hw)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(image_bchw)
    return counter.get_total_flops()


def wait_for(device: torch.device) -> None:
    """Until `device` has finished what was queued on it (GPU calls return before their kernels end)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _best_rate(run, flops: float, device: torch.device) -> float:
    run()
    best, began = float("inf"), time.perf_counter()
    while time.perf_counter() - began < PEAK_SECONDS:
        start = time.perf_counter()
        run()
        wait_for(device)
        best = min(best, time.perf_counter() - start)
    return flops / best


@torch.inference_mode()
def matmul_peak(device: torch.device, precision: str) -> float:
    """FLOP/s of a large matrix multiply in `precision` on `device`: the most the model's layers could reach."""
    size = 4096 if device.type == "cuda" else 1536
    flops = 2.0 * size ** 3
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    if precision == "int8":
        linear = Int8Linear(torch.nn.Linear(size, size))
        return _best_rate(lambda: linear(a[None]), flops, device)
    dtype = TORCH_DTYPES[precision]
    a = a.to(device=device, dtype=dtype)
    b = a.T.contiguous()
    return _best_rate(lambda: a @ b, flops, device)


def time_predict(model, image_bgr: np.ndarray, input_size: int, warmup: int, repeat: int):
    """Median seconds of `predict` over `repeat` runs after `warmup` ones, and the last depth map."""
    for _ in range(warmup):
        predict(model, image_bgr, input_size)
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        depth_hw = predict(model, image_bgr, input_size)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), depth_hw


def machine_line() -> str:
    capabilities = devices.cpu_capabilities()
    flags = [name for name in ("avx2", "avx512_f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
             if capabilities.get(name)]
    cpu_name = capabilities.get("cpu_name") or platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu_name}, {torch.get_num_threads()} torch threads, CPU flags: {' '.join(flags) or 'none of note'}"
            f"{gpu}; torch {torch.__version__}")


def run_bench(model_spec: str | None, input_size: int, image_hw: tuple[int, int], repeat: int, warmup: int,
              echo=print) -> None:
    """Time every available variant and print the table (see the module docstring)."""
    keep_freed_memory()  # as dav2's jobs run: see allocator.py
    if model_spec is None:
        source, config = "random-init vits (no weights needed; speed does not depend on the values)", VITS
        weights = random_model().state_dict()
    else:
        first = load_model(model_spec, "cpu", "float32", backend="torch")
        source, config, weights = first.source, first.config, None
    model_hw = prep.model_size(image_hw, input_size)
    flops = count_flops(config, model_hw)
    grid_hw = (model_hw[0] // config.patch_size, model_hw[1] // config.patch_size)
    echo(f"model: {source}")
    echo(f"machine: {machine_line()}")
    echo(f"image {image_hw[1]}x{image_hw[0]} -> model input {model_hw[1]}x{model_hw[0]} (patch grid "
         f"{grid_hw[1]}x{grid_hw[0]}), {flops / 1e9:.1f} GFLOP per image; median of {repeat} after {warmup} "
         f"warm-up, predict() end to end")
    image_bgr = synthetic_photo(*image_hw)
    header = ("variant", "ms/image", "images/s", "GFLOP/s", "peak GFLOP/s", "of peak", "mean err vs cpu float32")
    variants, rows, seconds_each = available_variants(), [], []
    reference = None
    for variant in variants:
        device = torch.device(variant.device)
        if variant.backend in ("openvino", "onnxruntime"):
            float32 = load_model(model_spec, "cpu", "float32", backend="torch") if weights is None else \
                prepare_model(_with_weights(config, weights), device, "float32")
            model = openvino_backend.OpenVINOModel(float32, variant.precision) if variant.backend == "openvino" \
                else onnxruntime_backend.build(float32, device, variant.precision)
            predict(model, image_bgr, input_size)  # converts or exports, or reads the cached graph: not timed
        elif weights is None:
            model = load_model(model_spec, variant.device, variant.precision, backend="torch")
        else:
            model = prepare_model(_with_weights(config, weights), device, variant.precision)
        seconds, depth_hw = time_predict(model, image_bgr, input_size, warmup, repeat)
        del model
        peak = matmul_peak(device, variant.precision)
        if reference is None:  # the first variant is always cpu float32
            reference, error = depth_hw, "0 (reference)"
        else:
            spread = float(reference.max() - reference.min())
            error = f"{np.abs(depth_hw - reference).mean() / spread:.3%} of range" if spread > 0 else "n/a"
        achieved = flops / seconds
        seconds_each.append(seconds)
        rows.append([variant.label, f"{seconds * 1e3:.0f}", f"{1 / seconds:.2f}", f"{achieved / 1e9:.1f}",
                     f"{peak / 1e9:.1f}", f"{achieved / peak:.0%}", error])
    for index in default_rows(variants, seconds_each):
        rows[index][0] += " (auto)"
    rows.insert(0, header)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        echo("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths))).rstrip())
    if any(variant.backend != "torch" for variant in variants):
        echo("(auto) marks what the default runs here: --dtype auto, and --backend auto picks the faster backend "
             "(DAV2_BACKEND or --backend pin it); openvino and onnxruntime rows exclude the one-off conversion "
             "or export of the model")


def _with_weights(config: ModelConfig, weights: dict) -> DepthAnythingV2:
    model = DepthAnythingV2(config).requires_grad_(False).eval()
    model.load_state_dict(weights)
    return model
