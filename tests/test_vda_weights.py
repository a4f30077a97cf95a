"""Video Depth Anything checkpoints and names: recognised by their keys, mapped strictly, listed in the catalogue."""

import subprocess
import sys

import pytest
import torch

from benchmarks.seeded_vda import seeded_vda_checkpoint, tiny_vda_config
from dav2_cli.errors import UserError
from dav2_cli.model import DepthAnythingV2, VideoDepthAnything, VideoModelConfig
from dav2_cli.weights import catalog, lookup
from dav2_cli.weights.checkpoint import build_model, load_checkpoint
from dav2_cli.weights.download import download_url
from dav2_cli.weights.keys import is_video_state_dict, video_upstream_key

TEMPORAL_KEY = "head.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_q.weight"


@pytest.fixture(scope="module")
def tiny_state_dict():
    state_dict = seeded_vda_checkpoint(tiny_vda_config(), seed=2)
    state_dict["pretrained.mask_token"] = torch.zeros(1, 64)  # upstream's files carry DINOv2's unused token
    return state_dict


def save(state_dict, folder, name="video_depth_anything_vits.pth"):
    path = folder / name
    torch.save(state_dict, path)
    return path


def test_a_vda_file_is_recognised_and_builds_the_video_model(tiny_state_dict, tmp_path):
    checkpoint = load_checkpoint(save(tiny_state_dict, tmp_path))
    assert isinstance(checkpoint.config, VideoModelConfig)
    assert not checkpoint.config.metric and checkpoint.config.max_frames == 32
    assert checkpoint.config.reassembly_channels == (32,) * 4 and checkpoint.config.fusion_channels == 32
    model = build_model(checkpoint)
    assert isinstance(model, VideoDepthAnything) and not model.training
    depth = model(torch.zeros(1, 3, 3, 28, 28))
    assert depth.shape == (1, 3, 28, 28) and depth.dtype == torch.float32


def test_dav2_files_still_build_dav2(vits_checkpoint):
    assert isinstance(build_model(load_checkpoint(vits_checkpoint)), DepthAnythingV2)


def test_metric_is_read_off_the_file_name_and_takes_no_max_depth(tiny_state_dict, tmp_path):
    path = save(tiny_state_dict, tmp_path, "metric_video_depth_anything_vits.pth")
    checkpoint = load_checkpoint(path)
    assert checkpoint.config.metric and checkpoint.config.max_depth is None
    with pytest.raises(UserError, match="--max-depth applies to metric Depth-Anything V2 models only; Video Depth "
                                        "Anything takes none"):
        load_checkpoint(path, max_depth=20)


def test_the_head_ends_in_relu_for_metric_vda_too(tiny_state_dict, tmp_path):
    model = build_model(load_checkpoint(save(tiny_state_dict, tmp_path, "metric_video_depth_anything_vits.pth")))
    assert not model.head.metric  # no sigmoid, no max_depth: metres straight from the ReLU


@pytest.mark.parametrize("change,message", [
    (lambda sd: sd.pop(TEMPORAL_KEY), "missing head.motion_modules.2"),
    (lambda sd: sd.update({"head.motion_modules.0.temporal_transformer.transformer_blocks.1.ff_norm.weight":
                           torch.ones(32)}), "unexpected head.motion_modules.0.temporal_transformer.transformer_bl"),
    (lambda sd: sd.pop("head.scratch.refinenet1.out_conv.bias"), "missing head.scratch.refinenet1.out_conv.bias"),
    (lambda sd: sd.pop("head.scratch.layer1_rn.weight"), "Video Depth Anything checkpoint: missing head.scratch"),
])
def test_missing_or_unexpected_tensors_are_one_line_errors(tiny_state_dict, tmp_path, change, message):
    state_dict = dict(tiny_state_dict)
    change(state_dict)
    with pytest.raises(UserError, match=message) as raised:
        load_checkpoint(save(state_dict, tmp_path))
    assert "\n" not in str(raised.value) and "video_depth_anything_vits.pth" in str(raised.value)


def test_wrong_shapes_are_one_line_errors(tiny_state_dict, tmp_path):
    state_dict = dict(tiny_state_dict)
    state_dict[TEMPORAL_KEY] = torch.zeros(16, 32)
    with pytest.raises(UserError, match="do not fit a Video Depth Anything"):
        build_model(load_checkpoint(save(state_dict, tmp_path)))


def test_every_parameter_has_an_upstream_name_and_they_are_distinct():
    with torch.device("meta"):
        names = list(VideoDepthAnything(tiny_vda_config()).state_dict())
    upstream = [video_upstream_key(name) for name in names]
    assert len(set(upstream)) == len(names)
    assert all(key.startswith(("pretrained.", "head.")) for key in upstream)
    assert is_video_state_dict(dict.fromkeys(upstream)) and not is_video_state_dict({"depth_head.x": 0})


VIDEO_NAMES = {
    "video-vits": ("video_depth_anything_vits.pth", "depth-anything/Video-Depth-Anything-Small", "Apache-2.0",
                   "relative"),
    "video-vitb": ("video_depth_anything_vitb.pth", "depth-anything/Video-Depth-Anything-Base", "CC-BY-NC-4.0",
                   "relative"),
    "video-vitl": ("video_depth_anything_vitl.pth", "depth-anything/Video-Depth-Anything-Large", "CC-BY-NC-4.0",
                   "relative"),
    "metric-video-vits": ("metric_video_depth_anything_vits.pth", "depth-anything/Metric-Video-Depth-Anything-Small",
                          "Apache-2.0", "metric"),
    "metric-video-vitb": ("metric_video_depth_anything_vitb.pth", "depth-anything/Metric-Video-Depth-Anything-Base",
                          "see model card", "metric"),
    "metric-video-vitl": ("metric_video_depth_anything_vitl.pth",
                          "depth-anything/Metric-Video-Depth-Anything-Large", "see model card", "metric"),
}


@pytest.mark.parametrize("name", VIDEO_NAMES)
def test_catalogue_names(name):
    spec = catalog.find_spec(name)
    assert (spec.filename, spec.repo, spec.licence, spec.kind) == VIDEO_NAMES[name]
    assert spec.family == catalog.VIDEO_FAMILY and spec.max_depth is None
    assert download_url(spec).endswith(f"/{spec.repo}/resolve/main/{spec.filename}")
    assert catalog.find_spec(spec.aliases[0]) is spec


def test_the_listing_labels_what_each_model_gives(monkeypatch, tmp_path):
    monkeypatch.setenv("DAV2_HOME", str(tmp_path))
    rows = {row["name"]: row for row in lookup.list_models()}
    assert len(rows) == len(catalog.CATALOGUE) and set(VIDEO_NAMES) <= set(rows)
    assert rows["metric-video-vits"]["label"] == "video metric m"
    assert rows["video-vitb"]["label"] == "video relative"
    assert rows["metric-indoor-vits"]["label"] == "metric 20 m"


def test_a_hand_placed_vda_file_resolves_by_name_without_network(monkeypatch, tmp_path, tiny_state_dict):
    monkeypatch.setenv("DAV2_HOME", str(tmp_path))
    monkeypatch.setenv("DAV2_OFFLINE", "1")
    placed = save(tiny_state_dict, tmp_path, "video_depth_anything_vits.pth")
    assert lookup.resolve("video-small") == placed
    assert isinstance(load_checkpoint("video-vits").config, VideoModelConfig)


def test_the_catalogue_does_not_import_torch():
    code = "import sys, dav2_cli.weights.lookup as c; c.list_models(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_load_model_gives_a_float32_vda_on_the_cpu_by_default(tiny_state_dict, tmp_path):
    from dav2_cli.runtime import loading

    model = loading.load_model(save(tiny_state_dict, tmp_path), device="cpu", dtype="auto")
    assert isinstance(model, VideoDepthAnything) and model.precision == "float32"
    assert model.patch_embed.proj.weight.dtype == torch.float32 and model.attention_form == "fused"


@pytest.mark.parametrize("native_bf16", [True, False])
def test_a_vda_on_cuda_computes_in_float32_by_default_and_in_what_is_asked_for_otherwise(tiny_state_dict, tmp_path,
                                                                                         vits_checkpoint, monkeypatch,
                                                                                         native_bf16):
    """Upstream's threads report black or flickering VDA depth in fp16 (VDA #92, #97): auto stays float32 on CUDA,
    as on the CPU, while a per-image model there still gets the GPU's reduced precision. CUDA is simulated: the
    device is named cuda and the model is prepared for it without moving a tensor."""
    from dav2_cli.runtime import device as devices
    from dav2_cli.runtime import loading, torch_backend

    prepared = []
    monkeypatch.setattr(loading, "resolve_device", lambda spec: torch.device("cuda"))
    monkeypatch.setattr(devices, "cuda_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(torch_backend, "prepare_model", lambda model, device, precision: prepared.append(
        (type(model).__name__, device.type, precision)) or model)
    loading.load_model(save(tiny_state_dict, tmp_path), device="cuda", dtype="auto")
    loading.load_model(save(tiny_state_dict, tmp_path), device="cuda", dtype="float16")
    loading.load_model(vits_checkpoint, device="cuda", dtype="auto")
    reduced = "bfloat16" if native_bf16 else "float16"
    assert prepared == [("VideoDepthAnything", "cuda", "float32"), ("VideoDepthAnything", "cuda", "float16"),
                        ("DepthAnythingV2", "cuda", reduced)]
