"""Depth Anything 3 mono and metric: DA3's own folders load into dav2's DPT with DA3's differences as
configuration, and give the `depth-anything-3` package's network's depth and sky on the same input."""

import json

import numpy as np
import pytest
import torch

from dav2_cli.errors import UsageError, UserError
from dav2_cli.model.head import SKY_THRESHOLD, sky_set_far
from dav2_cli.weights.catalog import (DA3_FAMILY, INVERSE_DEPTH, METRIC_DEPTH, RELATIVE_DEPTH, find_spec,
                                      output_kind)
from dav2_cli.weights.checkpoint import build_model, load_checkpoint
from dav2_cli.weights.kinds import model_family, model_kind, model_output_kind
from tests.da3_reference import da3_network, make_some_sky, reference_depth_and_sky, write_da3_folder

TOLERANCE = 1e-4  # of the depth range


def sample_batch() -> torch.Tensor:
    return torch.randn(2, 3, 196, 280, generator=torch.Generator().manual_seed(3))  # an even 14x20 patch grid


@pytest.fixture(scope="module", params=[False, True], ids=["mono", "metric"])
def da3_folder(request, tmp_path_factory):
    metric = request.param
    network = da3_network(metric, seed=5 + metric)
    make_some_sky(network, sample_batch())
    folder = write_da3_folder(network, tmp_path_factory.mktemp("da3") / ("metric" if metric else "mono"), metric)
    return network, folder, metric


def test_da3_folder_gives_the_packages_depth_and_sky(da3_folder):
    network, folder, metric = da3_folder
    checkpoint = load_checkpoint(folder)
    config = checkpoint.config
    assert (config.exp_output, config.sky_head, config.out_norm_eps, config.coarsest_lateral) == (True, True, 1e-5,
                                                                                                   False)
    assert config.metric is metric and config.max_depth is None
    assert config.canonical_focal == (300.0 if metric else None)
    model = build_model(checkpoint)
    image = sample_batch()
    expected_depth, expected_sky = reference_depth_and_sky(network, image)
    with torch.no_grad():
        depth, sky = model.depth_and_sky(image)
        forward = model(image)
    span = float(expected_depth.max() - expected_depth.min())
    assert span > 1e-3
    assert depth.shape == forward.shape == (2, 196, 280)
    assert float((depth - expected_depth).abs().max()) <= TOLERANCE * span
    assert float((sky - expected_sky).abs().max()) <= TOLERANCE * float(expected_sky.max() - expected_sky.min())
    # forward: our own depth with each image's sky (by our own score: a pixel within rounding of the threshold
    # may fall either way) at its farthest other depth
    is_sky = sky >= SKY_THRESHOLD
    for index in range(2):
        assert 0 < int(is_sky[index].sum()) < is_sky[index].numel()  # both kinds of pixel, or this proves nothing
        ground = depth[index][~is_sky[index]]
        assert torch.equal(forward[index][~is_sky[index]], ground)
        assert torch.all(forward[index][is_sky[index]] == ground.max())


def test_sky_set_far_is_deterministic_and_leaves_all_sky_or_no_sky_alone():
    depth = torch.tensor([[[[1.0, 2.0], [3.0, 9.0]]]]).repeat(3, 1, 1, 1)
    sky = torch.tensor([[[[0.0, 0.0], [0.0, 0.9]]], [[[0.9, 0.9], [0.9, 0.9]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    result = sky_set_far(depth, sky >= SKY_THRESHOLD)
    assert result[0].flatten().tolist() == [1.0, 2.0, 3.0, 3.0]
    assert torch.equal(result[1:], depth[1:])


def test_da3_is_recognised_by_keys_and_config_not_by_name(da3_folder, tmp_path):
    _, folder, metric = da3_folder
    assert model_family(folder) == DA3_FAMILY
    assert model_kind(folder) == (metric, None)
    assert model_output_kind(folder) == (METRIC_DEPTH if metric else RELATIVE_DEPTH)
    # the same file under a name that says nothing: its keys and config.json still decide
    other = tmp_path / "weights"
    other.mkdir()
    (other / "model.safetensors").symlink_to(folder / "model.safetensors")
    (other / "config.json").write_text((folder / "config.json").read_text())
    assert model_family(other) == DA3_FAMILY and model_kind(other) == (metric, None)
    with pytest.raises(UsageError, match="--max-depth"):
        model_kind(folder, 20.0)
    (other / "config.json").unlink()
    with pytest.raises(UserError, match="config.json"):
        load_checkpoint(other)
    (other / "config.json").write_text(json.dumps({"model_name": "da3-large"}))
    with pytest.raises(UserError, match="da3-large"):
        load_checkpoint(other)


def test_catalogue_rows_and_output_kinds():
    mono, metric = find_spec("da3-mono-l"), find_spec("da3-metric-large")
    assert (mono.repo, metric.repo) == ("depth-anything/DA3MONO-LARGE", "depth-anything/DA3METRIC-LARGE")
    assert mono.filename == metric.filename == "model.safetensors" and mono.companion == "config.json"
    assert mono.licence == metric.licence == "Apache-2.0" and not mono.non_commercial
    assert (mono.output_kind, metric.output_kind) == (RELATIVE_DEPTH, METRIC_DEPTH)
    assert find_spec("vits").output_kind == INVERSE_DEPTH == output_kind("Distill-Any-Depth", False)
    assert mono.max_depth is None and metric.max_depth is None
    with pytest.raises(UsageError, match="--max-depth"):
        model_kind("da3-metric-l", 80.0)


def test_da3_runs_on_every_backend_with_the_packages_depth(da3_folder, each_backend):
    import dav2_cli

    network, folder, _ = da3_folder
    image = sample_batch()[:1]
    model = dav2_cli.load_model(folder, device="cpu", dtype="float32", backend=each_backend)
    torch_model = dav2_cli.load_model(folder, device="cpu", dtype="float32", backend="torch")
    expected_depth, expected_sky = reference_depth_and_sky(network, image)
    with torch.no_grad():
        ours, ours_torch = model(image), torch_model(image)
    span = float(expected_depth.max() - expected_depth.min())
    assert float((ours - ours_torch).abs().max()) <= TOLERANCE * span
    clearly_ground = expected_sky < SKY_THRESHOLD - 1e-3
    assert float((ours[clearly_ground] - expected_depth[clearly_ground]).abs().max()) <= TOLERANCE * span
