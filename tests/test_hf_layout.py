"""The HF ↔ upstream key mapping, proven against transformers' own DepthAnything model.

Equal outputs at the 37x37 grid (where transformers matches upstream exactly) show every tensor landed in the
right place, checked by a model nobody here wrote; the round trip shows the two directions are inverses.
"""

import json

import pytest
import torch
from safetensors.torch import save_file

from dav2_cli.errors import UserError
from dav2_cli.weights.hf_layout import (
    hf_to_upstream,
    is_hf_state_dict,
    read_hf_config,
    upstream_to_hf,
)

# `upstream_vits` (conftest.py): upstream's own model with seeded weights, every tensor moved off its init.


def hf_config(metric=False, max_depth=None):
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=384, num_attention_heads=6,
                            num_hidden_layers=12, out_indices=[3, 6, 9, 12], reshape_hidden_states=False,
                            layerscale_value=1.0, apply_layernorm=True)
    extra = {"depth_estimation_type": "metric", "max_depth": max_depth} if metric else {}
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384, patch_size=14,
                               neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, **extra)


def test_transformers_reads_our_hf_files_and_computes_upstreams_depth(upstream_vits, tmp_path, monkeypatch):
    from transformers import DepthAnythingForDepthEstimation

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf_config().save_pretrained(tmp_path)
    save_file(upstream_to_hf(upstream_vits.state_dict()), str(tmp_path / "model.safetensors"))
    hf_model, info = DepthAnythingForDepthEstimation.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]

    image = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = upstream_vits(image)
        actual = hf_model.eval()(pixel_values=image).predicted_depth
    assert actual.shape == expected.shape == (1, 518, 518)
    depth_range = float(expected.max() - expected.min())
    assert depth_range > 0
    assert float((actual - expected).abs().max()) <= 1e-4 * depth_range


def test_round_trip_is_bit_exact(upstream_vits):
    original = upstream_vits.state_dict()
    hf = upstream_to_hf(original)
    assert is_hf_state_dict(hf) and not is_hf_state_dict(original)
    assert "backbone.encoder.layer.11.attention.attention.value.bias" in hf
    assert "neck.fusion_stage.layers.0.projection.weight" in hf  # refinenet4 is fused first
    back = hf_to_upstream(hf)
    assert back.keys() == original.keys()
    for key, tensor in original.items():
        assert torch.equal(back[key], tensor), key


def test_fusion_blocks_are_numbered_from_the_deepest():
    tensors = {f"depth_head.scratch.refinenet{n}.out_conv.bias": torch.full((2,), float(n)) for n in (1, 2, 3, 4)}
    hf = upstream_to_hf(tensors)
    assert {k: int(v[0]) for k, v in hf.items()} == {
        f"neck.fusion_stage.layers.{j}.projection.bias": 4 - j for j in range(4)
    }


def test_swiglu_mlp_round_trips():
    tensors = {"pretrained.blocks.3.mlp.w12.weight": torch.randn(8, 4),
               "pretrained.blocks.3.mlp.w3.bias": torch.randn(4)}
    hf = upstream_to_hf(tensors)
    assert set(hf) == {"backbone.encoder.layer.3.mlp.weights_in.weight",
                       "backbone.encoder.layer.3.mlp.weights_out.bias"}
    assert all(torch.equal(hf_to_upstream(hf)[k], v) for k, v in tensors.items())


def test_unknown_key_is_named(upstream_vits):
    hf = upstream_to_hf(upstream_vits.state_dict())
    hf["neck.mystery.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match=r"'neck\.mystery\.weight'"):
        hf_to_upstream(hf)
    with pytest.raises(UserError, match=r"'pretrained\.blocks\.0\.attn\.bogus'"):
        upstream_to_hf({"pretrained.blocks.0.attn.bogus": torch.zeros(1)})


def test_split_attention_missing_a_third_is_named():
    hf = {f"backbone.encoder.layer.0.attention.attention.{p}.weight": torch.zeros(2, 2) for p in ("query", "key")}
    with pytest.raises(UserError, match=r"layer\.0\.attention\.attention\.value\.weight"):
        hf_to_upstream(hf)


def test_config_metric_and_relative(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(hf_config(metric=True, max_depth=20).to_dict()))
    assert read_hf_config(path) == (True, 20.0)
    assert read_hf_config(hf_config().to_dict()) == (False, None)  # saved max_depth 1 means nothing here
    assert read_hf_config({"model_type": "depth_anything"}) == (False, None)
    assert read_hf_config({"depth_estimation_type": "metric", "max_depth": 80}) == (True, 80.0)
    assert read_hf_config({"depth_estimation_type": "metric"}) == (True, None)


@pytest.mark.parametrize("config, message", [
    ({"depth_estimation_type": "absolute"}, "unknown depth_estimation_type 'absolute'"),
    ({"depth_estimation_type": "metric", "max_depth": "20"}, "max_depth must be a positive number"),
    ({"depth_estimation_type": "metric", "max_depth": 0}, "max_depth must be a positive number"),
])
def test_config_bad_values(config, message):
    with pytest.raises(UserError, match=message):
        read_hf_config(config)


def test_config_unreadable_file_names_it(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match=rf"{tmp_path}.*config\.json: not valid JSON"):
        read_hf_config(path)
    with pytest.raises(UserError, match="cannot read"):
        read_hf_config(tmp_path / "absent.json")


# --- through weights.load_checkpoint: HF files become this package's model ---------------------------------

@pytest.fixture(scope="module")
def hf_folder(upstream_vits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    save_file(upstream_to_hf(upstream_vits.state_dict()), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(hf_config().to_dict()))
    return folder


def test_hf_folder_loads_into_our_model_and_matches_upstream(upstream_vits, hf_folder):
    from dav2_cli.weights.checkpoint import build_model, load_checkpoint

    checkpoint = load_checkpoint(hf_folder)
    assert (checkpoint.config.encoder, checkpoint.config.metric, checkpoint.config.max_depth) == ("vits", False, None)
    image = torch.randn(1, 3, 504, 504, generator=torch.Generator().manual_seed(2))  # an even grid: 36x36
    with torch.no_grad():
        expected = upstream_vits(image)
        actual = build_model(checkpoint)(image)
    assert float((actual - expected).abs().max()) <= 1e-4 * float(expected.max() - expected.min())


def test_metric_config_and_max_depth_rules(hf_folder, tmp_path):
    from dav2_cli.weights.checkpoint import load_checkpoint

    (tmp_path / "model.safetensors").symlink_to(hf_folder / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"depth_estimation_type": "metric", "max_depth": 20}))
    assert load_checkpoint(tmp_path).config.max_depth == 20.0
    assert load_checkpoint(tmp_path / "model.safetensors", max_depth=5).config.max_depth == 5.0
    (tmp_path / "config.json").write_text(json.dumps({"depth_estimation_type": "metric"}))
    with pytest.raises(UserError, match="without max_depth; pass --max-depth"):
        load_checkpoint(tmp_path)
    with pytest.raises(UserError, match="applies to metric checkpoints only"):
        load_checkpoint(hf_folder, max_depth=20)


def test_lone_safetensors_is_relative_unless_named_metric(hf_folder, tmp_path):
    from dav2_cli.weights.checkpoint import load_checkpoint

    lone = tmp_path / "weights.safetensors"
    lone.symlink_to(hf_folder / "model.safetensors")
    assert load_checkpoint(lone).config.metric is False
    named = tmp_path / "depth_anything_v2_metric_vkitti_vits.safetensors"
    named.symlink_to(hf_folder / "model.safetensors")
    assert load_checkpoint(named).config.max_depth == 80.0


def test_model_name_finds_the_hf_cache(hf_folder, tmp_path, monkeypatch):
    from dav2_cli.weights.checkpoint import load_checkpoint

    monkeypatch.setenv("DAV2_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("DAV2_OFFLINE", "1")
    repo_folder = tmp_path / "hub" / "models--depth-anything--Depth-Anything-V2-Metric-Outdoor-Small-hf"
    snapshot = repo_folder / "snapshots" / "r1"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(hf_folder / "model.safetensors")
    (snapshot / "config.json").write_text(json.dumps({"depth_estimation_type": "metric", "max_depth": 80}))
    checkpoint = load_checkpoint("metric-outdoor-small")
    assert (checkpoint.source, checkpoint.config.metric, checkpoint.config.max_depth) == (str(snapshot), True, 80.0)


def test_broken_safetensors_and_foreign_keys_are_user_errors(hf_folder, tmp_path):
    from dav2_cli.weights.checkpoint import load_checkpoint

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match=r"bad\.safetensors: not a readable safetensors file"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"backbone.something.else": torch.zeros(1)}, str(foreign))
    with pytest.raises(UserError, match=r"foreign\.safetensors: unknown key 'backbone\.something\.else'"):
        load_checkpoint(foreign)
    with pytest.raises(UserError, match=r"model\.safetensors: no such file"):
        load_checkpoint(tmp_path)
