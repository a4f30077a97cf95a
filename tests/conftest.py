"""Shared fixtures: seeded random checkpoints in upstream's layout, and upstream's own model as the reference."""

import cv2
import numpy as np
import pytest
import torch

from benchmarks.upstream import upstream_model
from dav2_cli.runtime import engine

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _attention_timings_kept_per_test(tmp_path, monkeypatch):
    """Each test sees an empty cache of attention timings, and none are written to the user's cache folder."""
    monkeypatch.setattr(engine, "tuning_cache_path", lambda: tmp_path / "dav2-cache" / "attention-forms.json")


@pytest.fixture(scope="session", autouse=True)
def _torch_backend_unless_asked(tmp_path_factory):
    """Tests run torch unless they ask for OpenVINO: `--backend auto`, where OpenVINO is installed (CI installs
    it), would convert a model for every input size of every test to time the two, and run whichever won.
    Session-wide, so module- and session-scoped models are torch ones too. The commands a test runs in a child
    process keep their timings and converted graphs in a cache folder of the session's, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAV2_BACKEND", "torch")
        patch.setenv("DAV2_HOME", str(tmp_path_factory.mktemp("dav2-home")))
        yield


@pytest.fixture(scope="session")
def upstream_vits():
    return upstream_model("vits", seed=0)


@pytest.fixture(scope="session")
def upstream_vits_metric():
    return upstream_model("vits", seed=3, max_depth=20.0)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def vits_checkpoint(upstream_vits, checkpoint_dir):
    """A relative vits checkpoint file, named like upstream's."""
    path = checkpoint_dir / "depth_anything_v2_vits.pth"
    torch.save(upstream_vits.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def vits_metric_checkpoint(upstream_vits_metric, checkpoint_dir):
    path = checkpoint_dir / "depth_anything_v2_metric_hypersim_vits.pth"
    torch.save(upstream_vits_metric.state_dict(), path)
    return path


def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like BGR image: blurred noise over gradients (so depth maps are not flat)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    image = 0.6 * cv2.GaussianBlur(noise, (0, 0), max(1.0, min(height, width) / 40)) + 0.4 * ramp
    return np.clip(image * 255, 0, 255).astype(np.uint8)


@pytest.fixture
def make_photo():
    return synthetic_photo
