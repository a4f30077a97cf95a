"""The fast paths stay close to float32, `--dtype auto` picks by hardware, and `dav2 bench` reports its table.

Speed itself is a benchmark (benchmarks/speed.py, `dav2 bench`), never asserted here; what is asserted is that
each faster path computes what the exact one does, within the bound it documents.
"""

import json
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import dav2_cli
from dav2_cli.runtime import (allocator, form_tuning, loading, onnxruntime_backend, openvino_backend, torch_backend,
                              tuning_cache)
from dav2_cli.runtime import device as devices
from dav2_cli.runtime import precision as precisions
from dav2_cli.jobs import bench
from dav2_cli.cli import main
from dav2_cli.errors import UsageError, UserError
from dav2_cli.model.image_encoder import matmul_attention, query_blocked_attention
from dav2_cli.model.int8 import Int8Linear, quantized_engine

needs_int8 = pytest.mark.skipif(quantized_engine() is None, reason="no x86 int8 kernels in this torch build")


def range_error(ours, reference):
    spread = reference.max() - reference.min()
    assert spread > 0
    difference = np.abs(ours - reference)
    return float(difference.mean() / spread), float(difference.max() / spread)


@needs_int8
def test_int8_stays_within_one_percent_of_float32(vits_checkpoint, make_photo):
    image = make_photo(120, 160, seed=4)
    exact = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch"), image, 280)
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "int8")
    fast = dav2_cli.predict(model, image, 280)
    mean_error, max_error = range_error(fast, exact)
    assert model.precision == "int8" and fast.dtype == np.float32
    assert 0 < mean_error < 0.01  # lossy (so the int8 kernels really ran), yet within the documented bound
    assert max_error < 0.05


@needs_int8
def test_int8_converts_only_the_encoders_linear_layers(vits_checkpoint):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "int8")
    encoder_linears = [m for m in model.image_encoder.modules() if isinstance(m, (nn.Linear, Int8Linear))]
    assert len(encoder_linears) == 4 * 12 and all(isinstance(m, Int8Linear) for m in encoder_linears)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(m.weight.dtype == torch.float32 for m in convs)


@needs_int8
def test_int8_depth_of_an_image_does_not_depend_on_its_batch(vits_checkpoint, make_photo):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "int8")
    photo = make_photo(112, 112, seed=1)
    loud = np.random.default_rng(2).integers(0, 256, (112, 112, 3), dtype=np.uint8)  # wider activation range
    alone = loading.predict_batch(model, [photo], 112)[0]
    beside_loud = loading.predict_batch(model, [photo, loud], 112)[0]
    np.testing.assert_allclose(beside_loud, alone, rtol=0, atol=1e-5 * np.ptp(alone))


def test_float16_autocast_keeps_the_residual_stream_in_float32(make_photo):
    """The GPU float16 path, run on the CPU: matmuls in float16, the stream DINOv2 overflows in stays float32."""
    image = make_photo(56, 84, seed=5)
    model = torch_backend.prepare_model(bench.random_model(), torch.device("cpu"), "float16")
    exact_model = torch_backend.prepare_model(bench.random_model(), torch.device("cpu"), "float32")
    exact = dav2_cli.predict(exact_model, image, 56)
    stream_dtypes, matmul_dtypes = set(), set()
    model.image_encoder.blocks[0].register_forward_hook(lambda m, i, out: stream_dtypes.add(out.dtype))
    model.image_encoder.blocks[0].attn.qkv.register_forward_hook(lambda m, i, out: matmul_dtypes.add(out.dtype))
    fast = dav2_cli.predict(model, image, 56)
    assert stream_dtypes == {torch.float32} and matmul_dtypes == {torch.float16}
    assert fast.dtype == np.float32
    assert range_error(fast, exact)[0] < 0.01


def test_a_model_loaded_under_inference_mode_predicts(vits_checkpoint, make_photo):
    image = make_photo(56, 56, seed=6)
    expected = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch"), image, 56)
    with torch.inference_mode():
        model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
        np.testing.assert_array_equal(dav2_cli.predict(model, image, 56), expected)


def test_a_job_holds_opencv_to_one_thread_beside_torch(vits_checkpoint):
    from dav2_cli.jobs.options import DepthOptions, load_job_model

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        load_job_model(DepthOptions(model=str(vits_checkpoint), device="cpu", dtype="float32"))
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)


@pytest.mark.parametrize("batch,tokens,score_elements", [
    (1, 50, 6 * 16 * 50),  # blocks of 16 queries: 3 full ones and a remainder of 2
    (2, 37, 10 ** 6),  # one block holding every query, over a batch of two
    (1, 40, 1),  # a budget below one row still takes 16 queries at a time
])
def test_query_blocked_attention_equals_the_fused_kernel(batch, tokens, score_elements):
    generator = torch.Generator().manual_seed(tokens)
    q_bhnd, k_bhnd, v_bhnd = (torch.randn(batch, 6, tokens, 64, generator=generator) for _ in range(3))
    fused_bnhd = F.scaled_dot_product_attention(q_bhnd, k_bhnd, v_bhnd).transpose(1, 2)
    blocked_bnhd = query_blocked_attention(q_bhnd, k_bhnd, v_bhnd, score_elements)
    torch.testing.assert_close(blocked_bnhd, fused_bnhd, rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch,tokens", [(1, 50), (2, 37)])
def test_matmul_attention_equals_the_fused_kernel(batch, tokens):
    generator = torch.Generator().manual_seed(tokens)
    q_bhnd, k_bhnd, v_bhnd = (torch.randn(batch, 6, tokens, 64, generator=generator) for _ in range(3))
    fused_bnhd = F.scaled_dot_product_attention(q_bhnd, k_bhnd, v_bhnd).transpose(1, 2)
    torch.testing.assert_close(matmul_attention(q_bhnd, k_bhnd, v_bhnd), fused_bnhd, rtol=0, atol=1e-5)


@pytest.mark.parametrize("form", ["blocked", "matmul"])
def test_every_attention_form_still_equals_upstream(upstream_vits, vits_checkpoint, form):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
    model.image_encoder.set_attention_form(form)
    assert model.attention_form == form
    x = torch.randn(2, 3, 140, 182, generator=torch.Generator().manual_seed(1))  # batch of 2, 10x13 patches
    with torch.inference_mode():
        ours, reference = model(x), upstream_vits(x)
    spread = reference.max() - reference.min()
    assert float((ours - reference).abs().max() / spread) < 1e-5


CPU_KINDS = {  # what torch.cpu.get_capabilities() reports on each kind of CPU, as far as `auto` looks
    "avx2 only": {"avx2": True, "avx512_bf16": False, "amx_bf16": False},
    "avx512 without bf16": {"avx2": True, "avx512_f": True},
    "avx512-bf16 (zen 4/5)": {"avx2": True, "avx512_f": True, "avx512_bf16": True},
    "amx (xeon)": {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": True},
    "unknown": {},
}


@pytest.mark.parametrize("kind,precision,form", [
    ("avx2 only", "float32", "fused"),
    ("avx512 without bf16", "float32", "fused"),
    ("avx512-bf16 (zen 4/5)", "bfloat16", form_tuning.tuned_attention_form),
    ("amx (xeon)", "bfloat16", form_tuning.tuned_attention_form),
    ("unknown", "float32", "fused"),
])
def test_auto_on_each_kind_of_cpu(monkeypatch, kind, precision, form):
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: CPU_KINDS[kind])
    cpu = torch.device("cpu")
    assert precisions.resolve_precision("auto", cpu) == precision
    assert form_tuning.attention_form(cpu, precision) == form


@pytest.mark.parametrize("native_bf16,precision,tuned", [
    (True, "bfloat16", True),
    (True, "float32", False),  # float32 keeps the fused kernel: the other forms are slower there
    (True, "int8", False),
    (False, "bfloat16", False),  # emulated bf16 matmuls: the fused kernel is the lesser evil
])
def test_attention_is_timed_only_for_bf16_on_cpus_with_native_bf16(monkeypatch, native_bf16, precision, tuned):
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: {"avx512_bf16": native_bf16})
    form = form_tuning.attention_form(torch.device("cpu"), precision)
    assert form == (form_tuning.tuned_attention_form if tuned else "fused")


def test_auto_on_a_native_bf16_cpu_runs_the_form_timed_fastest_and_caches_it(monkeypatch, fresh_cache,
                                                                              vits_checkpoint, make_photo):
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: CPU_KINDS["avx512-bf16 (zen 4/5)"])
    timed = []

    def matmul_wins(block, grid_hw):
        timed.append(grid_hw)
        return {"fused": 1.0, "matmul": 0.5}

    monkeypatch.setattr(form_tuning, "time_attention_forms", matmul_wins)
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "auto", backend="torch")
    dav2_cli.predict(model, make_photo(56, 84, seed=1), 56)
    dav2_cli.predict(model, make_photo(56, 84, seed=2), 56)  # same grid: decided already
    assert model.precision == "bfloat16" and model.attention_form == "matmul" and timed == [(4, 6)]
    dav2_cli.predict(model, make_photo(84, 56, seed=3), 56)  # a new grid in the same size bucket: decided
    dav2_cli.predict(model, make_photo(56, 112, seed=3), 56)
    assert timed == [(4, 6)]
    dav2_cli.predict(model, make_photo(112, 168, seed=4), 112)  # a bucket of its own is timed on its own
    assert timed == [(4, 6), (8, 12)]

    monkeypatch.setattr(form_tuning, "time_attention_forms", lambda block, grid_hw: pytest.fail("timed again"))
    again = dav2_cli.load_model(vits_checkpoint, "cpu", "auto", backend="torch")  # a later run: from the cache
    dav2_cli.predict(again, make_photo(56, 84, seed=1), 56)
    assert again.attention_form == "matmul"
    assert any(" bucket=short side ~4 patches " in key for key in json.loads(tuning_cache.tuning_file().read_text()))


def test_timing_the_attention_forms_leaves_the_block_as_it_was():
    block = bench.random_model().image_encoder.blocks[0]
    seconds = form_tuning.time_attention_forms(block, (3, 4), runs=1)
    assert set(seconds) == set(form_tuning.TUNED_FORMS) and all(0 < s < float("inf") for s in seconds.values())
    assert block.attn.form == "fused"


def test_an_unreadable_tuning_cache_is_timed_afresh(monkeypatch, fresh_cache):
    tuning_cache.tuning_file().parent.mkdir(parents=True, exist_ok=True)
    tuning_cache.tuning_file().write_text("{not json")
    monkeypatch.setattr(form_tuning, "time_attention_forms", lambda block, grid_hw: {"fused": 1.0, "matmul": 2.0})
    assert form_tuning.tuned_attention_form(bench.random_model().image_encoder.blocks[0], (2, 2)) == "fused"
    assert list(json.loads(tuning_cache.tuning_file().read_text()).values()) == ["fused"]


@pytest.mark.parametrize("seconds,expected", [
    ({"fused": 1.0, "matmul": 0.5}, "matmul"),
    ({"fused": 1.0, "matmul": 0.95}, "fused"),  # not clearly faster: fused holds up better under load
    ({"fused": 1.0, "matmul": 1.5}, "fused"),
])
def test_the_fused_form_is_kept_unless_another_is_clearly_faster(seconds, expected):
    assert form_tuning.pick_attention_form(seconds) == expected


def test_auto_on_a_native_bf16_cpu_stays_within_one_percent_of_float32(monkeypatch, vits_checkpoint, make_photo):
    """What `--dtype auto` runs on AVX512-BF16/AMX CPUs, emulated here if need be."""
    image = make_photo(84, 112, seed=7)
    exact = dav2_cli.predict(dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch"), image, 84)
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: CPU_KINDS["amx (xeon)"])
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "auto", backend="torch")
    mean_error, _ = range_error(dav2_cli.predict(model, image, 84), exact)
    assert model.precision == "bfloat16" and model.attention_form in form_tuning.TUNED_FORMS
    assert 0 < mean_error < 0.01


@pytest.mark.parametrize("precision,form,message", [
    ("float64", "fused", "precision 'float64'"),
    ("bfloat16", "sparse", "attention form 'sparse'"),
])
def test_the_model_refuses_unknown_speed_options(vits_checkpoint, precision, form, message):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
    with pytest.raises(ValueError, match=message):
        model.compute_in(precision, form)


def test_a_converted_model_cannot_be_converted_again(vits_checkpoint):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch").compute_in("bfloat16")
    with pytest.raises(ValueError, match="already computes in bfloat16"):
        model.compute_in("float32")


@pytest.mark.parametrize("native_bf16,expected", [(True, "bfloat16"), (False, "float16")])
def test_auto_on_cuda_prefers_native_bf16_then_float16(monkeypatch, native_bf16, expected):
    monkeypatch.setattr(devices, "cuda_has_native_bf16", lambda: native_bf16)
    assert precisions.resolve_precision("auto", torch.device("cuda")) == expected


@pytest.mark.parametrize("spec,device,message", [
    ("float16", "cpu", "not supported on the CPU"),
    ("int8", "cuda", "CPU only"),
    ("int4", "cpu", "expected auto"),
])
def test_impossible_precisions_are_usage_errors(spec, device, message):
    with pytest.raises(UsageError, match=message):  # exit 2: the flags alone cannot work on this device
        precisions.resolve_precision(spec, torch.device(device))


def test_int8_without_its_kernels_is_a_user_error(monkeypatch):
    monkeypatch.setattr(precisions, "quantized_engine", lambda: None)
    with pytest.raises(UserError, match="int8 needs an x86 CPU"):
        precisions.resolve_precision("int8", torch.device("cpu"))


def test_flop_count_includes_attention_and_every_linear_layer():
    grid_hw = (4, 6)
    tokens, width, blocks = 1 + grid_hw[0] * grid_hw[1], bench.VITS.width, bench.VITS.blocks
    linear = 2 * tokens * width * (3 * width + width + 2 * bench.VITS.mlp_hidden) * blocks
    attention = 2 * 2 * tokens * tokens * width * blocks  # q k^T and (scores) v
    counted = bench.count_flops(bench.VITS, (14 * grid_hw[0], 14 * grid_hw[1]))
    assert counted >= linear + attention
    assert counted < 2 * (linear + attention)  # and the decoder, at this tiny grid, costs less than the encoder


def test_bench_prints_a_row_per_precision(monkeypatch):
    monkeypatch.setattr(bench, "PEAK_SECONDS", 0.01)
    result = CliRunner().invoke(main, ["bench", "--input-size", "56", "--image-size", "84x56", "--repeat", "1",
                                       "--warmup", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "random-init vits (no weights needed" in lines[0]
    header = next(line for line in lines if line.startswith("variant"))
    for column in ("ms/image", "images/s", "GFLOP/s", "peak GFLOP/s", "of peak", "mean err vs cpu float32"):
        assert column in header
    rows = {line.split("  ")[0].removesuffix(" (auto)"): line for line in lines[lines.index(header) + 1:]}
    assert rows["cpu float32"].endswith("0 (reference)")
    assert sum(row.startswith("cpu ") and "(auto)" in row for row in rows.values()) == 1
    if quantized_engine() is not None:
        assert rows["cpu int8"].endswith("% of range")
    if openvino_backend.installed():  # the optional backend is timed too, exact in float32
        assert rows["cpu float32 openvino"].endswith("0.000% of range")
    if onnxruntime_backend.installed():  # and onnxruntime's, running dav2's export
        assert rows["cpu float32 onnxruntime"].endswith("0.000% of range")


@pytest.mark.parametrize("setting, openvino_seconds, marked", [
    ("auto", 0.5, "cpu bfloat16 openvino"),  # faster: what --backend auto runs
    ("auto", 1.0, "cpu bfloat16"),  # a tie goes to torch, as auto decides
    ("auto", 2.0, "cpu bfloat16"),
    ("openvino", 2.0, "cpu bfloat16 openvino"),  # pinned by DAV2_BACKEND, however fast
    ("torch", 0.5, "cpu bfloat16"),
])
def test_bench_marks_the_row_the_default_runs(monkeypatch, setting, openvino_seconds, marked):
    monkeypatch.setenv("DAV2_BACKEND", setting)
    variants = [bench.Variant("cpu", "float32", False), bench.Variant("cpu", "bfloat16", True),
                bench.Variant("cpu", "float32", False, "openvino"), bench.Variant("cpu", "bfloat16", True, "openvino"),
                bench.Variant("cuda", "float32", False), bench.Variant("cuda", "bfloat16", True)]
    seconds = [3.0, 1.0, 1.5, openvino_seconds, 0.2, 0.1]
    assert sorted(variants[i].label for i in bench.default_rows(variants, seconds)) == sorted(["cuda bfloat16", marked])


@pytest.mark.parametrize("cuda,mps,accelerator_rows", [
    (False, False, []),
    (True, False, [("cuda float32", False), ("cuda bfloat16", True)]),
    (False, True, [("mps float32", True)]),
])
def test_bench_times_every_device_present(monkeypatch, cuda, mps, accelerator_rows):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(devices, "cuda_has_native_bf16", lambda: True)
    variants = bench.available_variants()
    assert variants[0].label == "cpu float32"  # the reference every other row is compared with
    assert [(v.label, v.is_auto) for v in variants if v.device != "cpu"] == accelerator_rows


def test_bench_random_model_is_the_same_in_every_process_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first, second = bench.random_model(seed=0).state_dict(), bench.random_model(seed=0).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(456)  # a different global state must not change the weights either
    third = bench.random_model(seed=0).state_dict()
    assert all(torch.equal(first[k], second[k]) and torch.equal(first[k], third[k]) for k in first)


@pytest.mark.parametrize("size", ["756", "0x10", "axb"])
def test_bench_rejects_a_bad_image_size(size):
    assert CliRunner().invoke(main, ["bench", "--image-size", size]).exit_code == 2


_FAULTS_AFTER_WARM_UP = """
import resource, sys
import numpy as np
from dav2_cli.runtime.allocator import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    np.ones(64 << 20, np.uint8)  # a batch's worth of memory, filled and freed
before = faults()
for _ in range(5):
    np.ones(64 << 20, np.uint8)
print(faults() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's")
def test_memory_freed_by_one_batch_is_reused_by_the_next_without_page_faults():
    def faults(mode):
        result = subprocess.run([sys.executable, "-c", _FAULTS_AFTER_WARM_UP, mode], capture_output=True, text=True,
                                check=True, cwd=Path(__file__).resolve().parent.parent)
        return int(result.stdout)

    default, kept = faults("default"), faults("kept")
    assert default > 100  # glibc's default hands the 64 MB back and faults it in again each time
    assert kept < default / 10


@pytest.mark.parametrize("command,kept", [("folder", True), ("image-many", True), ("image-one", False)])
def test_jobs_that_run_the_model_repeatedly_keep_freed_memory(tmp_path, make_photo, vits_checkpoint, monkeypatch,
                                                              command, kept):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(True) or True)
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(source / name), make_photo(40, 56))
    inputs = {"folder": ["folder", source, "-o", tmp_path / "out"],
              "image-many": ["image", source / "a.png", source / "b.png"],
              "image-one": ["image", source / "a.png"]}[command]
    result = CliRunner().invoke(main, [str(a) for a in inputs] + ["-m", str(vits_checkpoint), "--input-size", "56",
                                                                  "--dtype", "float32"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == ([True] if kept else [])
