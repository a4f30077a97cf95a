"""The encoder's Linear layers in their packed form compute what the plain form does, stay in step with their
weights, and are chosen by timing only where they can run.

Which form is faster is a benchmark (benchmarks/speed.py); what is asserted here is that either form gives the
same depth, so the choice can only move speed.
"""

import copy
import json
import warnings

import pytest
import torch
import torch.nn.functional as F

import dav2_cli
from dav2_cli.jobs import bench
from dav2_cli.runtime import device as devices
from dav2_cli.runtime import form_tuning, tuning_cache
from dav2_cli.model.onednn_linear import OneDNNLinear, packed_form_available

needs_onednn = pytest.mark.skipif(not packed_form_available(), reason="this torch build has no oneDNN kernels")
# oneDNN's bf16 kernels refuse a CPU without native bf16 (AVX2 only), where dav2 never picks them (tested below)
needs_native_bf16 = pytest.mark.skipif(not (packed_form_available() and devices.cpu_has_native_bf16()),
                                       reason="this CPU has no native bf16: oneDNN's bf16 kernels refuse it")


def seeded_linear(in_features: int, out_features: int, seed: int) -> OneDNNLinear:
    layer = OneDNNLinear(in_features, out_features)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out_features, in_features, generator=generator) * in_features ** -0.5)
        layer.bias.copy_(torch.randn(out_features, generator=generator))
    return layer


@needs_onednn
@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("layout", ["tokens", "batch of two", "strided"])
def test_the_packed_form_computes_what_the_plain_form_does_in_float32(gelu, layout):
    layer = seeded_linear(48, 80, seed=1)
    tokens = torch.randn(2, 37, 96, generator=torch.Generator().manual_seed(2))
    tokens = {"tokens": tokens[:1, :, :48], "batch of two": tokens[:, :, :48].contiguous(),
              "strided": tokens[:, :, ::2]}[layout]
    with torch.inference_mode():
        plain = layer(tokens, gelu=gelu)
        layer.set_form("packed")
        packed = layer(tokens, gelu=gelu)
    reference = F.linear(tokens, layer.weight, layer.bias)
    torch.testing.assert_close(plain, F.gelu(reference) if gelu else reference, rtol=0, atol=0)
    torch.testing.assert_close(packed, plain, rtol=0, atol=1e-5)


@needs_native_bf16
def test_the_packed_form_in_bfloat16_stays_within_bfloat16_rounding():
    layer = seeded_linear(64, 128, seed=3)
    tokens = torch.randn(1, 50, 64, generator=torch.Generator().manual_seed(4))
    exact = F.gelu(F.linear(tokens, layer.weight, layer.bias))
    layer.to(torch.bfloat16).set_form("packed")
    with torch.inference_mode():
        packed = layer(tokens.bfloat16(), gelu=True).float()
    assert packed.dtype == torch.float32 and not torch.equal(packed, exact)  # really computed in bf16
    torch.testing.assert_close(packed, exact, rtol=0.02, atol=0.05)


@needs_onednn
def test_the_packed_form_still_equals_upstream(upstream_vits, vits_checkpoint):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
    model.image_encoder.set_linear_form("packed")
    assert model.linear_form == "packed"
    x = torch.randn(2, 3, 140, 182, generator=torch.Generator().manual_seed(1))  # batch of 2, 10x13 patches
    with torch.inference_mode():
        ours, reference = model(x), upstream_vits(x)
    spread = reference.max() - reference.min()
    assert float((ours - reference).abs().max() / spread) < 1e-5


@needs_onednn
@pytest.mark.parametrize("change", ["load_state_dict", "in-place write"])
def test_a_packed_layer_follows_new_weights(change):
    layer = seeded_linear(32, 64, seed=5)
    layer.set_form("packed")
    tokens = torch.randn(1, 20, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        before = layer(tokens)
        new = seeded_linear(32, 64, seed=7)
        if change == "load_state_dict":
            layer.load_state_dict(new.state_dict())
        else:
            layer.weight.copy_(new.weight)
            layer.bias.copy_(new.bias)
        after = layer(tokens)
    torch.testing.assert_close(after, F.linear(tokens, new.weight, new.bias), rtol=0, atol=1e-5)
    assert not torch.allclose(after, before, atol=1e-3)


@needs_onednn
def test_a_packed_model_can_be_copied_and_traced_and_back_to_plain_holds_no_copy(vits_checkpoint):
    """OpenVINO converts a trace of the torch model, and `--backend auto` copies it: neither may meet the packed
    weights' opaque layout, which has no storage to copy and no meaning outside oneDNN."""
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
    model.image_encoder.set_linear_form("packed")
    x = torch.randn(1, 3, 56, 84, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        packed = model(x)
    layers = [layer for layer in model.modules() if isinstance(layer, OneDNNLinear)]
    assert len(layers) == 4 * 12 and all(layer._packed is not None for layer in layers)

    twin = copy.deepcopy(model)
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), packed, rtol=0, atol=0)
    with torch.no_grad(), warnings.catch_warnings():  # traced as openvino_backend.py does
        warnings.simplefilter("ignore")
        example = (x, model.image_encoder.position_embedding((4, 6), torch.float32).clone())
        traced = torch.jit.trace(model, example, check_trace=False)
        graph = str(traced.inlined_graph)
        torch.testing.assert_close(traced(*example), packed, rtol=0, atol=1e-5)
    assert "linear_pointwise" not in graph and "aten::linear" in graph

    model.back_to_float32()
    assert model.linear_form == "plain" and all(layer._packed is None for layer in layers)


@needs_onednn
def test_weights_that_autograd_follows_still_get_their_gradients(vits_checkpoint):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
    model.image_encoder.set_linear_form("packed")
    fc1 = model.image_encoder.blocks[0].mlp.fc1
    fc1.weight.requires_grad_(True)
    image = torch.randn(1, 3, 56, 84, generator=torch.Generator().manual_seed(3), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it backpropagates through a kernel it cannot see into
        model(image).mean().backward()
    assert fc1.weight.grad is not None and float(fc1.weight.grad.abs().sum()) > 0
    assert image.grad is not None and float(image.grad.abs().sum()) > 0


CPU_KINDS = {
    "avx2 only": {"avx2": True},
    "avx512-bf16 (zen 4/5)": {"avx2": True, "avx512_f": True, "avx512_bf16": True},
    "amx (xeon)": {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": True},
}


@pytest.mark.parametrize("kind,device,precision,timed", [
    ("avx2 only", "cpu", "float32", True),
    ("avx2 only", "cpu", "bfloat16", False),  # emulated bf16: not a path worth timing
    ("avx2 only", "cpu", "int8", False),  # int8 replaces the Linear layers
    ("avx512-bf16 (zen 4/5)", "cpu", "bfloat16", True),
    ("amx (xeon)", "cpu", "bfloat16", True),
    ("amx (xeon)", "cpu", "float32", True),
    ("amx (xeon)", "cuda", "bfloat16", False),
    ("amx (xeon)", "cuda", "float16", False),
])
def test_the_linear_form_is_timed_where_the_packed_form_can_run(monkeypatch, kind, device, precision, timed):
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: CPU_KINDS[kind])
    monkeypatch.setattr(form_tuning, "packed_form_available", lambda: True)
    expected = form_tuning.tuned_linear_form if timed else "plain"
    assert form_tuning.linear_form(torch.device(device), precision) == expected
    monkeypatch.setattr(form_tuning, "packed_form_available", lambda: False)  # a torch build without oneDNN
    assert form_tuning.linear_form(torch.device(device), precision) == "plain"


@needs_onednn
@pytest.mark.parametrize("winner", ["packed", "plain"])
def test_the_form_timed_faster_runs_and_is_cached(monkeypatch, fresh_cache, vits_checkpoint, make_photo, winner):
    timed = []

    def timing(block, grid_hw):
        timed.append((grid_hw, str(block.attn.qkv.weight.dtype)))
        return {"plain": 1.0, "packed": 0.5 if winner == "packed" else 2.0}

    monkeypatch.setattr(form_tuning, "time_linear_forms", timing)
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")
    dav2_cli.predict(model, make_photo(56, 84, seed=1), 56)
    dav2_cli.predict(model, make_photo(56, 84, seed=2), 56)  # same grid: decided already
    assert model.linear_form == winner and timed == [((4, 6), "torch.float32")]

    monkeypatch.setattr(form_tuning, "time_linear_forms", lambda block, grid_hw: pytest.fail("timed again"))
    again = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch")  # a later run: from the cache
    dav2_cli.predict(again, make_photo(56, 84, seed=1), 56)
    assert again.linear_form == winner
    keys = list(json.loads(tuning_cache.tuning_file().read_text()))
    assert len(keys) == 1 and keys[0].startswith("linear form: ") and " dtype=float32 " in keys[0]
    assert " bucket=short side ~4 patches " in keys[0] and " width=384" in keys[0]


def test_one_timing_serves_every_grid_of_a_size_bucket():
    block = bench.random_model().image_encoder.blocks[0]
    key = form_tuning.linear_key
    assert key(block, (36, 54)) == key(block, (40, 40)) == key(block, (54, 36)) == key(block, (36, 84))
    assert key(block, (4, 6)) == key(block, (4, 7)) != key(block, (36, 54)) != key(block, (72, 96))
    assert key(block, (36, 54)) != key(block.to(torch.bfloat16), (36, 54))


@needs_onednn
def test_timing_the_linear_forms_leaves_the_block_as_it_was():
    block = bench.random_model().image_encoder.blocks[0]
    seconds = form_tuning.time_linear_forms(block, (3, 4), runs=1)
    assert set(seconds) == {"plain", "packed"} and all(0 < s < float("inf") for s in seconds.values())
    layers = [layer for layer in block.modules() if isinstance(layer, OneDNNLinear)]
    assert all(layer.form == "plain" and layer._packed is None for layer in layers)


@needs_onednn
def test_a_form_whose_kernels_refuse_the_cpu_is_never_picked(monkeypatch):
    def refuse(self):
        raise RuntimeError("mkldnn: this CPU lacks the instructions")

    monkeypatch.setattr(OneDNNLinear, "packed_weight", refuse)
    block = bench.random_model().image_encoder.blocks[0]
    seconds = form_tuning.time_linear_forms(block, (3, 4), runs=1)
    assert seconds["packed"] == float("inf") and form_tuning.pick_linear_form(seconds) == "plain"


@pytest.mark.parametrize("precision,linear_form,message", [
    ("float32", "sparse", "linear form 'sparse'"),
    ("int8", "packed", "int8 replaces the encoder's Linear layers"),
])
def test_the_model_refuses_impossible_linear_forms_before_converting(vits_checkpoint, precision, linear_form,
                                                                     message):
    model = dav2_cli.load_model(vits_checkpoint, "cpu", "float32", backend="torch").back_to_float32()
    with pytest.raises(ValueError, match=message):
        model.compute_in(precision, "fused", linear_form)
    assert model.precision == "float32" and model.linear_form == "plain"
