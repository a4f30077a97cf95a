"""The backends that can run a model, and the choice between them: one row per backend in BACKENDS.

A backend is a row: whether its package is installed, the devices and precisions it runs, and how it builds a model
from dav2's float32 torch model. A new backend (onnxruntime, say) is one module holding its model class plus one
row here; `--backend auto` then times it against the others where it is a candidate (auto_backend.py).
"""

import os
from dataclasses import dataclass
from typing import Callable

import torch

from dav2_cli.errors import UsageError
from dav2_cli.runtime import onnxruntime_backend, openvino_backend, torch_backend


@dataclass(frozen=True)
class Backend:
    name: str
    installed: Callable[[], bool]
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    build: Callable  # (float32 torch model, device, precision) -> the model, float32 in and out
    require_installed: Callable[[], None] = lambda: None  # a usage error naming the package to install
    auto_precisions: tuple[str, ...] | None = None  # where `auto` times it; None: all of `precisions`; (): nowhere


def _openvino(float32_model, device, precision):
    return openvino_backend.OpenVINOModel(float32_model, precision)


BACKENDS = {
    "torch": Backend("torch", lambda: True, torch_backend.DEVICES, torch_backend.PRECISIONS,
                     lambda model, device, precision: torch_backend.prepare_model(model, device, precision)),
    "openvino": Backend("openvino", lambda: openvino_backend.installed(), ("cpu",), openvino_backend.PRECISIONS,
                        _openvino, lambda: openvino_backend.require_installed()),
    "onnxruntime": Backend("onnxruntime", lambda: onnxruntime_backend.installed(), onnxruntime_backend.DEVICES,
                           onnxruntime_backend.PRECISIONS, lambda *args: onnxruntime_backend.build(*args),
                           lambda: onnxruntime_backend.require_installed(), onnxruntime_backend.AUTO_PRECISIONS),
}
CHOICES = ("auto", *BACKENDS)
ENVIRONMENT = "DAV2_BACKEND"  # what `backend=None` means: the command line's default, for the API too


def candidates(device: torch.device, precision: str) -> list[str]:
    """The installed backends that run `precision` on `device`, torch first."""
    return [name for name, row in BACKENDS.items()
            if device.type in row.devices and row.installed()
            and precision in (row.precisions if row.auto_precisions is None else row.auto_precisions)]


def resolve_backend(spec: str | None, device: torch.device, precision: str) -> str:
    """`--backend` (None: $DAV2_BACKEND, else auto) → a backend's name, or auto where more than one is a candidate
    (timed: auto_backend.py). Checked before any model loads: a missing package is a usage error."""
    spec = str(os.environ.get(ENVIRONMENT, "auto") if spec is None else spec).strip().lower()
    if spec not in CHOICES:
        raise UsageError(f"--backend {spec}: expected {', '.join(CHOICES)}")
    if spec == "auto":
        return "auto" if len(candidates(device, precision)) > 1 else "torch"
    row = BACKENDS[spec]
    row.require_installed()
    if device.type not in row.devices:
        raise UsageError(f"--backend {spec} runs on the {' or '.join(row.devices).upper()} only (asked for "
                         f"{device.type}); use --device {row.devices[0]}")
    if precision not in row.precisions:
        raise UsageError(f"--dtype {precision} is not available with --backend {spec}; use "
                         f"{', '.join(row.precisions)} or auto")
    return spec


def build(name: str, float32_model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """The model `name` builds from `float32_model` (which it may convert in place)."""
    return BACKENDS[name].build(float32_model, device, precision)
