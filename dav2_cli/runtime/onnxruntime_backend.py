"""Depth-Anything V2 run by onnxruntime: an optional backend (`pip install "dav2-cli[onnx]"`).

Why: onnxruntime is the runtime most deployments already have (C++, C#, the browser, phones), and its execution
providers reach hardware torch's CPU build cannot: CUDA and TensorRT with onnxruntime-gpu, CoreML on Apple,
DirectML on Windows. Running dav2's own export (onnx_export.py) through it here is also the proof that the exported
file gives dav2's depth.

The model is exported once per everything the graph depends on (`export_key`) and kept in dav2's cache folder;
later runs read it (exporting vits takes ~7 s on 2 cores). The call contract is the torch model's, like the
OpenVINO backend's: float32 (B,3,H,W) ImageNet-normalised in, float32 (B,H,W) raw depth out, with `.config`,
`.source`, `.precision`, `.attention_form` and `.linear_form`. onnxruntime is imported only here.
"""

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from dav2_cli.errors import UsageError, UserError
from dav2_cli.model.dpt import SkyFarForward, check_image_batch
from dav2_cli.runtime import onnx_export, tuning_cache

INSTALL_HINT = 'pip install "dav2-cli[onnx]"'
DEVICES = ("cpu", "cuda", "mps")
# what --dtype may ask for: float16 with a GPU provider; bfloat16 (auto's choice on CPUs with native bf16) runs
# float32, as OpenVINO does on CPUs without bf16 kernels, and the model's `.precision` says so
PRECISIONS = ("float32", "bfloat16", "float16")
# `--backend auto` does not time it: on a 2-core AVX512-BF16 EPYC (vits 504x756, loaded) its float32 took 10.7 s
# against OpenVINO float32's 6.7 s and torch float32's 18.1 s, so where both are installed OpenVINO wins anyway,
# and being a candidate would cost every model's first run an export (~7-30 s)
AUTO_PRECISIONS = ()
SAVED_EXPORTS = 4  # exports kept in the cache folder, the most recently used first
# providers tried for --device auto, best first; CPU always closes the list
AUTO_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CoreMLExecutionProvider",
                  "DmlExecutionProvider")
CUDA_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def installed() -> bool:
    """Without importing them: onnxruntime to run, onnx to write the export."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def require_installed(what: str = "--backend onnxruntime") -> None:
    if not installed():
        raise UsageError(f"{what} needs onnx and onnxruntime, which are not installed: {INSTALL_HINT}")


def available_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def providers_for(device_spec: str) -> list:
    """`--device` → onnxruntime's providers, in order of preference: cpu; cuda[:N] (TensorRT then CUDA); mps
    (CoreML); auto (the best the installed onnxruntime has). The CPU provider always ends the list."""
    spec = str(device_spec).strip().lower()
    have = available_providers()
    cpu = ["CPUExecutionProvider"]
    if spec == "cpu":
        return cpu
    if spec == "auto":
        return [name for name in AUTO_PROVIDERS if name in have] + cpu
    if spec == "mps":
        if "CoreMLExecutionProvider" not in have:
            raise UserError("--device mps: this onnxruntime has no CoreML provider")
        return ["CoreMLExecutionProvider"] + cpu
    if spec == "cuda" or spec.startswith("cuda:"):
        index = spec.partition(":")[2] or "0"
        if not index.isdigit():
            raise UserError(f"--device {spec}: expected auto, cpu, cuda, cuda:N or mps")
        gpu = [(name, {"device_id": int(index)}) for name in CUDA_PROVIDERS if name in have]
        if not gpu:
            raise UserError(f"--device {spec}: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        return gpu + cpu
    raise UserError(f"--device {spec}: expected auto, cpu, cuda, cuda:N or mps")


def device_spec(device) -> str:
    """A torch device (or a --device string) as `providers_for` reads it."""
    if isinstance(device, torch.device):
        return f"cuda:{device.index or 0}" if device.type == "cuda" else device.type
    return str(device)


def export_dtype(precision: str, providers: list) -> str:
    """float32 everywhere; float16 only where asked and a GPU provider runs it (the CPU provider has few float16
    kernels and would cast back and forth)."""
    if precision in ("auto", "float32", "bfloat16"):
        return "float32"
    if precision == "float16" and providers[0] != "CPUExecutionProvider":
        return "float16"
    raise UsageError(f"--dtype {precision} is not available with --backend onnxruntime; use float32 (or float16 "
                     f"with a GPU provider)")


def build(float32_model: torch.nn.Module, device, precision: str) -> "OnnxRuntimeModel":
    """The backend table's entry: `float32_model` exported (or read from the cache) and run with the providers
    `device` names."""
    return OnnxRuntimeModel(float32_model, providers_for(device_spec(device)), precision)


EXPORT_CODE = ("export_graph.py", "onnx_export.py")  # beside this file: what writes the graph


@functools.cache
def export_code_version() -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name in EXPORT_CODE:
        digest.update(Path(__file__).with_name(name).read_bytes())
    return digest.hexdigest()


def export_key(model: torch.nn.Module, dtype: str, fixed_size_hw=None) -> str:
    """Everything an export's graph depends on (tuning_cache names the parts): the weights, head kind and
    max_depth, dav2's model and export code, the library versions, the precision, opset and shape policy. A stale
    export can never be read."""
    shape = "dynamic" if fixed_size_hw is None else f"{fixed_size_hw[0]}x{fixed_size_hw[1]}"
    return tuning_cache.cache_key("onnx export", model=tuning_cache.model_fingerprint(model), dtype=dtype,
                                  opset=onnx_export.OPSET, shape=shape, **{"export code": export_code_version()})


def _cache_dir() -> Path:
    return tuning_cache.cache_folder() / "onnx"


def cached_export(model: torch.nn.Module, dtype: str) -> Path:
    """The export of `model` in `dtype` from dav2's cache folder, made now if absent (atomically: a crashed or
    parallel run never leaves a half-written graph under the final name). The most recent SAVED_EXPORTS stay."""
    folder = _cache_dir()
    path = folder / f"{tuning_cache.key_digest(export_key(model, dtype))}.onnx"
    if path.is_file():
        os.utime(path)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"part-{os.getpid()}-{path.name}")
    try:
        metadata = onnx_export.export_metadata(model.config, model.source or "", dtype)
        onnx_export.export_onnx(model, partial, metadata, dtype=dtype)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    kept = sorted(folder.glob("[0-9a-f]*.onnx"), key=lambda item: item.stat().st_mtime, reverse=True)
    for stale in kept[SAVED_EXPORTS:]:
        stale.unlink(missing_ok=True)
    return path


def session(path: Path, providers: list):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about provider fallbacks go to stderr otherwise, on every run
    return onnxruntime.InferenceSession(str(path), options, providers=providers)


class OnnxRuntimeModel(SkyFarForward, torch.nn.Module):
    """A float32 dav2 model, exported once and run by onnxruntime with `providers`.

    The torch model is kept only until its export exists; the session is created on the first call. An empty
    parameter keeps `model_device` (the CPU: inputs go to onnxruntime as numpy arrays) working.
    """

    backend = "onnxruntime"
    attention_form = linear_form = "onnxruntime"

    def __init__(self, float32_model: torch.nn.Module, providers: list, precision: str = "float32"):
        super().__init__()
        self.config = float32_model.config
        self.source = float32_model.source
        self.providers = providers
        self.precision = export_dtype(precision, providers)
        self._float32_model = float32_model.eval()
        self._session = None
        self._anchor = torch.nn.Parameter(torch.empty(0), requires_grad=False)
        self.eval()

    def loaded_session(self):
        if self._session is None:
            path = cached_export(self._float32_model, self.precision)
            self._session = session(path, self.providers)
            self._float32_model = None  # the graph holds its own weights now
        return self._session

    @property
    def active_providers(self) -> list[str]:
        return self.loaded_session().get_providers()

    def signed_depth(self, image_bchw: torch.Tensor) -> torch.Tensor:
        """The exported graph's output: the model's `signed_depth`, with its sky pixels (if any) negated."""
        check_image_batch(image_bchw, self.config.patch_size)
        array = np.ascontiguousarray(image_bchw.detach().cpu().numpy(), dtype=np.float32)
        depth = self.loaded_session().run([onnx_export.OUTPUT_NAME], {onnx_export.INPUT_NAME: array})[0]
        return torch.from_numpy(np.asarray(depth, dtype=np.float32))
