"""`dav2 export` writes ONNX and OpenVINO IR that other runtimes run with upstream's depth, at every grid.

The reference is upstream's own model (benchmarks/upstream.py) with the same seeded weights, run in torch float32;
the exports are run by onnxruntime and OpenVINO, not by dav2's code. Tests skip only where the `onnx` extra (or
OpenVINO, for IR) is absent; CI installs both.
"""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dav2_cli.cli import main

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from dav2_cli.jobs import export as export_job  # noqa: E402  (after the skip: it needs the extra)
from dav2_cli.runtime import onnx_export, openvino_backend  # noqa: E402

# (batch, H, W): grids 4x6 and 6x5 (an odd side, batch 2), and upstream's native 37x37 grid, where it skips the
# position-embedding resize
SIZES = ((1, 56, 84), (2, 84, 70), (1, 518, 518))


def range_error(ours, reference) -> float:
    ours, reference = np.asarray(ours), np.asarray(reference)
    spread = reference.max() - reference.min()
    assert spread > 0
    return float(np.abs(ours - reference).max() / spread)


def normalised_batch(make_photo, batch, height, width):
    from dav2_cli.depth import sizing

    return np.stack([sizing.to_model_input(make_photo(height, width, seed=seed), (height, width))
                     for seed in range(batch)])


def exported(checkpoint, folder, name, **options):
    model = export_job.load_float32_model(str(checkpoint), None)
    path = folder / name
    metadata = onnx_export.export_metadata(model.config, checkpoint.name, options.get("dtype", "float32"),
                                           options.get("fixed_size_hw"))
    onnx_export.export_onnx(model, path, metadata, **options)
    return path, metadata


@pytest.fixture(scope="module")
def relative_onnx(vits_checkpoint, tmp_path_factory):
    return exported(vits_checkpoint, tmp_path_factory.mktemp("export"), "vits.onnx")


@pytest.fixture(scope="module")
def metric_onnx(vits_metric_checkpoint, tmp_path_factory):
    return exported(vits_metric_checkpoint, tmp_path_factory.mktemp("export"), "metric.onnx")


def run_onnx(path, array):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [item.name for item in session.get_inputs()] == ["image"]
    assert [item.name for item in session.get_outputs()] == ["depth"]
    return session.run(None, {"image": array})[0]


@pytest.mark.parametrize("kind", ["relative", "metric"])
def test_onnx_run_by_onnxruntime_equals_upstream_at_every_grid(kind, relative_onnx, metric_onnx, upstream_vits,
                                                               upstream_vits_metric, make_photo):
    path, _ = relative_onnx if kind == "relative" else metric_onnx
    reference_model = upstream_vits if kind == "relative" else upstream_vits_metric
    for batch, height, width in SIZES:
        array = normalised_batch(make_photo, batch, height, width)
        with torch.inference_mode():
            reference = reference_model(torch.from_numpy(array)).numpy()
        ours = run_onnx(path, array)
        assert ours.dtype == np.float32 and ours.shape == (batch, height, width)
        assert range_error(ours, reference) < 1e-4, (kind, batch, height, width)
    if kind == "metric":
        assert reference.max() > 1.0  # metres, max_depth applied inside the graph, not a sigmoid in 0..1


def test_onnx_graph_has_dynamic_batch_height_and_width(relative_onnx):
    graph = onnx.load(str(relative_onnx[0]), load_external_data=False)
    dims = [dim.dim_param or dim.dim_value for dim in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(dim, str) and dim for dim in (dims[0], dims[2], dims[3]))


def test_float16_export_stays_finite_and_within_one_percent(vits_checkpoint, upstream_vits, make_photo, tmp_path):
    path, _ = exported(vits_checkpoint, tmp_path, "vits16.onnx", dtype="float16")
    graph = onnx.load(str(path))
    halves = [init for init in graph.graph.initializer if init.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) >= 50  # the matmul and convolution weights really are float16
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    for batch, height, width in SIZES[:2]:
        array = normalised_batch(make_photo, batch, height, width)
        with torch.inference_mode():
            reference = upstream_vits(torch.from_numpy(array)).numpy()
        ours = run_onnx(path, array)
        assert ours.dtype == np.float32 and np.isfinite(ours).all()
        assert range_error(ours, reference) < 0.01


def test_fixed_size_export_has_static_shapes_and_upstream_depth(vits_checkpoint, upstream_vits, make_photo,
                                                                tmp_path):
    path, metadata = exported(vits_checkpoint, tmp_path, "fixed.onnx", fixed_size_hw=(70, 98))
    graph = onnx.load(str(path), load_external_data=False)
    assert [dim.dim_value for dim in graph.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 70, 98]
    assert metadata["shape"] == "fixed 70x98"
    array = normalised_batch(make_photo, 1, 70, 98)
    with torch.inference_mode():
        reference = upstream_vits(torch.from_numpy(array)).numpy()
    assert range_error(run_onnx(path, array), reference) < 1e-4


def test_metadata_round_trips_and_describes_preprocessing(relative_onnx, metric_onnx):
    from dav2_cli.depth import sizing

    for (path, written), kind in ((relative_onnx, "relative"), (metric_onnx, "metric")):
        read = onnx_export.read_onnx_metadata(path)
        assert read == written
        assert read["kind"] == kind and read["encoder"] == "vits" and read["patch_size"] == "14"
        assert np.allclose(np.array(eval(read["mean"])), sizing.IMAGENET_MEAN_RGB)
        assert np.allclose(np.array(eval(read["std"])), sizing.IMAGENET_STD_RGB)
        assert read["dav2_version"] and read["resize_rule"]
    assert onnx_export.read_onnx_metadata(metric_onnx[0])["max_depth"] == "20"
    assert onnx_export.read_onnx_metadata(metric_onnx[0])["unit"] == "metre"


def test_openvino_ir_equals_upstream_and_keeps_the_metadata(metric_onnx, upstream_vits_metric, make_photo,
                                                            tmp_path):
    openvino = pytest.importorskip("openvino")
    onnx_path, metadata = metric_onnx
    xml = tmp_path / "metric.xml"
    onnx_export.onnx_to_ir(onnx_path, xml, metadata)
    assert onnx_export.read_ir_metadata(xml) == metadata
    compiled = openvino.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for batch, height, width in SIZES[:2]:
        array = normalised_batch(make_photo, batch, height, width)
        with torch.inference_mode():
            reference = upstream_vits_metric(torch.from_numpy(array)).numpy()
        ours = np.asarray(compiled([array])[0])
        assert ours.shape == (batch, height, width) and range_error(ours, reference) < 1e-4


@pytest.mark.skipif(not openvino_backend.installed(), reason="OpenVINO is not installed")
def test_converting_onnx_to_ir_sends_no_usage_data(metric_onnx, tmp_path, telemetry_sent):
    onnx_export.onnx_to_ir(metric_onnx[0], tmp_path / "metric.xml", metric_onnx[1])
    assert (tmp_path / "metric.xml").is_file()
    assert telemetry_sent == []


def dav2(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def test_export_command_checks_writes_and_refuses_to_overwrite(vits_checkpoint, tmp_path):
    out = tmp_path / "model.onnx"
    result = dav2("export", "-m", vits_checkpoint, "-o", out, "--fixed-size", "56x84")
    assert result.exit_code == 0, result.output
    assert "max error" in result.output and "onnxruntime" in result.output
    assert out.is_file() and onnx_export.read_onnx_metadata(out)["shape"] == "fixed 56x84"
    assert [item.name for item in tmp_path.iterdir()] == ["model.onnx"]  # no temporary left beside it
    before = out.read_bytes()
    refused = dav2("export", "-m", vits_checkpoint, "-o", out)
    assert refused.exit_code == 2 and "--overwrite" in refused.output and out.read_bytes() == before
    shown = dav2("info", out)
    assert shown.exit_code == 0 and "kind: relative" in shown.output and "mean: [0.485" in shown.output


def test_export_beyond_tolerance_exits_1_and_leaves_no_file(vits_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(export_job.TOLERANCE, "float32", 0.0)  # any rounding at all is now "other depth"
    out = tmp_path / "model.onnx"
    result = dav2("export", "-m", vits_checkpoint, "-o", out, "--fixed-size", "56x84")
    assert result.exit_code == 1 and "not written" in result.output and "max error" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,message", [
    (["-o", "{tmp}/model.pt"], ".onnx"),
    (["-o", "{tmp}/model.xml", "--dtype", "float16"], "float32"),
    (["-o", "{tmp}/model.onnx", "--fixed-size", "50x84"], "multiple of 14"),
    (["-o", "{tmp}/model.onnx", "--fixed-size", "big"], "HxW"),
    (["-o", "{tmp}/missing/model.onnx"], "does not exist"),
    (["-m", "video-vits", "-o", "{tmp}/model.onnx"], "Video Depth Anything"),
])
def test_export_usage_errors_exit_2_before_writing(vits_checkpoint, tmp_path, args, message):
    args = [arg.format(tmp=tmp_path) for arg in args]
    model = [] if "-m" in args else ["-m", vits_checkpoint]
    result = dav2("export", *model, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and list(tmp_path.iterdir()) == []
