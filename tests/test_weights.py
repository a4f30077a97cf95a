"""Checkpoint loading: configs read off the tensors, strict keys, and files that must never run code."""

import pickle

import pytest
import torch

from dav2_cli.errors import UserError
from dav2_cli.weights.checkpoint import build_model, load_checkpoint
from dav2_cli.weights.keys import upstream_key
from dav2_cli.weights.upstream_pth import config_from_state_dict


def test_config_is_read_off_the_weights(vits_checkpoint):
    checkpoint = load_checkpoint(vits_checkpoint)
    config = checkpoint.config
    assert (config.encoder, config.width, config.blocks, config.heads) == ("vits", 384, 12, 6)
    assert config.taps == (2, 5, 8, 11)
    assert config.reassembly_channels == (48, 96, 192, 384) and config.fusion_channels == 64
    assert not config.metric and config.max_depth is None


def synthetic_state_dict(width, blocks, channels, fusion, swiglu=False):
    """Just the tensors config derivation reads, shaped like a real checkpoint's, on the meta device: only shapes
    matter, and vitg's real-sized tensors would take ~3 GB."""
    with torch.device("meta"):
        state = {"pretrained.patch_embed.proj.weight": torch.empty(width, 3, 14, 14)}
        for i in range(blocks):
            if swiglu:
                state[f"pretrained.blocks.{i}.mlp.w12.weight"] = torch.empty(8192, width)
                state[f"pretrained.blocks.{i}.mlp.w3.weight"] = torch.empty(width, 4096)
            else:
                state[f"pretrained.blocks.{i}.mlp.fc1.weight"] = torch.empty(4 * width, width)
        for i, c in enumerate(channels, start=1):
            state[f"depth_head.scratch.layer{i}_rn.weight"] = torch.empty(fusion, c, 3, 3)
    return state


@pytest.mark.parametrize("width,blocks,channels,fusion,swiglu,taps", [
    (1024, 24, (256, 512, 1024, 1024), 256, False, (4, 11, 17, 23)),
    (1536, 40, (1536,) * 4, 384, True, (9, 19, 29, 39)),
    (768, 12, (96, 192, 384, 768), 128, False, (2, 5, 8, 11)),
])
def test_every_encoder_size_is_recognised(width, blocks, channels, fusion, swiglu, taps):
    config = config_from_state_dict(synthetic_state_dict(width, blocks, channels, fusion, swiglu),
                                    metric=False, max_depth=None)
    assert config.taps == taps and config.swiglu == swiglu and config.heads == width // 64
    assert config.reassembly_channels == channels and config.fusion_channels == fusion
    if swiglu:
        assert config.mlp_hidden == 4096


def test_vitg_swiglu_model_builds_with_upstream_key_names():
    config = config_from_state_dict(synthetic_state_dict(1536, 40, (1536,) * 4, 384, True), metric=False,
                                    max_depth=None)
    with torch.device("meta"):
        from dav2_cli.model import DepthAnythingV2

        names = {upstream_key(k) for k in DepthAnythingV2(config).state_dict()}
    assert "pretrained.blocks.39.mlp.w12.weight" in names and "pretrained.blocks.0.mlp.w3.bias" in names
    assert "depth_head.scratch.refinenet4.resConfUnit1.conv1.weight" in names


def test_metric_kind_and_range_come_from_the_file_name(vits_checkpoint, tmp_path):
    state = torch.load(vits_checkpoint, weights_only=True)
    for name, expected in [("depth_anything_v2_metric_hypersim_vits.pth", 20.0),
                           ("depth_anything_v2_metric_vkitti_vits.pth", 80.0)]:
        torch.save(state, tmp_path / name)
        config = load_checkpoint(tmp_path / name).config
        assert config.metric and config.max_depth == expected
    assert load_checkpoint(tmp_path / "depth_anything_v2_metric_vkitti_vits.pth", max_depth=50).config.max_depth == 50
    torch.save(state, tmp_path / "my_metric_model.pth")
    with pytest.raises(UserError, match="--max-depth"):
        load_checkpoint(tmp_path / "my_metric_model.pth")
    with pytest.raises(UserError, match="metric checkpoints only"):
        load_checkpoint(vits_checkpoint, max_depth=10)


def test_missing_blocks_are_named(vits_checkpoint, tmp_path):
    state = {k: v for k, v in torch.load(vits_checkpoint, weights_only=True).items() if ".blocks." not in k}
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(UserError, match=r"not a Depth-Anything V2 checkpoint: missing pretrained\.blocks\.\*"):
        load_checkpoint(tmp_path / "cut.pth")


def test_missing_and_unexpected_single_keys_are_named(vits_checkpoint, tmp_path):
    state = torch.load(vits_checkpoint, weights_only=True)
    del state["depth_head.scratch.refinenet2.out_conv.bias"]
    torch.save(state, tmp_path / "a.pth")
    with pytest.raises(UserError, match="missing depth_head.scratch.refinenet2.out_conv.bias"):
        load_checkpoint(tmp_path / "a.pth")
    state = torch.load(vits_checkpoint, weights_only=True)
    state["depth_head.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "b.pth")
    with pytest.raises(UserError, match="unexpected depth_head.extra.weight"):
        load_checkpoint(tmp_path / "b.pth")


def test_wrong_shapes_are_a_user_error(vits_checkpoint, tmp_path):
    state = torch.load(vits_checkpoint, weights_only=True)
    state["depth_head.projects.0.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(UserError, match="shape"):
        build_model(load_checkpoint(tmp_path / "shape.pth"))


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"pretrained.patch_embed.proj.weight": _RunsCode()}, handle)
    torch.save({"x": _RunsCode()}, tmp_path / "evil_zip.pth")
    for candidate in (path, tmp_path / "evil_zip.pth"):
        with pytest.raises(UserError, match="refused|not a readable"):
            load_checkpoint(candidate)
    assert not (tmp_path / "PWNED").exists()


def test_a_checkpoint_in_torch_saves_legacy_format_loads_like_the_zip_one(vits_checkpoint, tmp_path):
    legacy = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(torch.load(vits_checkpoint, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    ours, theirs = load_checkpoint(legacy), load_checkpoint(vits_checkpoint)
    assert ours.config == theirs.config and ours.state_dict.keys() == theirs.state_dict.keys()
    assert all(torch.equal(ours.state_dict[key], theirs.state_dict[key]) for key in ours.state_dict)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "an empty file, not a checkpoint"),
    (b"<html>Too many requests</html>", "not a PyTorch checkpoint \\(neither torch.save's zip format nor its legacy"),
])
def test_a_file_that_is_no_checkpoint_says_what_it_is(tmp_path, content, message):
    path = tmp_path / "depth_anything_v2_vits.pth"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


def test_a_checkpoint_damaged_inside_its_tensors_is_refused_not_loaded_as_other_weights(vits_checkpoint, tmp_path):
    """torch.load itself never checks the CRC-32 the zip records for each tensor: this file loads there."""
    data = bytearray(vits_checkpoint.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    damaged = tmp_path / "depth_anything_v2_vits.pth"
    damaged.write_bytes(bytes(data))
    assert torch.load(damaged, weights_only=True, mmap=True).keys()  # torch alone sees nothing wrong
    with pytest.raises(UserError, match=r"damaged checkpoint: depth_anything_v2_vits/data/\d+ fails its checksum"):
        load_checkpoint(damaged)
