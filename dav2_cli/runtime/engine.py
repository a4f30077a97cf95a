"""Device and precision choice, model loading and batched inference: what every command and the Python API share.

The model's contract is float32 in and out; here is where the compute precision and device are decided, so the
rest of the package never sees them.

Precision ("auto" picks per machine, from what its hardware runs natively; measured in README's speed section):
- CUDA: bfloat16 where the GPU has native bf16, else float16 under autocast, which keeps LayerNorm, softmax
  and the residual stream in float32 so DINOv2's large activations cannot overflow float16's range.
- CPU with native bf16 (AVX512-BF16 or AMX): bfloat16. Measured against dav2's float32 (vits, 504x756, 2 cores):
  on an AMX Xeon 423 vs 1114 ms quiet and 1848 vs 4270 ms with one busy process per core beside it; on an
  AVX512-BF16 Zen 4 (no AMX) also faster quiet and loaded (README). Its mean error is ~0.2-0.5% of the range.
- Any other CPU: float32, exact. bf16 has no hardware there (on a 2-core AVX2 EPYC, bf16 matmuls ran ~300x and
  the whole model ~7x slower than float32), and the one faster path there, `int8` (model/int8.py), gained only
  1.1-1.2x over float32 for ~0.5% of the depth range in error: too little to make a lossy result the default.

Attention form (model/image_encoder.py) for bf16 on such a CPU: measured, not guessed. The fastest form differs
between CPU generations that share the same flags: torch's fused kernel won on AMX (5.02x upstream against 3.18x
for blocked multiplies) and on an AVX512-BF16 Zen 4, while plain matmul + softmax beat it on a Zen 5 (0.52 vs
0.63 s). So, like cuDNN's benchmark mode, `tuned_attention_form` times the fused and matmul forms on one encoder
block's attention at the grid being run (~0.1-0.3 s), once per machine, torch version, thread count, encoder
and grid, and keeps the answer in dav2's cache folder. The fused form is kept unless the other is clearly faster,
because it holds up best when other processes share the cores. The blocked form is never a candidate: its many
small kernels collapsed under load (AMX: 5336 ms against float32's 4270 with a busy process per core; Zen 4:
slower than float32 even quiet), and a one-off timing on a quiet machine could not see that.
Every other precision keeps the fused kernel: in float32 it beat both other forms on AVX2 (1.31 vs 1.49 s).

Linear form (model/onednn_linear.py) for float32, and for bf16 on CPUs with native bf16: measured the same way.
oneDNN with weights packed once and GELU fused into fc1 ran a vits block's Linear layers ~1.35x faster in float32
and ~1.15x in bf16 on a Zen 4, but which matmul library wins differs by CPU (MKL's plain float32 GEMM, oneDNN's
packed kernels; AMX and AVX2 were not measured), so `tuned_linear_form` times one block's Linear layers both ways
on up to LINEAR_TIMING_TOKENS tokens (~0.05-0.15 s for vits), keeps the faster, and caches it in
`linear-forms.json` per machine, encoder width and dtype. Both forms give float32's depth to ~1e-6 of the range.

Backend: torch, or OpenVINO where it is installed (`pip install "dav2-cli[openvino]"`, openvino_backend.py).
Which is faster differs by CPU, as the attention form does: on a 2-core Zen 4 (AVX512-BF16, no AMX) OpenVINO's
default bf16 ran 7.67x upstream against torch bf16's 2.57x, while on an AMX Xeon torch bf16 (423 ms) beat it
(452 ms). So `--backend auto` on the CPU times both once per machine, versions, encoder, precision and input size
(`fastest_backend`) and caches the winner beside the attention forms; without OpenVINO it is torch, silently.

Threads: torch keeps its default intra-op pool (one thread per physical core); dav2's own jobs hold OpenCV to one
thread (jobs/options.py), while the Python API leaves the caller's OpenCV settings alone. OpenCV's share of the
work (decode, resize, colour maps) is a few percent of a forward pass, and in the pipeline it runs in Python
threads beside the model; a second pool of OpenCV workers would compete with torch's OpenMP threads for the same
cores, and OpenMP's barrier-synchronised kernels stall whenever one of their threads is descheduled.
"""

import copy
import json
import os
import platform
import time

import numpy as np
import torch

from dav2_cli.depth import sizing as prep
from dav2_cli.errors import UsageError, UserError
from dav2_cli.model import VideoModelConfig
from dav2_cli.model.compute import PRECISIONS
from dav2_cli.model.int8 import quantized_engine
from dav2_cli.model.onednn_linear import LINEAR_FORMS, OneDNNLinear, packed_form_available
from dav2_cli.weights.locations import dav2_home
from dav2_cli.weights.checkpoint import build_model, load_checkpoint

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


# attention forms timed for bf16 on native-bf16 CPUs, the first being the one kept unless another is clearly faster
TUNED_FORMS = ("fused", "matmul")
CLEARLY_FASTER = 0.9  # another form must take under 90% of the fused form's time
TUNING_RUNS = 3


def attention_form(device: torch.device, precision: str):
    """The attention form for `precision` on `device`: a fixed form, or `tuned_attention_form`, which the model
    calls once per grid (see the module docstring)."""
    if device.type == "cpu" and precision == "bfloat16" and cpu_has_native_bf16(cpu_capabilities()):
        return tuned_attention_form
    return "fused"


def tuning_cache_path():
    return dav2_home() / "attention-forms.json"


def machine_key() -> str:
    """What every timed choice depends on beyond the model: the CPU and its flags, torch and its thread count."""
    capabilities = cpu_capabilities()
    flags = "+".join(sorted(name for name, present in capabilities.items() if present is True))
    return (f"{platform.machine()} {capabilities.get('cpu_name') or platform.processor()} [{flags}] "
            f"torch {torch.__version__} threads {torch.get_num_threads()}")


def tuning_key(block: torch.nn.Module, grid_hw: tuple[int, int]) -> str:
    """What the fastest form depends on: the CPU, torch and its thread count, the encoder width and the grid."""
    width = block.attn.qkv.in_features
    return f"{machine_key()} width {width} grid {grid_hw[0]}x{grid_hw[1]}"


def _read_tuning_cache(path=None) -> dict:
    try:
        cached = json.loads((path or tuning_cache_path()).read_text())
        return cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_tuning_cache(entries: dict, path=None) -> None:
    """Best effort: an unwritable cache folder only means timing again in the next process."""
    path = path or tuning_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")
        partial.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(partial, path)
    except OSError:
        pass


def cached_choice(path, key: str, choices, measure) -> str:
    """The choice cached under `key` in the JSON file `path`, else `measure()`'s, which is then cached."""
    cached = _read_tuning_cache(path)
    if cached.get(key) in choices:
        return cached[key]
    choice = measure()
    _write_tuning_cache({**_read_tuning_cache(path), key: choice}, path)  # re-read: another process may have added
    return choice


def time_interleaved(run, forms, runs: int) -> dict:
    """Best seconds of `run(form)` for each form: one untimed warm-up each (first calls allocate, pick kernels and
    pack weights), then `runs` rounds with the forms interleaved, so a slow spell hits them all alike. A form whose
    warm-up raises RuntimeError (kernels that refuse this CPU or dtype) is not timed: it takes forever."""
    best, runnable = {form: float("inf") for form in forms}, []
    for form in forms:
        try:
            run(form)
            runnable.append(form)
        except RuntimeError:
            pass
    for _ in range(runs):
        for form in runnable:
            began = time.perf_counter()
            run(form)
            best[form] = min(best[form], time.perf_counter() - began)
    return best


def timing_tokens(block: torch.nn.Module, rows: int) -> torch.Tensor:
    """`rows` seeded tokens of `block`'s width and dtype, for timing its parts."""
    width, dtype = block.attn.qkv.in_features, block.attn.qkv.weight.dtype
    return torch.randn(1, rows, width, generator=torch.Generator().manual_seed(0)).to(dtype)


@torch.inference_mode()
def time_attention_forms(block: torch.nn.Module, grid_hw: tuple[int, int], forms=TUNED_FORMS,
                         runs: int = TUNING_RUNS) -> dict:
    """Best seconds of one block's attention in each form on tokens of `grid_hw`, the forms interleaved."""
    attn, tokens_bnc = block.attn, timing_tokens(block, 1 + grid_hw[0] * grid_hw[1])

    def run(form):
        attn.form = form
        attn(tokens_bnc)

    kept = attn.form
    try:
        return time_interleaved(run, forms, runs)
    finally:
        attn.form = kept


def pick_attention_form(seconds: dict) -> str:
    fused = seconds["fused"]
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[fastest] < CLEARLY_FASTER * fused else "fused"


def tuned_attention_form(block: torch.nn.Module, grid_hw: tuple[int, int]) -> str:
    """The fastest attention form for `block` at `grid_hw` on this machine: from the cache, else timed now."""
    return cached_choice(tuning_cache_path(), tuning_key(block, grid_hw), TUNED_FORMS,
                         lambda: pick_attention_form(time_attention_forms(block, grid_hw)))


# rows of tokens the Linear forms are timed on: a block's Linear layers take ~0.1 s per form at vitl's width in
# float32 at this size, and the packed form's gain at 512 rows was that at 1945 (vits: 0.77 vs 0.70 of the plain
# time in float32, 0.89 vs 0.86 in bf16, Zen 4), so one timing serves every grid at least that large
LINEAR_TIMING_TOKENS = 512


def linear_form(device: torch.device, precision: str):
    """The form of the encoder's Linear layers for `precision` on `device`: `tuned_linear_form` where the packed
    form can run (float32, and bf16 on CPUs with native bf16, in a torch built with oneDNN), else plain."""
    if device.type == "cpu" and packed_form_available() and (
            precision == "float32" or (precision == "bfloat16" and cpu_has_native_bf16(cpu_capabilities()))):
        return tuned_linear_form
    return "plain"


def linear_cache_path():
    return tuning_cache_path().with_name("linear-forms.json")


def linear_timing_rows(grid_hw: tuple[int, int]) -> int:
    return min(1 + grid_hw[0] * grid_hw[1], LINEAR_TIMING_TOKENS)


def linear_tuning_key(block: torch.nn.Module, grid_hw: tuple[int, int]) -> str:
    return (f"{machine_key()} width {block.attn.qkv.in_features} {str(block.attn.qkv.weight.dtype)[6:]} "
            f"rows {linear_timing_rows(grid_hw)}")


@torch.inference_mode()
def time_linear_forms(block: torch.nn.Module, grid_hw: tuple[int, int], forms=LINEAR_FORMS,
                      runs: int = TUNING_RUNS) -> dict:
    """Best seconds of one block's Linear layers (qkv, proj and the MLP) in each form, on the tokens of `grid_hw`
    up to LINEAR_TIMING_TOKENS rows, the forms interleaved."""
    layers = [layer for layer in block.modules() if isinstance(layer, OneDNNLinear)]
    tokens_bnc = timing_tokens(block, linear_timing_rows(grid_hw))

    def run(form):
        for layer in layers:
            layer.form = form  # not set_form: switching to plain would drop the packed weights each time
        block.attn.qkv(tokens_bnc)
        block.attn.proj(tokens_bnc)
        block.mlp(tokens_bnc)

    kept = [layer.form for layer in layers]
    try:
        return time_interleaved(run, forms, runs)
    finally:
        for layer, form in zip(layers, kept):
            layer.set_form(form)


def pick_linear_form(seconds: dict) -> str:
    return "packed" if seconds["packed"] < seconds["plain"] else "plain"


def tuned_linear_form(block: torch.nn.Module, grid_hw: tuple[int, int]) -> str:
    """The faster Linear form for `block` at `grid_hw` on this machine: from the cache, else timed now."""
    return cached_choice(linear_cache_path(), linear_tuning_key(block, grid_hw), LINEAR_FORMS,
                         lambda: pick_linear_form(time_linear_forms(block, grid_hw)))


def resolve_precision(spec: str, device: torch.device) -> str:
    """`--dtype` (auto or one of PRECISIONS) → the precision the model will compute in on `device`."""
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


BACKENDS = ("auto", "torch", "openvino")
BACKEND_PRECISIONS = ("float32", "bfloat16")  # what OpenVINO computes in here; int8 and float16 stay torch's


def backend_cache_path():
    return tuning_cache_path().with_name("backends.json")


def resolve_backend(spec: str, device: torch.device, precision: str) -> str:
    """`--backend` → torch, openvino, or auto (timed per input size: `fastest_backend`), checked before any model
    loads. auto is torch wherever OpenVINO is not a candidate: off the CPU, without the package, in int8/float16."""
    spec = str(spec).strip().lower()
    if spec not in BACKENDS:
        raise UsageError(f"--backend {spec}: expected {', '.join(BACKENDS)}")
    from dav2_cli.runtime import openvino_backend

    if spec == "openvino":
        openvino_backend.require_installed()
        if device.type != "cpu":
            raise UsageError(f"--backend openvino runs on the CPU only (asked for {device.type}); use --device cpu")
        if precision not in BACKEND_PRECISIONS:
            raise UsageError(f"--dtype {precision} is not available with --backend openvino; use float32, "
                            f"bfloat16 or auto")
        return spec
    if spec == "auto" and (device.type != "cpu" or precision not in BACKEND_PRECISIONS
                           or not openvino_backend.installed()):
        return "torch"
    return spec


def backend_key(model: torch.nn.Module, size_hw: tuple[int, int]) -> str:
    from dav2_cli.runtime import openvino_backend

    return (f"{machine_key()} openvino {openvino_backend.version()} {model.config.encoder} {model.precision} "
            f"input {size_hw[0]}x{size_hw[1]}")


@torch.inference_mode()
def time_backends(models: dict, image_bchw: torch.Tensor) -> tuple[dict, dict]:
    """Seconds of one forward of each model on `image_bchw` after one untimed warm-up each, and each one's depth.

    The warm-up pays OpenVINO's one conversion of the model if no earlier size or run has (seconds; see
    openvino_backend.py), its first call at this shape, and torch's first-call allocations; the timed forwards add
    one forward of each.
    """
    depths = {name: model(image_bchw) for name, model in models.items()}
    seconds = {}
    for name, model in models.items():
        began = time.perf_counter()
        model(image_bchw)
        seconds[name] = time.perf_counter() - began
    return seconds, depths


def fastest_backend(model, image_bchw: torch.Tensor):
    """For `openvino_backend.FastestBackend`: the faster of its torch and OpenVINO models at this input size on
    this machine, and the depth of `image_bchw` if it had to be computed to time them (else None).

    The answer is cached in dav2's cache folder like the attention form, keyed by CPU and flags, torch and
    OpenVINO versions, thread count, encoder, precision and input size. Timing costs one extra forward of each
    backend, once per machine and size, and OpenVINO's conversion of the model once per machine (~2-3 s for vits
    on 2 cores; one graph serves every size and is kept on disk for later runs). Ties go to torch, which starts
    at once.
    """
    size_hw = tuple(image_bchw.shape[2:])
    timed = {}

    def measure():
        seconds, depths = time_backends({"torch": model.torch_model, "openvino": model.openvino_model}, image_bchw)
        choice = "openvino" if seconds["openvino"] < seconds["torch"] else "torch"
        timed["depth"] = depths[choice]
        return choice

    choice = cached_choice(backend_cache_path(), backend_key(model, size_hw), ("torch", "openvino"), measure)
    return choice, timed.get("depth")


def prepare_model(model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """A float32 eval-mode model made ready to compute in `precision` on `device` (converted in place)."""
    # the decoder runs channels-last (see model/reassembly.py); conv weights stored that way are not
    # re-laid-out on every call
    model.to(device=device, memory_format=torch.channels_last)
    return model.compute_in(precision, attention_form(device, precision), linear_form(device, precision))


def load_model(path_or_name, device: str = "auto", dtype: str = "auto", *, max_depth: float | None = None,
               backend: str | None = None):
    """An eval-mode Depth-Anything V2 on `device`, computing in `dtype`; float32 (B,3,H,W) in, (B,H,W) out.

    `dtype`: auto (per machine, see the module docstring), float32, bfloat16, float16 (CUDA) or int8 (CPU).
    `backend`: torch, openvino (CPU, float32/bfloat16, `pip install "dav2-cli[openvino]"`), or auto: on the CPU
    with OpenVINO installed, whichever of the two is timed faster here per input size (`fastest_backend`),
    else torch. None: $DAV2_BACKEND, else auto, as on the command line. Only a torch model has the module's
    parts (`image_encoder`...); pass backend="torch" to work on them. The precision actually used is in
    `model.precision`, the attention and Linear forms in `model.attention_form` and `model.linear_form` (as of
    the last forward: both are timed per input size), the backend in `model.backend` (an OpenVINO model's;
    torch models have no such attribute).
    """
    torch_device = resolve_device(device)
    precision = resolve_precision(dtype, torch_device)
    backend = resolve_backend(os.environ.get("DAV2_BACKEND", "auto") if backend is None else backend, torch_device,
                              precision)  # before loading: a missing package is a usage error
    checkpoint = load_checkpoint(path_or_name, max_depth=max_depth)
    if isinstance(checkpoint.config, VideoModelConfig):
        if backend == "openvino":
            raise UsageError("--backend openvino runs Depth-Anything V2 models only; Video Depth Anything runs on "
                             "torch (--backend torch or auto)")
        backend = "torch"
        if torch_device.type == "cpu" and dtype == "auto":
            precision = "float32"  # VDA in bf16/fp16 gave black or flickering depth upstream (VDA #92, #97)
    model = build_model(checkpoint)
    model.source = checkpoint.source  # a declared attribute of the model, for messages
    if backend == "torch":
        return prepare_model(model, torch_device, precision)
    from dav2_cli.runtime.openvino_backend import FastestBackend, OpenVINOModel

    if backend == "openvino":
        return OpenVINOModel(prepare_model(model, torch_device, "float32"), precision)
    float32_model = prepare_model(model, torch_device, "float32")  # what OpenVINO converts from

    def torch_model():
        """torch's own model, built only when a size has to be timed or torch won there: where OpenVINO is
        cached as faster (the usual case on CPUs where it is installed for speed), a bf16 copy would only hold
        memory. In float32 both backends share the one model."""
        if precision == "float32":
            return float32_model
        return prepare_model(copy.deepcopy(float32_model), torch_device, precision)

    return FastestBackend(OpenVINOModel(float32_model, precision), torch_model, precision)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def predict_batch(model: torch.nn.Module, images_bgr: list[np.ndarray],
                  input_size: int = prep.DEFAULT_INPUT_SIZE) -> list[np.ndarray]:
    """Depth for images of one shared size, each float32 HxW at that size."""
    image_hw = images_bgr[0].shape[:2]
    if any(image.shape[:2] != image_hw for image in images_bgr):
        raise ValueError("predict_batch needs images of one size; group them first")
    prep.check_sizing("image", image_hw, input_size)
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
    if not isinstance(image_bgr, np.ndarray):
        raise TypeError(f"expected an HxWx3 BGR numpy array (as cv2.imread returns), got {type(image_bgr).__name__}")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    if image_bgr.dtype not in (np.uint8, np.uint16):  # the range decides the scaling: 0..255 or 0..65535
        raise ValueError(f"expected a uint8 or uint16 image (as cv2.imread returns), got {image_bgr.dtype}; "
                         f"scale a float image in 0..1 to uint16 first, e.g. (image * 65535).round().astype(np.uint16)")
    return predict_batch(model, [image_bgr], input_size)[0]
