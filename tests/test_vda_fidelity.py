"""Video Depth Anything in dav2 gives upstream's depth: frame for frame, across windows, in either kind.

The goldens (tests/golden/vda_vits_golden.npz) are upstream's `infer_video_depth` in float32 on synthetic clips
of two lengths (24 frames: one padded window; 60: three windows and a padded tail) with seeded VDA-S weights;
tests/golden/make_vda_golden.py wrote them from upstream's code and documents the recipe. Here the same weights
are rebuilt by the same recipe (benchmarks/seeded_vda.py, torch and numpy only), saved under upstream's file
names and loaded through dav2's normal checkpoint path, and each clip is streamed through `TemporalDepth`: no
reference code is needed.
"""

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmarks.seeded_vda import seeded_vda_checkpoint, synthetic_clip
from dav2_cli.depth import sizing as prep
from dav2_cli.model import VideoDepthAnything
from dav2_cli.depth.temporal_windows import TemporalDepth
from dav2_cli.weights.checkpoint import build_model, load_checkpoint

GOLDEN = Path(__file__).parent / "golden" / "vda_vits_golden.npz"
TOLERANCE = 1e-3  # of the depth range, per frame; measured: ~3e-6


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        height, width, input_size, clip_seed, relative_seed, metric_seed = (int(v) for v in data["clip"])
        lengths = tuple(int(v) for v in data["lengths"])
        depth = {(kind, frames): data[f"{kind}_{frames}"] for kind in ("relative", "metric") for frames in lengths}
    return SimpleNamespace(depth=depth, lengths=lengths, image_hw=(height, width), input_size=input_size,
                           clip_seed=clip_seed, seeds={"relative": relative_seed, "metric": metric_seed})


def test_the_goldens_pin_one_window_and_several_with_a_tail(golden):
    one, several = min(golden.lengths), max(golden.lengths)
    assert one <= 32  # one window, padded
    assert several > 32 + 22 and (several - 32) % 22 != 0  # three windows or more, the last one padded


def push_through(model, frames, image_hw, push_sizes=None):
    """Depth of every frame, streamed through TemporalDepth in pushes of `push_sizes` (default: all at once),
    checked to come out in order, one map per frame."""
    temporal = TemporalDepth(model, image_hw=image_hw)
    done, start = [], 0
    for size in push_sizes or [len(frames)]:
        done += temporal.push(frames[start:start + size])
        start += size
    done += temporal.finish()
    assert [frame.index for frame, _ in done] == [frame.index for frame in frames]
    return np.stack([depth for _, depth in done])


def stream(model, clip_rgb, input_size, push_sizes=None):
    image_hw = clip_rgb.shape[1:3]
    size_hw = prep.model_size(image_hw, input_size)
    frames = [SimpleNamespace(model_input=prep.to_model_input(image[:, :, ::-1], size_hw), cut=False, index=i)
              for i, image in enumerate(clip_rgb)]
    return push_through(model, frames, image_hw, push_sizes)


FILE_NAMES = {"relative": "video_depth_anything_vits.pth", "metric": "metric_video_depth_anything_vits.pth"}


@pytest.fixture(scope="module")
def seeded_models(golden, tmp_path_factory):
    """Each kind's seeded VDA-S, saved under upstream's file name and loaded by dav2's checkpoint path."""
    models = {}
    for kind, file_name in FILE_NAMES.items():
        path = tmp_path_factory.mktemp(kind) / file_name
        torch.save(seeded_vda_checkpoint("vits", golden.seeds[kind]), path)
        checkpoint = load_checkpoint(path)
        assert checkpoint.config.metric == (kind == "metric")
        models[kind] = build_model(checkpoint)
    return models


@pytest.mark.parametrize("frames", [24, 60])
@pytest.mark.parametrize("kind", list(FILE_NAMES))
def test_every_frame_equals_upstream(golden, seeded_models, kind, frames):
    model = seeded_models[kind]
    assert isinstance(model, VideoDepthAnything)
    clip = synthetic_clip(frames, *golden.image_hw, seed=golden.clip_seed)
    pushes = [5, 30, 1]  # frames arrive in uneven batches, across the windows' seams
    ours = stream(model, clip, golden.input_size, push_sizes=[*pushes, frames - sum(pushes)] if frames > 36 else
                  [5, frames - 5])
    reference = golden.depth[kind, frames]
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    depth_range = float(reference.max() - reference.min())
    assert depth_range > 1.0
    per_frame = np.abs(ours - reference).reshape(len(ours), -1).max(axis=1) / depth_range
    assert per_frame.max() < TOLERANCE, f"worst frame {per_frame.argmax()}: {per_frame.max():.2e}"


def test_the_goldens_depend_on_the_temporal_path(seeded_models):
    """With the temporal output projections at zero (a fresh upstream model) the depth is far from the seeded
    model's: so the goldens, made with them perturbed, test the temporal modules too."""
    model = copy.deepcopy(seeded_models["relative"])
    clip_1tchw = torch.from_numpy(np.stack([prep.to_model_input(image[:, :, ::-1], (56, 84))
                                            for image in synthetic_clip(8, 20, 30, seed=7)]))[None]
    with torch.inference_mode():
        seeded = model(clip_1tchw)
        for module in model.temporal:
            module.proj_out.weight.zero_()
            module.proj_out.bias.zero_()
        identity = model(clip_1tchw)
    assert float((seeded - identity).abs().mean() / (seeded.max() - seeded.min())) > 0.05


def upstream_vda_size(image_hw, input_size):
    """Upstream VDA's sizing: its aspect-ratio shrink, then DA-V2's lower-bound multiples of 14."""
    height, width = image_hw
    ratio = max(height, width) / min(height, width)
    if ratio > 1.78:
        input_size = round(int(input_size * 1.777 / ratio) / 14) * 14
    scale = max(input_size / height, input_size / width)

    def side(x):
        y = int(np.round(x / 14) * 14)
        return y if y >= input_size else int(np.ceil(x / 14) * 14)

    return side(scale * height), side(scale * width)


@pytest.mark.parametrize("image_hw,input_size", [((280, 476), 280), ((20, 30), 56), ((480, 640), 336),
                                                 ((720, 1280), 504), ((1080, 1920), 504), ((600, 800), 504)])
def test_sizes_equal_upstream_where_its_grid_is_even_and_the_aspect_at_most_1_78(image_hw, input_size):
    theirs = upstream_vda_size(image_hw, input_size)
    assert (theirs[0] // 14) % 2 == 0 and (theirs[1] // 14) % 2 == 0
    assert prep.model_size(image_hw, input_size) == theirs


def test_the_one_sizing_difference_is_upstreams_shrink_of_wide_videos():
    # 2.39:1 cinema: upstream lowers 504 to 378 on the short side; dav2 keeps --input-size
    assert upstream_vda_size((800, 1912), 504)[0] == 378
    assert prep.model_size((800, 1912), 504)[0] == 504
