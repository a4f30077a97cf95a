"""Every cached answer is keyed by everything it depends on: a model that differs only in its head, or only in
--max-depth, never reads another model's converted graph or timing, on the default backend as on each named one.

Before the key named the head and max_depth, the second model of each pair below got the first one's OpenVINO
graph: a metric model's depth at --max-depth 80 came back as the 20 m map, and a metric model sharing a relative
model's weights came back as relative inverse depth, both with exit 0.
"""

import numpy as np
import pytest
import torch

import dav2_cli
from dav2_cli.runtime import auto_backend, backends, tuning_cache

INSTALLED = [name for name, row in backends.BACKENDS.items() if row.installed()]


@pytest.fixture(params=[None, *INSTALLED], ids=lambda name: name or "default")
def backend(request, monkeypatch):
    """Each installed backend by name, and the default (auto). Where auto has more than one candidate, the one
    other than torch is made to win its timing, so the default runs the backend whose cache is under test."""
    if request.param is None:
        def others_faster(models, image_bchw):
            depths = {name: model.signed_depth(image_bchw) for name, model in models.items()}
            return {name: 0.5 if name != "torch" else 1.0 for name in models}, depths

        monkeypatch.setattr(auto_backend, "time_backends", others_faster)
    return request.param


def torch_depth(path, image, max_depth=None):
    return dav2_cli.predict(dav2_cli.load_model(path, "cpu", "float32", max_depth=max_depth, backend="torch"),
                            image, 56)


def assert_same_depth(ours, reference):
    assert np.abs(ours - reference).max() < 1e-4 * (reference.max() - reference.min())


def test_two_max_depths_of_one_metric_model_each_give_their_own_depth(fresh_cache, backend,
                                                                       vits_metric_checkpoint, make_photo):
    image = make_photo(56, 84, seed=4)
    for max_depth in (20.0, 80.0):  # the second run once returned the first one's 20 m map
        model = dav2_cli.load_model(vits_metric_checkpoint, "cpu", "float32", max_depth=max_depth, backend=backend)
        depth = dav2_cli.predict(model, image, 56)
        assert_same_depth(depth, torch_depth(vits_metric_checkpoint, image, max_depth))
        assert depth.max() > 0.3 * max_depth  # metres of this max_depth, not another's


def test_models_sharing_encoder_weights_with_different_heads_each_give_their_own_depth(
        fresh_cache, backend, upstream_vits, tmp_path, make_photo):
    """A relative checkpoint and a metric one with the very same tensors: only the head's activation and
    max_depth differ (the metric one is named so)."""
    relative = tmp_path / "depth_anything_v2_vits.pth"
    metric = tmp_path / "depth_anything_v2_metric_hypersim_vits.pth"
    for path in (relative, metric):
        torch.save(upstream_vits.state_dict(), path)
    image = make_photo(56, 84, seed=5)
    for path in (relative, metric, relative):
        model = dav2_cli.load_model(path, "cpu", "float32", backend=backend)
        assert_same_depth(dav2_cli.predict(model, image, 56), torch_depth(path, image))


def test_a_key_refuses_to_be_made_without_every_part_it_depends_on():
    with pytest.raises(ValueError, match="takes model, precision, bucket"):
        tuning_cache.cache_key("backend", model="m", precision="float32")
    key = tuning_cache.cache_key("backend", model="m", precision="float32", bucket="~2048 tokens")
    for part in ("code=", "torch=", "openvino=", "cpu=", "threads=", "model=m", "precision=float32", "bucket="):
        assert part in key


def test_the_fingerprint_covers_weights_head_and_max_depth(vits_checkpoint, vits_metric_checkpoint):
    from dav2_cli.weights.checkpoint import build_model, load_checkpoint

    def fingerprint(path, max_depth=None):
        return tuning_cache.model_fingerprint(build_model(load_checkpoint(path, max_depth=max_depth)))

    assert fingerprint(vits_metric_checkpoint) == fingerprint(vits_metric_checkpoint)
    assert len({fingerprint(vits_checkpoint), fingerprint(vits_metric_checkpoint),
                fingerprint(vits_metric_checkpoint, 80.0)}) == 3


def test_da3_and_dav2_sharing_tensors_each_give_their_own_depth(fresh_cache, backend, tmp_path, make_photo):
    """Depth Anything 3 and DA-V2 built from the same tensors differ only in what the config records (exp or
    ReLU, the final norm's eps, the sky head): neither may get the other's converted graph or timing."""
    pytest.importorskip("depth_anything_3")
    from tests.da3_reference import da3_network, write_da3_folder

    network = da3_network(seed=9)
    da3 = write_da3_folder(network, tmp_path / "da3")
    dav2 = tmp_path / "depth_anything_v2_vits.pth"
    tensors = {key.replace("backbone.pretrained.", "pretrained.").replace("head.", "depth_head.", 1): value
               for key, value in network.state_dict().items() if "sky_output" not in key}
    for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):  # DA-V2 holds an unused unit here
        tensors[f"depth_head.scratch.refinenet4.resConfUnit1.{name}"] = tensors[
            f"depth_head.scratch.refinenet3.resConfUnit1.{name}"]
    torch.save(tensors, dav2)
    image = make_photo(56, 84, seed=6)
    depths = []
    for path in (da3, dav2, da3):
        model = dav2_cli.load_model(path, "cpu", "float32", backend=backend)
        depths.append(dav2_cli.predict(model, image, 56))
        assert_same_depth(depths[-1], torch_depth(path, image))
    assert np.abs(depths[0] - depths[1]).max() > 0.01 * (depths[0].max() - depths[0].min())
