"""The one cache of what dav2 measured or built on this machine, and the one key builder for it.

Every cached answer (the attention form, the Linear form, the faster backend, a converted OpenVINO graph) is only
as good as its key: a key that misses one thing the answer depends on hands one model's answer to another. So
each kind of answer names its key's parts in KEY_PARTS, below, and `cache_key` refuses a key that gives more or
fewer parts. The parts every key shares (the machine, the code, the libraries) are added here, once.

Model identity (`model_fingerprint`) covers the weights, the architecture as data (head kind, max_depth, sizes:
the config) and dav2's model code: two checkpoints that share an encoder but differ in the head, or one metric
checkpoint at two --max-depth values, are different models.
"""

import functools
import hashlib
import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from dav2_cli.runtime import device as devices
from dav2_cli.weights.locations import dav2_home

MODEL_CODE = Path(__file__).resolve().parent.parent / "model"  # the nn code every cached answer was made with

# what each cached answer depends on, beyond MACHINE_PARTS (timings) or LIBRARY_PARTS (built files)
KEY_PARTS = {
    # timings of one encoder block's parts: the block's shape and dtype and the size bucket (size_buckets.py) of the
    # grids they answer for
    "attention form": ("width", "heads", "dtype", "bucket"),
    "linear form": ("width", "mlp", "dtype", "bucket"),
    # torch against OpenVINO: the whole model, its precision and the size bucket of the input
    "backend": ("model", "precision", "bucket"),
    # a converted OpenVINO graph (float32; the precision is chosen when it is compiled, by OpenVINO's own cache)
    "openvino graph": ("model", "form"),
    # an ONNX export run by onnxruntime: its precision, opset and shape policy, and the export's own code
    "onnx export": ("model", "dtype", "opset", "shape", "export code"),
}
LIBRARY_PARTS = ("code", "torch", "openvino", "onnx", "onnxruntime")  # what a built file depends on
MACHINE_PARTS = LIBRARY_PARTS + ("cpu", "threads")  # what a timing depends on, besides
TIMED = ("attention form", "linear form", "backend")


def cache_folder() -> Path:
    """dav2's cache folder (the tests point it at a folder of their own)."""
    return dav2_home()


def tuning_file() -> Path:
    return cache_folder() / "tuning.json"


def library_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "none"


@functools.cache
def code_version() -> str:
    """A hash of dav2's model code: a cached answer made with other code is never read."""
    digest = hashlib.blake2b(digest_size=8)
    for code in sorted(MODEL_CODE.glob("*.py")):
        digest.update(code.name.encode())
        digest.update(code.read_bytes())
    return digest.hexdigest()


def cpu_name() -> str:
    capabilities = devices.cpu_capabilities()
    flags = "+".join(sorted(name for name, present in capabilities.items() if present is True))
    return f"{platform.machine()} {capabilities.get('cpu_name') or platform.processor()} [{flags}]"


def shared_parts(kind: str) -> dict:
    parts = {"code": code_version(), "torch": torch.__version__,
             **{name: library_version(name) for name in ("openvino", "onnx", "onnxruntime")}}
    if kind in TIMED:
        parts.update(cpu=cpu_name(), threads=torch.get_num_threads())
    return parts


def cache_key(kind: str, **parts) -> str:
    """The key of `kind`'s answer: exactly the parts KEY_PARTS names for it, plus the shared ones."""
    if set(parts) != set(KEY_PARTS[kind]):
        raise ValueError(f"a {kind} key takes {', '.join(KEY_PARTS[kind])}; got {', '.join(sorted(parts))}")
    every = {**shared_parts(kind), **parts}
    return f"{kind}: " + " ".join(f"{name}={every[name]}" for name in sorted(every))


def key_digest(key: str) -> str:
    """A file-name-sized stand-in for a key."""
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """What makes `model` the model it is: its float32 weights, its config (head kind, max_depth...) and the
    model code. Reading every weight takes ~0.1 s for vits, so it is taken once per model object."""
    cached = getattr(model, "fingerprint", None)
    if cached is not None:
        return cached
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{type(model.config).__name__} {model.config!r} code {code_version()}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().view(np.uint8))
    model.fingerprint = digest.hexdigest()
    return model.fingerprint


def _read() -> dict:
    try:
        cached = json.loads(tuning_file().read_text())
        return cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(entries: dict) -> None:
    """Best effort: an unwritable cache folder only means timing again in the next process."""
    path = tuning_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")
        partial.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(partial, path)
    except OSError:
        pass


def cached_answer(key: str, choices):
    """The answer cached under `key` if it is one of `choices`, else None."""
    answer = _read().get(key)
    return answer if answer in choices else None


def remember(key: str, answer) -> None:
    _write({**_read(), key: answer})  # re-read: another process may have added its own answers meanwhile


def cached_choice(key: str, choices, measure):
    """The choice cached under `key`, else `measure()`'s, which is then cached."""
    answer = cached_answer(key, choices)
    if answer is None:
        answer = measure()
        remember(key, answer)
    return answer
