"""The optional OpenVINO backend computes upstream's depth, and `--backend auto` picks it only where timed faster.

Tests that run OpenVINO skip where it is not installed; CI installs it (`.[test,openvino]`), so they run there.
The rest simulate its presence or absence. Which backend is faster is simulated too: no timing is asserted.
"""

import importlib.util
import json
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dav2_cli
from dav2_cli.runtime import (auto_backend, backends, form_tuning, loading, openvino_backend, openvino_cache,
                              size_buckets, torch_backend, tuning_cache)
from dav2_cli.cli import main
from dav2_cli.model.onednn_linear import OneDNNLinear, packed_form_available


def range_error(ours, reference):
    ours, reference = np.asarray(ours), np.asarray(reference)
    spread = reference.max() - reference.min()
    assert spread > 0
    difference = np.abs(ours - reference)
    return float(difference.mean() / spread), float(difference.max() / spread)


def model_input(make_photo, height, width, seed):
    from dav2_cli.depth import sizing as prep

    return torch.from_numpy(prep.to_model_input(make_photo(height, width, seed=seed), (height, width)))[None]


def dav2(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


@pytest.fixture
def without_openvino(monkeypatch):
    """OpenVINO absent, as on a plain `pip install dav2-cli`, whether or not this environment has it."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "openvino" else find_spec(name, *args))


@pytest.mark.parametrize("height,width", [(56, 84), (84, 70)])  # grids 4x6 and 6x5: an odd one too
def test_openvino_float32_equals_upstream(upstream_vits, vits_checkpoint, make_photo, height, width):
    pytest.importorskip("openvino")
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    x = model_input(make_photo, height, width, seed=height)
    with torch.inference_mode():
        ours, reference = model(x), upstream_vits(x)
    assert model.precision == "float32" and ours.dtype == torch.float32 and ours.shape == (1, height, width)
    assert range_error(ours, reference)[1] < 1e-4


def test_openvino_metric_model_equals_upstream_at_sizes_other_than_the_traced_one(upstream_vits_metric,
                                                                                  vits_metric_checkpoint, make_photo):
    pytest.importorskip("openvino")
    model = dav2_cli.load_model(vits_metric_checkpoint, "cpu", "float32", backend="openvino")
    for batch, height, width in ((2, 112, 56), (1, 70, 98)):  # the graph was traced at one small grid
        x = torch.cat([model_input(make_photo, height, width, seed=seed) for seed in range(batch)])
        with torch.inference_mode():
            ours, reference = model(x), upstream_vits_metric(x)
        assert ours.shape == (batch, height, width) and range_error(ours, reference)[1] < 1e-4


def test_openvino_bfloat16_stays_within_one_percent_of_float32(vits_checkpoint, make_photo):
    pytest.importorskip("openvino")
    image = make_photo(84, 112, seed=7)
    exact = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch"), image, 84)
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "bfloat16", backend="openvino")
    fast = dav2_cli.predict(model, image, 84)
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert model.precision in ("bfloat16", "float32")  # float32 where the CPU has no bf16 kernels for OpenVINO
    assert range_error(fast, exact)[0] < 0.01


def test_bfloat16_compiled_after_float32_was_compiled_twice_is_still_the_models_depth(fresh_cache, vits_checkpoint,
                                                                                      make_photo):
    """One process that compiled float32 twice (writing its blob, then reading it back) and then bfloat16: with
    one blob folder for both precisions, the AMX Xeon's bf16 depth came out 27% of the range off."""
    pytest.importorskip("openvino")
    image = make_photo(84, 112, seed=7)
    exact = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch"), image, 84)
    for _ in range(2):
        float32 = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino"),
                                   image, 84)
        assert range_error(float32, exact)[1] < 1e-4
    fast = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "bfloat16", backend="openvino"), image, 84)
    assert range_error(fast, exact)[0] < 0.01


def test_openvino_depth_of_an_image_does_not_depend_on_its_batch(vits_checkpoint, make_photo):
    pytest.importorskip("openvino")
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    photos = [make_photo(56, 56, seed=1), make_photo(56, 56, seed=2)]
    together = loading.predict_batch(model, photos, 56)
    for photo, depth in zip(photos, together):
        alone = loading.predict_batch(model, [photo], 56)[0]
        np.testing.assert_allclose(depth, alone, rtol=0, atol=1e-5 * np.ptp(alone))


def test_one_converted_graph_serves_every_size_and_batch(vits_checkpoint, make_photo, monkeypatch, upstream_vits):
    pytest.importorskip("openvino")
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    converted = []
    convert = openvino_backend.OpenVINOModel._trace_and_convert
    monkeypatch.setattr(openvino_backend.OpenVINOModel, "_trace_and_convert",
                        lambda self: converted.append(1) or convert(self))
    for count, height, width in ((1, 56, 84), (3, 56, 84), (2, 84, 56), (1, 112, 112)):  # a folder's sizes
        photos = [make_photo(height, width, seed=seed) for seed in range(count)]
        for photo, depth in zip(photos, loading.predict_batch(model, photos, 56)):
            expected = upstream_vits.infer_image(photo, 56)  # upstream's own code, at its own grid here
            assert depth.shape == expected.shape and range_error(depth, expected)[1] < 1e-4
    assert len(converted) <= 1  # none where an earlier test of the session converted this model already


@pytest.mark.parametrize("cache_writable", [True, False])
def test_memory_for_many_sizes_is_bounded_by_compiling_afresh_without_converting_again(
        vits_checkpoint, make_photo, monkeypatch, upstream_vits, tmp_path, cache_writable):
    pytest.importorskip("openvino")
    monkeypatch.setattr(openvino_backend, "SHAPES_PER_COMPILE", 2)
    if not cache_writable:  # a cache folder that cannot be made: the converted graph is kept in memory instead
        (tmp_path / "not-a-folder").write_bytes(b"")
        monkeypatch.setattr(openvino_cache, "folder", lambda: tmp_path / "not-a-folder" / "openvino")
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    calls = {"compiled": 0, "traced": 0}
    convert, trace = openvino_backend.OpenVINOModel._convert, openvino_backend.OpenVINOModel._trace_and_convert
    monkeypatch.setattr(openvino_backend.OpenVINOModel, "_convert",
                        lambda self: calls.__setitem__("compiled", calls["compiled"] + 1) or convert(self))
    monkeypatch.setattr(openvino_backend.OpenVINOModel, "_trace_and_convert",
                        lambda self: calls.__setitem__("traced", calls["traced"] + 1) or trace(self))
    for height, width in ((56, 56), (56, 84), (56, 56), (84, 56), (56, 112)):
        x = model_input(make_photo, height, width, seed=width)
        with torch.inference_mode():
            assert range_error(model(x), upstream_vits(x))[1] < 1e-4
    # the third new shape compiled afresh, from the saved graph (traced once, or never where an earlier test of
    # the session converted this model already)
    assert calls["compiled"] == 2 and calls["traced"] <= 1
    assert cache_writable or calls["traced"] == 1
    assert (model._unsaved is None) == cache_writable


def test_a_later_run_reads_the_converted_model_instead_of_converting_again(vits_checkpoint, make_photo,
                                                                          monkeypatch):
    pytest.importorskip("openvino")
    x = model_input(make_photo, 56, 56, seed=5)
    first = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    with torch.inference_mode():
        expected = first(x)
    monkeypatch.setattr(openvino_backend.OpenVINOModel, "_trace_and_convert",
                        lambda self: pytest.fail("converted again"))
    later = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    with torch.inference_mode():
        torch.testing.assert_close(later(x), expected, rtol=0, atol=0)


def test_graphs_and_compiled_blobs_kept_on_disk_are_bounded_in_bytes(fresh_cache, vits_checkpoint, make_photo,
                                                                      monkeypatch):
    pytest.importorskip("openvino")
    x = model_input(make_photo, 28, 28, seed=1)
    first = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    with torch.inference_mode():
        first(x)
    [entry] = list(openvino_cache.folder().iterdir())
    assert (entry / "graph.xml").is_file() and any((entry / "compiled").iterdir())  # the blob is in the entry
    one_model = openvino_cache.size_of(entry)
    monkeypatch.setattr(openvino_cache, "CACHE_BUDGET_BYTES", int(1.5 * one_model))  # room for one model
    other = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    with torch.no_grad():
        other.float32_model.head.out_conv.bias.add_(1.0)  # other weights: a graph of its own
    with torch.inference_mode():
        other(x)
    [kept] = list(openvino_cache.folder().iterdir())  # the other model's graph and blobs went together
    assert kept != entry and openvino_cache.size_of(openvino_cache.folder()) <= 1.5 * one_model
    assert any(str(openvino_cache.folder()) in line for line in openvino_cache.summary())


def test_backend_openvino_on_the_command_line_writes_upstreams_depth(vits_checkpoint, make_photo, tmp_path):
    pytest.importorskip("openvino")
    import cv2

    image = make_photo(56, 84, seed=3)
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    exact = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch"), image, 56)
    result = dav2("image", tmp_path / "photo.png", "-m", vits_checkpoint, "-o", tmp_path / "depth.npy",
                  "--input-size", 56, "--dtype", "float32", "--backend", "openvino", "-v")
    assert result.exit_code == 0, result.stderr
    assert "in float32 on OpenVINO" in result.stderr
    assert range_error(np.load(tmp_path / "depth.npy"), exact)[1] < 1e-4


def test_auto_runs_openvino_where_timed_faster_and_remembers_it(monkeypatch, fresh_cache, vits_checkpoint,
                                                                 make_photo, capsys):
    pytest.importorskip("openvino")
    timed = []

    def openvino_faster(models, image_bchw):
        timed.append(tuple(image_bchw.shape[2:]))
        return {"torch": 1.0, "openvino": 0.5}, {name: model(image_bchw) for name, model in models.items()}

    monkeypatch.setattr(auto_backend, "time_backends", openvino_faster)
    if packed_form_available():  # torch's timing run packs its Linear weights: OpenVINO's win frees them
        monkeypatch.setattr(form_tuning, "time_linear_forms", lambda block, grid_hw: {"plain": 1.0, "packed": 0.5})
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32")
    model.say_when_timing = True  # as where stderr is a terminal, or with -v
    first = dav2_cli.predict(model, make_photo(56, 84, seed=1), 56)
    again = dav2_cli.predict(model, make_photo(56, 84, seed=1), 56)  # same size: decided already
    dav2_cli.predict(model, make_photo(84, 56, seed=1), 56)  # another size in the same bucket: not timed
    bucket = size_buckets.of_image((56, 84), 14)
    assert model.backend == "auto" and model.chosen == {bucket: "openvino"} and timed == [(56, 84)]
    said = capsys.readouterr().err
    assert said.count("timing the backends once") == 1 and "dav2 models prepare" in said  # and how to do it ahead
    float32_model = model.float32_model
    assert model.built("torch") is float32_model  # in float32, torch's model is OpenVINO's source: kept
    assert float32_model.linear_form == ("packed" if packed_form_available() else "plain")  # as it ran
    assert all(layer._packed is None for layer in float32_model.modules() if isinstance(layer, OneDNNLinear))
    np.testing.assert_array_equal(first, again)  # the timing run's answer is OpenVINO's too

    dav2_cli.predict(model, make_photo(168, 224, seed=1), 168)  # a bucket of its own is timed
    assert timed == [(56, 84), (168, 224)]

    monkeypatch.setattr(auto_backend, "time_backends", lambda models, image_bchw: pytest.fail("timed again"))
    later = dav2_cli.load_model(vits_checkpoint, "cpu", "float32")  # a later run reads the cache folder
    np.testing.assert_array_equal(dav2_cli.predict(later, make_photo(56, 84, seed=1), 56), first)
    assert later.chosen == {bucket: "openvino"} and "timing" not in capsys.readouterr().err
    keys = sorted(key for key in json.loads(tuning_cache.tuning_file().read_text()) if key.startswith("backend"))
    assert len(keys) == 2 and all(" precision=float32 " in key and " openvino=" in key for key in keys)


def test_a_batch_is_timed_on_its_first_image_alone_and_all_of_it_gets_the_winners_depth(monkeypatch, fresh_cache,
                                                                                         vits_checkpoint, make_photo):
    """A folder batches photos of one size: timing the whole batch made every spare forward a batch's."""
    pytest.importorskip("openvino")
    timed = []

    def openvino_faster(models, image_bchw):
        timed.append(tuple(image_bchw.shape))
        return {"torch": 1.0, "openvino": 0.5}, {name: model(image_bchw) for name, model in models.items()}

    monkeypatch.setattr(auto_backend, "time_backends", openvino_faster)
    photos = [make_photo(56, 84, seed=seed) for seed in range(3)]
    depths = loading.predict_batch(dav2_cli.load_model(vits_checkpoint, "cpu", "float32"), photos, 56)
    assert timed == [(1, 3, 56, 84)]
    openvino = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    for depth, winners in zip(depths, loading.predict_batch(openvino, photos, 56), strict=True):
        np.testing.assert_array_equal(depth, winners)


def test_a_run_that_only_uses_openvino_builds_no_second_copy_of_the_weights(monkeypatch, fresh_cache,
                                                                            vits_checkpoint, make_photo):
    pytest.importorskip("openvino")
    built = []
    prepare_model = torch_backend.prepare_model
    monkeypatch.setattr(torch_backend, "prepare_model",
                        lambda model, device, precision: built.append(precision) or prepare_model(model, device,
                                                                                                   precision))
    monkeypatch.setattr(auto_backend, "time_backends", lambda models, image_bchw: (
        {"torch": 1.0, "openvino": 0.5}, {name: model(image_bchw) for name, model in models.items()}))
    first = dav2_cli.load_model(vits_checkpoint, "cpu", "bfloat16")
    dav2_cli.predict(first, make_photo(56, 84, seed=1), 56)  # a new bucket: both backends are timed
    assert built == ["float32", "bfloat16"]
    assert first.attention_form == "openvino" and first.built("torch") is None  # OpenVINO won: torch's copy freed
    dav2_cli.predict(first, make_photo(168, 224, seed=1), 168)  # another new bucket: torch's copy is made again
    assert built == ["float32", "bfloat16", "bfloat16"] and first.built("torch") is None

    built.clear()
    later = dav2_cli.load_model(vits_checkpoint, "cpu", "bfloat16")  # the cache says OpenVINO in this bucket
    depth = dav2_cli.predict(later, make_photo(56, 84, seed=1), 56)
    assert built == ["float32"] and later.attention_form == "openvino" and later.precision == "bfloat16"
    assert depth.shape == (56, 84) and np.isfinite(depth).all()


def torch_timed_faster(monkeypatch, timed: list):
    """OpenVINO present as far as auto can tell (installed or not here), and torch timed the faster."""
    monkeypatch.setattr(openvino_backend, "installed", lambda: True)
    monkeypatch.setattr(tuning_cache, "library_version", lambda name: "2026.0-simulated")
    monkeypatch.setattr(openvino_backend.OpenVINOModel, "_convert", lambda self: pytest.fail("converted"))

    def torch_faster(models, image_bchw):
        timed.append(tuple(image_bchw.shape[2:]))
        return {"torch": 0.5, "openvino": 1.0}, {"torch": models["torch"](image_bchw)}

    monkeypatch.setattr(auto_backend, "time_backends", torch_faster)


def test_auto_keeps_torch_where_it_is_faster_and_never_converts_again(monkeypatch, fresh_cache, vits_checkpoint,
                                                                      make_photo):
    """Runs without OpenVINO too: its presence is simulated, and torch winning means it is never called."""
    timed = []
    torch_timed_faster(monkeypatch, timed)
    exact = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch"),
                             make_photo(56, 84, seed=2), 56)
    for _ in range(2):  # the second load is a later run: from the cache, not timed
        model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="auto")
        for _ in range(2):
            np.testing.assert_array_equal(dav2_cli.predict(model, make_photo(56, 84, seed=2), 56), exact)
        assert model.chosen == {size_buckets.of_image((56, 84), 14): "torch"} and model.precision == "float32"
    assert timed == [(56, 84)]


@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_auto_is_torch_where_openvino_offers_nothing(monkeypatch, dtype):
    monkeypatch.setattr(openvino_backend, "installed", lambda: True)
    assert backends.resolve_backend("auto", torch.device("cpu"), dtype) == "torch"
    assert backends.resolve_backend("auto", torch.device("cpu"), "bfloat16") == "auto"


@pytest.mark.parametrize("backend", ["torch", "openvino", "auto"])
def test_load_model_returns_an_eval_mode_model_on_every_backend(monkeypatch, vits_checkpoint, backend):
    monkeypatch.setattr(openvino_backend, "installed", lambda: True)  # nothing here converts or runs OpenVINO
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "bfloat16", backend=backend)
    assert getattr(model, "backend", "torch") == backend
    assert not any(module.training for module in model.modules())


def test_ctrl_c_during_the_conversion_is_raised_once_it_is_done(monkeypatch, vits_checkpoint, pythons_ctrl_c):
    """OpenVINO's converter turns an interrupt inside it into its own RuntimeError (a traceback, or a fallback
    taking it for a failure), so Ctrl-C waits for it to finish."""
    float32 = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
    model = openvino_backend.OpenVINOModel(float32, "float32")

    def converting(self):
        # Ctrl-C in the middle of the conversion: Python runs whatever handler is installed for SIGINT (called
        # directly: a real signal sent to this process from itself is fragile once OpenVINO has run here)
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        return "compiled"

    monkeypatch.setattr(openvino_backend.OpenVINOModel, "_convert", converting)
    with pytest.raises(KeyboardInterrupt):
        model.compiled()
    assert model._compiled == "compiled"


def test_auto_without_openvino_is_torch_silently(without_openvino, monkeypatch, vits_checkpoint):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32")
    assert not hasattr(model, "backend") and model.image_encoder is not None  # a plain torch model


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_openvino_asked_for_but_not_installed_is_one_line_before_loading(without_openvino, monkeypatch,
                                                                          vits_checkpoint, make_photo, tmp_path,
                                                                          how):
    import cv2

    cv2.imwrite(str(tmp_path / "photo.png"), make_photo(56, 56, seed=1))
    monkeypatch.setattr(loading, "load_checkpoint", lambda *a, **k: pytest.fail("a model was loaded"))
    args = ["image", tmp_path / "photo.png", "-m", vits_checkpoint, "-o", tmp_path / "d.npy", "--input-size", 56]
    if how == "flag":
        args += ["--backend", "openvino"]
    else:
        monkeypatch.setenv("DAV2_BACKEND", "openvino")
    result = dav2(*args)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and 'pip install "dav2-cli[openvino]"' in result.stderr
    assert not (tmp_path / "d.npy").exists()


@pytest.mark.parametrize("args,message", [
    (["--dtype", "int8"], "--dtype int8 is not available with --backend openvino"),
    (["--device", "cuda"], ""),  # CUDA is refused for itself here, or for OpenVINO where CUDA exists
])
def test_openvino_refuses_what_it_cannot_run_in_one_line(monkeypatch, vits_checkpoint, make_photo, tmp_path, args,
                                                         message):
    import cv2

    monkeypatch.setattr(openvino_backend, "installed", lambda: True)
    cv2.imwrite(str(tmp_path / "photo.png"), make_photo(56, 56, seed=1))
    result = dav2("image", tmp_path / "photo.png", "-m", vits_checkpoint, "-o", tmp_path / "d.npy",
                  "--input-size", 56, "--backend", "openvino", *args)
    assert result.exit_code in (1, 2) and result.stderr.strip().count("\n") == 0
    assert message in result.stderr


def test_help_names_the_backend_and_its_environment_variable():
    help_text = dav2("image", "--help").output
    assert "--backend" in help_text and "DAV2_BACKEND" in help_text and "dav2-cli[openvino]" in help_text


def test_info_without_a_file_shows_the_caches_their_size_and_how_to_clear_them(fresh_cache):
    entry = openvino_cache.model_folder("a model")
    (entry / "compiled").mkdir(parents=True)
    (entry / "compiled" / "blob").write_bytes(b"x" * 3_000_000)
    result = dav2("info")
    assert result.exit_code == 0, result.stderr
    assert str(openvino_cache.folder()) in result.output and "1 model(s), 3 MB of a" in result.output
    assert "to clear: delete" in result.output
    assert dav2("info", "--at", "1,2").exit_code == 2


def test_a_graph_saved_in_another_graph_form_is_never_read(monkeypatch, fresh_cache, vits_checkpoint):
    """The graph's form (what its output means: since the sky head, depth with sky pixels negated) is part of the
    saved graph's key: a graph an older version saved for the same weights lies in another folder, never read."""
    float32 = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
    current = openvino_backend.OpenVINOModel(float32, "float32")._saved_folder()
    monkeypatch.setattr(openvino_backend, "GRAPH_FORM", "an older form")
    older = openvino_backend.OpenVINOModel(float32, "float32")._saved_folder()
    assert older != current and older.parent == current.parent


def job_depths(folder, photo, checkpoint, backends_named) -> list[np.ndarray]:
    """`dav2 image` run on `photo` at input size 56 in float32 with each backend named, as raw depth."""
    cv2.imwrite(str(folder / "photo.png"), photo)
    depths = []
    for backend in backends_named:
        out = folder / f"{backend}.npy"
        result = dav2("image", folder / "photo.png", "-o", out, "--format", "npy", "--input-size", 56,
                      "-m", checkpoint, "--dtype", "float32", "--backend", backend)
        assert result.exit_code == 0, result.output
        depths.append(np.load(out))
    return depths


def test_a_prepared_model_times_nothing_in_its_first_job(monkeypatch, fresh_cache, vits_checkpoint, make_photo,
                                                         tmp_path):
    """`dav2 models prepare` pays the timing a first short job would, under the keys the job reads."""
    timed = []
    torch_timed_faster(monkeypatch, timed)
    first = dav2("models", "prepare", vits_checkpoint, "--input-size", 56, "--input-size", 112, "--dtype", "float32")
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == ["--input-size 56: torch in float32 (timed now)",
                                         "--input-size 112: torch in float32 (timed now)"]
    assert len(timed) == 2
    again = dav2("models", "prepare", vits_checkpoint, "--input-size", 70, "--dtype", "float32")  # 56's bucket
    assert again.exit_code == 0 and again.stdout == "--input-size 70: torch in float32 (timed before)\n"
    assert len(timed) == 2

    monkeypatch.setattr(auto_backend, "time_backends", lambda models, image_bchw: pytest.fail("timed in the job"))
    auto, winner = job_depths(tmp_path, make_photo(60, 90, seed=3), vits_checkpoint, ("auto", "torch"))
    np.testing.assert_array_equal(auto, winner)


def test_prepare_leaves_openvinos_graph_converted_for_the_first_job(monkeypatch, fresh_cache, vits_checkpoint,
                                                                   make_photo, tmp_path):
    pytest.importorskip("openvino")
    monkeypatch.setattr(auto_backend, "time_backends", lambda models, image_bchw: (
        {"torch": 1.0, "openvino": 0.5}, {name: model(image_bchw) for name, model in models.items()}))
    prepared = dav2("models", "prepare", vits_checkpoint, "--input-size", 56, "--dtype", "float32")
    assert prepared.stdout == "--input-size 56: openvino in float32 (timed now)\n", prepared.output

    monkeypatch.setattr(auto_backend, "time_backends", lambda models, image_bchw: pytest.fail("timed in the job"))
    monkeypatch.setattr(openvino_backend.OpenVINOModel, "_trace_and_convert",
                        lambda self: pytest.fail("converted in the job"))
    auto, winner = job_depths(tmp_path, make_photo(60, 90, seed=4), vits_checkpoint, ("auto", "openvino"))
    np.testing.assert_array_equal(auto, winner)


def test_prepare_where_torch_is_the_only_backend_says_so(without_openvino, fresh_cache, vits_checkpoint):
    result = dav2("models", "prepare", vits_checkpoint, "--input-size", 56, "--dtype", "float32")
    assert result.exit_code == 0 and result.stdout == "--input-size 56: torch in float32 (the only backend here)\n"


@pytest.mark.parametrize("args", [["no_such_model"], ["vits", "--input-size", "10"], []])
def test_prepare_refuses_a_bad_argument_in_one_line_before_loading(monkeypatch, args):
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("loaded"))
    result = CliRunner().invoke(main, ["models", "prepare", *args])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_converting_a_model_sends_no_usage_data(fresh_cache, vits_checkpoint, make_photo, telemetry_sent):
    pytest.importorskip("openvino")
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="openvino")
    with torch.inference_mode():
        model(model_input(make_photo, 28, 28, seed=1))
    assert list(openvino_cache.folder().iterdir()), "the model was converted"
    assert telemetry_sent == []


IMPORT_UNDER_A_SPY = """
import openvino_telemetry
sent = []
for method in ("start_session", "send_event", "end_session"):
    setattr(openvino_telemetry.Telemetry, method, lambda self, *args, method=method, **kwargs: sent.append(method))
from dav2_cli.runtime import openvino_backend
openvino_backend.import_openvino()
print(sent)
"""


def test_importing_openvino_sends_no_usage_data():
    """openvino reports its own import, once per process: a process of its own, where it is imported first."""
    pytest.importorskip("openvino_telemetry")
    result = subprocess.run([sys.executable, "-c", IMPORT_UNDER_A_SPY], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
