"""Scene-cut detection on synthetic footage: a cut is found; pans, motion and brightness drift are not cuts."""

import numpy as np

from benchmarks.seeded_vda import synthetic_clip
from dav2_cli.depth.scene_cuts import CUT_DISTANCE, SceneCutDetector


def cuts(frames):
    detector = SceneCutDetector()
    return [index for index, frame in enumerate(frames) if detector.is_cut(frame)]


def bgr(clip_rgb):
    return [np.ascontiguousarray(frame[:, :, ::-1]) for frame in clip_rgb]


def test_a_hard_cut_is_found_where_it_is():
    scene_a, scene_b = bgr(synthetic_clip(12, 90, 160, seed=1)), bgr(synthetic_clip(12, 90, 160, seed=6))
    assert cuts(scene_a + scene_b) == [12]


def test_several_cuts_and_a_cut_back():
    a, b, c = (bgr(synthetic_clip(6, 72, 128, seed=s)) for s in (1, 7, 3))
    assert cuts(a + b + c + a) == [6, 12, 18]


def test_moving_content_is_not_a_cut():
    assert cuts(bgr(synthetic_clip(40, 90, 160, seed=2))) == []


def test_content_jumping_across_the_edge_of_small_noisy_frames_is_not_a_cut():
    # in this clip a blob wraps from one edge to the other at frame 39 (distance 0.32-0.39 at every size), and at
    # 20x30 ordinary frame-to-frame change is already ~0.18: neither may split the chain away from upstream's
    for height, width in ((20, 30), (240, 360)):
        assert cuts(bgr(synthetic_clip(56, height, width, seed=7))) == []


def test_a_pan_is_not_a_cut():
    wide = bgr(synthetic_clip(1, 240, 640, seed=3))[0]
    pan = [np.ascontiguousarray(wide[40:200, 12 * t:12 * t + 240]) for t in range(30)]
    assert cuts(pan) == []


def test_a_brightness_drift_is_not_a_cut():
    frame = bgr(synthetic_clip(1, 90, 160, seed=4))[0].astype(np.float32)
    fading_up = [np.clip(frame * (0.4 + 0.03 * t), 0, 255).astype(np.uint8) for t in range(40)]
    assert cuts(fading_up) == []


def test_first_frame_is_not_a_cut_and_reset_forgets():
    detector = SceneCutDetector()
    a, b = bgr(synthetic_clip(1, 60, 80, seed=1))[0], bgr(synthetic_clip(1, 60, 80, seed=6))[0]
    assert not detector.is_cut(a)
    assert detector.is_cut(b) and detector.last_distance > CUT_DISTANCE
    detector.reset()
    assert not detector.is_cut(a)


def test_16_bit_and_gray_frames_are_accepted():
    frame = bgr(synthetic_clip(1, 60, 80, seed=1))[0]
    detector = SceneCutDetector()
    assert not detector.is_cut(frame.astype(np.uint16) * 257)
    assert not detector.is_cut(frame)  # the same picture at 8 bits
    assert not SceneCutDetector().is_cut(frame[:, :, 1])
