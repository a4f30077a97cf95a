"""The onnxruntime backend: dav2's export run by onnxruntime gives torch float32's depth, is exported once per
everything its graph depends on, and picks providers the way --device reads.

Which providers an onnxruntime build has is simulated (this machine has the CPU provider only); skipped only where
the `onnx` extra is absent.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from dav2_cli.errors import UserError  # noqa: E402
from dav2_cli.jobs.export import load_float32_model  # noqa: E402
from dav2_cli.runtime import onnx_export, onnxruntime_backend  # noqa: E402

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def range_error(ours, reference) -> float:
    ours, reference = np.asarray(ours), np.asarray(reference)
    return float(np.abs(ours - reference).max() / (reference.max() - reference.min()))


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    folder = tmp_path / "onnx-cache"
    monkeypatch.setattr(onnxruntime_backend, "_cache_dir", lambda: folder)
    return folder


def test_onnxruntime_model_equals_upstream_and_exports_once(vits_checkpoint, upstream_vits, cache_folder,
                                                            monkeypatch, make_photo):
    from dav2_cli.depth import sizing

    model = onnxruntime_backend.build(load_float32_model(str(vits_checkpoint), None), torch.device("cpu"), "float32")
    assert model.backend == "onnxruntime" and model.precision == "float32"
    batch = torch.from_numpy(np.stack([sizing.to_model_input(make_photo(84, 112, seed=s), (84, 112))
                                       for s in range(2)]))
    with torch.inference_mode():
        ours, reference = model(batch), upstream_vits(batch)
    assert ours.dtype == torch.float32 and ours.shape == (2, 84, 112)
    assert range_error(ours, reference) < 1e-4
    assert len(list(cache_folder.glob("*.onnx"))) == 1

    def no_second_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this model's export")

    monkeypatch.setattr(onnx_export, "export_onnx", no_second_export)
    again = onnxruntime_backend.build(load_float32_model(str(vits_checkpoint), None), "cpu", "bfloat16")
    assert again.precision == "float32"  # bf16 (auto on some CPUs) runs float32 here, and says so
    with torch.inference_mode():
        assert torch.equal(again(batch), ours)


def test_export_key_tells_apart_what_changes_the_graph(vits_checkpoint, vits_metric_checkpoint):
    relative = load_float32_model(str(vits_checkpoint), None)
    metric = load_float32_model(str(vits_metric_checkpoint), None)
    metric_far = load_float32_model(str(vits_metric_checkpoint), 80.0)  # same weights, other max_depth
    keys = {onnxruntime_backend.export_key(relative, "float32"), onnxruntime_backend.export_key(metric, "float32"),
            onnxruntime_backend.export_key(metric_far, "float32"), onnxruntime_backend.export_key(metric, "float16"),
            onnxruntime_backend.export_key(metric, "float32", (56, 84))}
    assert len(keys) == 5
    assert onnxruntime_backend.export_key(relative, "float32") == onnxruntime_backend.export_key(
        load_float32_model(str(vits_checkpoint), None), "float32")


@pytest.mark.parametrize("spec,providers", [
    ("cpu", ["CPUExecutionProvider"]),
    ("auto", GPU_BUILD),
    ("cuda", [("TensorrtExecutionProvider", {"device_id": 0}), ("CUDAExecutionProvider", {"device_id": 0}),
              "CPUExecutionProvider"]),
    ("cuda:1", [("TensorrtExecutionProvider", {"device_id": 1}), ("CUDAExecutionProvider", {"device_id": 1}),
                "CPUExecutionProvider"]),
])
def test_providers_follow_the_device_on_a_gpu_build(monkeypatch, spec, providers):
    monkeypatch.setattr(onnxruntime_backend, "available_providers", lambda: GPU_BUILD)
    assert onnxruntime_backend.providers_for(spec) == providers


def test_gpu_devices_without_their_provider_are_refused(monkeypatch):
    monkeypatch.setattr(onnxruntime_backend, "available_providers", lambda: ["CPUExecutionProvider"])
    assert onnxruntime_backend.providers_for("auto") == ["CPUExecutionProvider"]
    for spec, provider in (("cuda", "CUDA"), ("mps", "CoreML")):
        with pytest.raises(UserError, match=provider):
            onnxruntime_backend.providers_for(spec)


def test_float16_needs_a_gpu_provider():
    assert onnxruntime_backend.export_dtype("float16", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == \
        "float16"
    with pytest.raises(UserError, match="float16"):
        onnxruntime_backend.export_dtype("float16", ["CPUExecutionProvider"])


def test_image_with_backend_onnxruntime_writes_torch_float32_depth(vits_checkpoint, make_photo, tmp_path):
    import cv2
    from click.testing import CliRunner

    from dav2_cli.cli import main

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), make_photo(120, 170, seed=5))
    written = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.npy"
        result = CliRunner().invoke(main, ["image", str(photo), "-m", str(vits_checkpoint), "--input-size", "112",
                                           "--dtype", "float32", "--backend", backend, "-o", str(out), "-v"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        written[backend] = np.load(out)
    assert "on onnxruntime" in result.output
    assert written["onnxruntime"].shape == written["torch"].shape == (120, 170)
    assert range_error(written["onnxruntime"], written["torch"]) < 1e-4


def test_backend_onnxruntime_without_the_extra_is_a_usage_error(monkeypatch, vits_checkpoint, make_photo, tmp_path):
    import importlib.util

    import cv2

    from click.testing import CliRunner

    from dav2_cli.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxruntime" else find_spec(name, *args))
    cv2.imwrite(str(tmp_path / "x.png"), make_photo(56, 56))
    result = CliRunner().invoke(main, ["image", str(tmp_path / "x.png"), "-m", str(vits_checkpoint),
                                       "--backend", "onnxruntime"])
    assert result.exit_code == 2 and 'dav2-cli[onnx]' in result.output, result.output
    assert not (tmp_path / "x_depth.png").exists()
