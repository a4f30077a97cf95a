"""The streamed VDA algorithm: same output whatever the push sizes, bounded memory, chains restart at cuts.

A tiny VDA (width 64, seeded by benchmarks/seeded_vda.py) keeps these fast; fidelity to upstream at full size is
tests/test_vda_fidelity.py. `offline_depth` below is upstream's offline algorithm written plainly (everything in
memory, windows indexed from the start of the video), the oracle for the streamed class on awkward lengths.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmarks.seeded_vda import seeded_vda_model, synthetic_clip, tiny_vda_config
from dav2_cli.depth import sizing as prep
from dav2_cli.depth.temporal_windows import KEYFRAMES, TemporalDepth, fit_scale_shift
from tests.test_vda_fidelity import push_through

IMAGE_HW = (20, 24)
SIZE_HW = prep.model_size(IMAGE_HW, 28)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small to split across threads; on a busy machine two OpenMP threads waiting
    on each other made these tests 10x slower, for the same values."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return seeded_vda_model(tiny_vda_config(), seed=5)


@pytest.fixture(scope="module")
def tiny_metric():
    return seeded_vda_model(tiny_vda_config(metric=True), seed=5)  # same weights: only the chaining differs


def make_frames(count, seed=0, cut_at=()):
    clip = synthetic_clip(count, *IMAGE_HW, seed=seed)
    return [SimpleNamespace(model_input=prep.to_model_input(image[:, :, ::-1], SIZE_HW), cut=i in cut_at, index=i)
            for i, image in enumerate(clip)]


def run(model, frames, push_sizes=None):
    return push_through(model, frames, IMAGE_HW, push_sizes)


@torch.inference_mode()
def offline_depth(model, frames, metric):
    """Upstream's offline algorithm, holding everything: windows at 0, 22, 44, ...; see depth/temporal_windows.py."""
    inputs = [f.model_input for f in frames]
    count = len(inputs)
    padded = inputs + [inputs[-1]] * ((22 - count % 22) % 22 + 10)
    raw, previous = [], None
    for start in range(0, count, 22):
        window = list(padded[start:start + 32])
        if previous is not None:
            window[:10] = [previous[k] for k in KEYFRAMES]
        depth = model(torch.from_numpy(np.stack(window))[None])[0]
        raw.append(list(prep.to_image_size(depth, IMAGE_HW).numpy()))
        previous = window
    aligned = list(raw[0])
    references = [raw[0][0], raw[0][12]]
    for depth in raw[1:]:
        scale, shift = (1.0, 0.0) if metric else fit_scale_shift(depth[:2], references)
        scale, shift = np.float32(scale), np.float32(shift)
        fitted = [np.maximum(d * scale + shift, 0) for d in depth]
        for i in range(8):
            weight = [0.0, 1 / 7, 2 / 7, 3 / 7, 4 / 7, 5 / 7, 6 / 7, 1.0][i]
            aligned[-8 + i] = aligned[-8 + i] * (1 - weight) + fitted[2 + i] * weight
        aligned += fitted[10:]
        references = [references[0], fitted[12]]
    return np.stack(aligned[:count])


@pytest.mark.parametrize("count", [1, 9, 22, 24, 25, 31, 32, 33, 44, 46, 47, 54, 66, 67])
def test_streamed_equals_the_offline_algorithm(tiny, count):
    frames = make_frames(count, seed=count)
    ours = run(tiny, frames, push_sizes=[3] * (count // 3) + [count % 3])
    reference = offline_depth(tiny, frames, metric=False)
    assert ours.shape == (count, *IMAGE_HW) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * float(reference.max()))


def test_output_is_the_same_whatever_the_push_sizes(tiny):
    frames = make_frames(70, seed=1)
    at_once = run(tiny, frames)
    rng = np.random.default_rng(0)
    random_sizes = []
    while sum(random_sizes) < 70:
        random_sizes.append(int(rng.integers(0, 40)))  # empty pushes included
    random_sizes[-1] -= sum(random_sizes) - 70
    for sizes in ([1] * 70, [32, 22, 16], random_sizes):
        assert np.array_equal(run(tiny, frames, sizes), at_once)


def test_frames_are_emitted_as_soon_as_final(tiny):
    temporal = TemporalDepth(tiny, image_hw=IMAGE_HW)
    frames = make_frames(60)
    emitted_after = {}
    for frame in frames:
        for done, _ in temporal.push([frame]):
            emitted_after[done.index] = frame.index
    for done, _ in temporal.finish():
        emitted_after[done.index] = None
    # window 0 runs at frame 31 and gives 0..23; window 1 at frame 53 gives 24..45 (24..31 crossfaded)
    assert all(emitted_after[i] == 31 for i in range(24))
    assert all(emitted_after[i] == 53 for i in range(24, 46))
    assert all(emitted_after[i] is None for i in range(46, 60))
    assert max(after - index for index, after in emitted_after.items() if after is not None) == 31


def test_memory_does_not_grow_with_the_video(tiny):
    def peak_held(count):
        temporal = TemporalDepth(tiny, image_hw=IMAGE_HW)
        frame = make_frames(1)[0]
        peak = {"frames": 0, "inputs": 0, "depth_maps": 0}
        for index in range(count):
            temporal.push([SimpleNamespace(model_input=frame.model_input.copy(), cut=False, index=index)])
            peak = {key: max(peak[key], value) for key, value in temporal.held().items()}
        temporal.finish()
        return peak

    short, long = peak_held(80), peak_held(400)
    assert short == long
    # pending new frames (<32) + 8 awaiting the crossfade; their inputs + 10 keyframe inputs; 8 tail + 2 reference
    assert long["frames"] <= 40 and long["inputs"] <= 43 and long["depth_maps"] <= 10


def test_a_cut_restarts_the_chain(tiny):
    scene_a, scene_b = make_frames(30, seed=1), make_frames(40, seed=2)
    for i, frame in enumerate(scene_b):
        frame.index = 30 + i
    scene_b[0].cut = True
    both = run(tiny, scene_a + scene_b, push_sizes=[25, 10, 35])
    scene_b[0].cut = False
    assert np.array_equal(both[:30], run(tiny, scene_a))
    assert np.array_equal(both[30:], run(tiny, scene_b))
    # without the cut, scene B would be aligned to scene A's frame 0
    scene_b[0].cut = False
    assert not np.allclose(run(tiny, scene_a + scene_b)[30:], both[30:])


def test_a_cut_on_the_first_frame_changes_nothing(tiny):
    frames = make_frames(40)
    plain = run(tiny, frames)
    frames[0].cut = True
    assert np.array_equal(run(tiny, frames), plain)


def test_metric_models_are_chained_without_scale_and_shift(tiny, tiny_metric):
    frames = make_frames(50, seed=3)
    relative, metric = run(tiny, frames), run(tiny_metric, frames)
    assert np.array_equal(relative[:24], metric[:24])  # window 0 is the same network's output
    assert not np.allclose(relative[24:], metric[24:])
    np.testing.assert_allclose(metric, offline_depth(tiny_metric, frames, metric=True), rtol=0,
                               atol=1e-5 * float(metric.max()))


def test_the_engines_preparation_keeps_the_values(tiny):
    """torch_backend.prepare_model lays the decoder out channels-last; the temporal modules must give the same depth."""
    import copy

    from dav2_cli.runtime import torch_backend

    frames = make_frames(33)
    prepared = torch_backend.prepare_model(copy.deepcopy(tiny), torch.device("cpu"), "float32")
    expected = run(tiny, frames)
    # float32 channels-last convolutions sum in another order, by CPU: 3e-5 of the largest depth on AVX2 alone
    np.testing.assert_allclose(run(prepared, frames), expected, rtol=0, atol=1e-4 * float(expected.max()))


def test_scale_and_shift_fit():
    rng = np.random.default_rng(0)
    prediction = [rng.random((6, 7)).astype(np.float32) for _ in range(2)]
    target = [2.5 * p - 0.75 for p in prediction]
    scale, shift = fit_scale_shift(prediction, target)
    assert scale == pytest.approx(2.5, abs=1e-5) and shift == pytest.approx(-0.75, abs=1e-5)
    flat = [np.ones((6, 7), np.float32)] * 2
    assert fit_scale_shift(flat, target[:1] * 2) == (1.0, 0.0)


class NonFiniteInHalfPrecision(torch.nn.Module):
    """Stands in for a GPU whose half-precision run overflows: the wrapped model's depth is NaN unless in float32."""

    def __init__(self, model, precision):
        super().__init__()
        self.inner = model
        self.config, self.patch_embed, self.image_encoder = model.config, model.patch_embed, model.image_encoder
        self.precision = precision
        self.calls = []

    def window(self, new_frames, carried_tokens=None):
        self.calls.append(self.precision)
        depth, tokens = self.inner.window(new_frames, carried_tokens)
        return (torch.full_like(depth, float("nan")) if self.precision != "float32" else depth), tokens

    def back_to_float32(self):
        self.inner.back_to_float32()
        self.precision = "float32"


def through_non_finite_windows(tiny, precision):
    """A 40-frame clip through `tiny` in `precision`, its windows made non-finite until it falls back: (the
    wrapped model, the messages, its depth, the float32 depth)."""
    import copy

    frames = make_frames(40)
    expected = run(tiny, frames)
    wrapped = NonFiniteInHalfPrecision(copy.deepcopy(tiny).compute_in(precision), precision)
    messages = []
    temporal = TemporalDepth(wrapped, image_hw=IMAGE_HW, notify=messages.append)
    depth = np.stack([d for _, d in temporal.push(frames) + temporal.finish()])
    return wrapped, messages, depth, expected


def test_non_finite_half_precision_falls_back_to_float32(tiny):
    """The CUDA float16 form (float32 weights under autocast): the fallback is exactly the float32 result."""
    wrapped, messages, depth, expected = through_non_finite_windows(tiny, "float16")
    assert wrapped.calls == ["float16", "float32", "float32"]  # retried once, then float32 for good
    assert wrapped.inner.precision == "float32"
    assert len(messages) == 1 and "float16" in messages[0] and "float32" in messages[0]
    np.testing.assert_array_equal(depth, expected)


def test_bf16_weights_fall_back_to_float32_compute(tiny):
    """bf16 weights (engine's CUDA bf16 form) can only be widened again: finite depth, near the float32 one."""
    wrapped, messages, depth, expected = through_non_finite_windows(tiny, "bfloat16")
    assert wrapped.calls == ["bfloat16", "float32", "float32"] and "bfloat16" in messages[0]
    assert wrapped.inner.patch_embed.proj.weight.dtype == torch.float32
    assert np.isfinite(depth).all()
    assert np.abs(depth - expected).max() < 0.05 * (expected.max() - expected.min())


def test_non_finite_float32_is_an_error_not_a_black_frame(tiny):
    wrapped = NonFiniteInHalfPrecision(tiny, "float32")
    wrapped.window = lambda frames, carried=None: (torch.full((32, *frames.shape[2:]), float("nan")), None)
    temporal = TemporalDepth(wrapped, image_hw=IMAGE_HW)
    with pytest.raises(RuntimeError, match="non-finite"):
        temporal.push(make_frames(32))
