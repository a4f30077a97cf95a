"""Upstream's own model code, fetched on demand, as the reference dav2 is measured against.

Nobody here wrote it: it is the `depth-anything-v2==0.1.0` wheel from PyPI (upstream's model files). It is
never vendored into this repository; it is downloaded once into a cache folder. The wheel declares Python 3.12
and torchvision, neither of which the model code needs, so it is unpacked rather than installed, and
torchvision (used only for `Compose` in upstream's preprocessing helper) is stood in for by a tiny equivalent when
it is missing. The stand-in exists only while upstream's modules import (they bind `Compose` then): left in
`sys.modules` it would tell every later import that torchvision is installed, and libraries that probe for it
(transformers) fail on a module with no import spec.
"""

import importlib.machinery
import os
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import torch
from torch import nn

WHEEL = "depth-anything-v2==0.1.0"
CACHE = Path(os.environ.get("DAV2_UPSTREAM_DIR", Path(__file__).resolve().parent.parent / ".cache" / "upstream"))

# Upstream's table of decoder sizes per encoder (their run.py's model_configs).
UPSTREAM_CONFIGS = {
    "vits": {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]},
    "vitb": {"encoder": "vitb", "features": 128, "out_channels": [96, 192, 384, 768]},
    "vitl": {"encoder": "vitl", "features": 256, "out_channels": [256, 512, 1024, 1024]},
    "vitg": {"encoder": "vitg", "features": 384, "out_channels": [1536, 1536, 1536, 1536]},
}


def ensure_unpacked() -> Path:
    package_dir = CACHE / "depth_anything_v2"
    if (package_dir / "dpt.py").is_file():
        return CACHE
    CACHE.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", WHEEL, "-d", str(CACHE)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(CACHE.glob("depth_anything_v2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(f"could not fetch upstream's model code ({WHEEL}) from PyPI:\n{result.stderr}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        wheel.extractall(CACHE)
    return CACHE


def _torchvision_stand_in() -> dict:
    """Modules to place in `sys.modules` while upstream's code imports: {} where torchvision itself works."""
    try:
        import torchvision.transforms  # noqa: F401
        return {}
    except Exception:  # noqa: BLE001 - absent, or present but broken beside this torch build
        for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
            del sys.modules[name]  # a broken torchvision's half-imported modules must not linger either

    class Compose:
        def __init__(self, transforms):
            self.transforms = transforms

        def __call__(self, sample):
            for transform in self.transforms:
                sample = transform(sample)
            return sample

    torchvision = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    torchvision.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    transforms.__spec__ = importlib.machinery.ModuleSpec("torchvision.transforms", None)
    transforms.Compose = Compose
    torchvision.transforms = transforms
    return {"torchvision": torchvision, "torchvision.transforms": transforms}


def upstream_dpt():
    """The `depth_anything_v2.dpt` module of upstream's code."""
    root = str(ensure_unpacked())
    if root not in sys.path:
        sys.path.insert(0, root)
    if "depth_anything_v2.dpt" in sys.modules:
        return sys.modules["depth_anything_v2.dpt"]
    import logging

    logging.getLogger("dinov2").setLevel(logging.ERROR)  # its "xFormers not available" warnings
    return import_without_torchvision("depth_anything_v2.dpt")


def import_without_torchvision(module_name: str):
    """Import one of upstream's modules with a stand-in for torchvision (its transforms, unused by the models),
    which PyPI's wheel cannot import beside this torch; the stand-in is removed again afterwards."""
    import importlib

    stand_in = _torchvision_stand_in()
    sys.modules.update(stand_in)
    try:
        return importlib.import_module(module_name)
    finally:
        for name, module in stand_in.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def upstream_model(encoder: str = "vits", *, seed: int = 0, max_depth: float | None = None) -> nn.Module:
    """Upstream's model with seeded random weights; `max_depth` makes it upstream's metric variant.

    Upstream's metric model (metric_depth/depth_anything_v2/dpt.py) is the relative one with a Sigmoid in place
    of the last ReLU and the output multiplied by max_depth; the PyPI wheel ships only the relative file, so the
    metric variant is derived from it in exactly those two places.
    """
    from dav2_cli.weights.seeded import seeded_checkpoint

    dpt = upstream_dpt()
    model = dpt.DepthAnythingV2(**UPSTREAM_CONFIGS[encoder])
    # dav2's one recipe for seeded weights (every tensor perturbed, depth that varies), under upstream's keys; the
    # mask token is unused by both models
    missing = model.load_state_dict(seeded_checkpoint(encoder, seed), strict=False).missing_keys
    assert missing == ["pretrained.mask_token"], missing
    if max_depth is not None:
        model.depth_head.scratch.output_conv2[3] = nn.Sigmoid()
        model = _MetricWrapper(model, max_depth)
    return model.eval()


class _MetricWrapper(nn.Module):
    def __init__(self, relative: nn.Module, max_depth: float):
        super().__init__()
        self.inner = relative
        self.max_depth = max_depth

    def forward(self, x):
        return self.inner(x) * self.max_depth

    @torch.no_grad()
    def infer_image(self, raw_image, input_size=518):
        return self.inner.infer_image(raw_image, input_size) * self.max_depth

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)
