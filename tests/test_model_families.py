"""Distill-Any-Depth (S, B, L) and Depth-Anything-AC: each family's files, in its own key layout, load into DA-V2's
network and give upstream DA-V2's depth for the same tensors; names, listing, licences and metadata.

The reference is upstream's DA-V2 code (benchmarks/upstream.py) with seeded weights that move every parameter;
the files are written in the layout each family publishes (DESIGN.md's table, transformers'
convert_distill_any_depth_to_hf.py): S, B and AC in upstream's keys, Distill L with its encoder under
`backbone.` and its blocks chunked (`backbone.blocks.0.N`).
"""

import json
import re

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from benchmarks.upstream import upstream_model
from dav2_cli.errors import UserError
from dav2_cli.weights import download as download_module
from dav2_cli.weights.catalog import AC_FAMILY, DAV2_FAMILY, DISTILL_FAMILY, find_spec
from dav2_cli.weights.checkpoint import build_model, load_checkpoint
from dav2_cli.weights.kinds import model_family, model_kind

TOLERANCE = 1e-4  # of the depth range


def chunked_backbone(state_dict: dict) -> dict:
    """Upstream-layout tensors written the way Distill-Any-Depth Large's file holds them."""
    written = {}
    for key, tensor in state_dict.items():
        block = re.fullmatch(r"pretrained\.blocks\.(\d+)\.(.+)", key)
        if block:
            written[f"backbone.blocks.0.{block[1]}.{block[2]}"] = tensor
        elif key.startswith("pretrained."):
            written["backbone." + key[len("pretrained."):]] = tensor
        else:
            written[key] = tensor
    return written


def contiguous(state_dict: dict) -> dict:
    return {key: tensor.detach().contiguous().clone() for key, tensor in state_dict.items()}


def assert_same_depth(path, reference, height=56, width=84):
    """The model built from `path` gives `reference`'s depth on one input (an even 4x6 patch grid)."""
    checkpoint = load_checkpoint(path)
    assert not checkpoint.config.metric
    model = build_model(checkpoint)
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = reference(image).numpy()
        ours = model(image).float().numpy()
    assert ours.shape == expected.shape == (1, height, width)
    assert expected.max() - expected.min() > 1e-3  # a flat map would prove nothing
    assert np.abs(ours - expected).max() <= TOLERANCE * (expected.max() - expected.min())


@pytest.mark.parametrize("encoder,folder", [("vits", "small"), ("vitb", "base")])
def test_distill_small_and_base_files_in_upstreams_keys_give_upstreams_depth(encoder, folder, tmp_path):
    reference = upstream_model(encoder, seed=11)
    path = tmp_path / folder / "model.safetensors"
    path.parent.mkdir()
    save_file(contiguous(reference.state_dict()), str(path))
    assert_same_depth(path, reference)
    assert model_family(path) == DAV2_FAMILY  # upstream's keys: nothing in the file tells Distill from DA-V2


def test_distill_large_chunked_backbone_is_recognised_by_its_keys_and_gives_upstreams_depth(tmp_path):
    reference = upstream_model("vitl", seed=12)
    nested = chunked_backbone(contiguous(reference.state_dict()))
    assert any(key.startswith("backbone.blocks.0.23.") for key in nested) and "backbone.cls_token" in nested
    path = tmp_path / "weights.safetensors"  # a name that says nothing: the keys decide
    save_file(nested, str(path))
    assert model_family(path) == DISTILL_FAMILY
    assert_same_depth(path, reference, height=28, width=56)
    pth = tmp_path / "weights.pth"  # the same layout in torch.save's container
    torch.save(nested, pth)
    assert load_checkpoint(pth).config.blocks == 24


def test_a_chunked_backbone_holding_one_block_twice_is_refused(tmp_path):
    state = chunked_backbone(contiguous(upstream_model("vits", seed=13).state_dict()))
    state["backbone.blocks.1.0.norm1.weight"] = state["backbone.blocks.0.0.norm1.weight"].clone()
    path = tmp_path / "twice.safetensors"
    save_file(state, str(path))
    with pytest.raises(UserError, match=r"twice\.safetensors: .*pretrained\.blocks\.0\.norm1\.weight twice"):
        load_checkpoint(path)


def test_depth_anything_ac_pth_in_upstreams_keys_gives_upstreams_depth(tmp_path):
    reference = upstream_model("vits", seed=14)
    path = tmp_path / "depth_anything_AC_vits.pth"
    torch.save(reference.state_dict(), path)
    assert_same_depth(path, reference)


def make_snapshot(hub_root, repo: str, filename: str, state_dict: dict):
    """A HuggingFace cache snapshot of `repo` holding `filename`, as huggingface_hub lays it out."""
    folder = hub_root / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("r1")
    path = folder / "snapshots" / "r1" / filename
    path.parent.mkdir(parents=True)
    save_file(contiguous(state_dict), str(path))
    return path


@pytest.fixture
def cached_distill_small(tmp_path, monkeypatch):
    monkeypatch.setenv("DAV2_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("DAV2_OFFLINE", "1")  # nothing may be fetched: the cache must be found
    reference = upstream_model("vits", seed=15)
    spec = find_spec("distill-any-depth-s")
    return make_snapshot(tmp_path / "hub", spec.repo, spec.filename, reference.state_dict()), reference


def test_distill_small_by_name_from_the_hf_cache_end_to_end(cached_distill_small, tmp_path, make_photo):
    path, reference = cached_distill_small
    assert load_checkpoint("distill-any-depth-s").source == str(path)
    assert model_kind("distill-any-depth-small") == (False, None)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), make_photo(100, 150))
    out = tmp_path / "out.npy"
    result = CliRunner().invoke(
        __import__("dav2_cli.cli", fromlist=["main"]).main,
        ["image", str(photo), "-m", "distill-any-depth-s", "-o", str(out), "--input-size", "280", "--device", "cpu",
         "--dtype", "float32"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    description = json.loads((tmp_path / "out.npy.json").read_text())
    assert (description["model"], description["family"], description["kind"]) == (
        "distill-any-depth-s", DISTILL_FAMILY, "relative")
    import dav2_cli

    model = dav2_cli.load_model(path, "cpu", "float32")
    expected = dav2_cli.predict(model, cv2.imread(str(photo)), 280)
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-6, atol=1e-7)
    assert model_family(path) == DISTILL_FAMILY  # the cached copy of a row is that row's family


def test_models_lists_family_kind_and_licence_of_every_row():
    from dav2_cli.cli import main

    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    columns = [header.index(title) for title in ("FAMILY", "KIND", "SIZE", "LICENCE")]
    cells = {row.split()[0]: [row[a:b].strip() for a, b in zip(columns, columns[1:])] for row in rows}
    assert cells["distill-any-depth-l"] == [DISTILL_FAMILY, "relative", "1.3 GB"]
    assert cells["depth-anything-ac-s"] == [AC_FAMILY, "relative", "99 MB"]
    assert cells["vits"][0] == DAV2_FAMILY
    licence = {row.split()[0]: row[columns[-1]:].split()[0] for row in rows}
    assert licence["depth-anything-ac-s"] == "CC-BY-NC-4.0" and licence["distill-any-depth-s"] == "Apache-2.0"


@pytest.mark.parametrize("name,said", [("depth-anything-ac-s", True), ("distill-any-depth-s", False)])
def test_a_non_commercial_licence_is_said_when_the_model_is_downloaded(name, said, tmp_path, monkeypatch, capsys):
    """huggingface_hub's transfer is stood in for: what is under test is what dav2 says once the file arrives."""
    import huggingface_hub

    monkeypatch.delenv("DAV2_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    arrived = tmp_path / "arrived.bin"
    arrived.write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: type("M", (), {"etag": None}))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: str(arrived))
    assert download_module.download(find_spec(name), progress=False) == arrived
    err = capsys.readouterr().err
    assert ("CC-BY-NC-4.0: not for commercial use" in err) is said
