"""Video Depth Anything over a stream of frames: upstream's offline algorithm, with memory that does not grow.

Upstream's `infer_video_depth` reads the whole video, runs windows of 32 frames stepping 22, and then chains
their depth maps. This class gives the same depth for every frame while holding only what the chain needs
next: the inputs of the previous window's keyframe slots (frame 0's among them) with the encoder's outputs
for them, the last 8 aligned depth maps, the 2 reference maps of the alignment, and the frames not yet final.
A 5x longer video costs the same.

The encoder (most of the work) sees each frame alone, so the 10 frames a window takes from the previous one
are not encoded again: their encoder outputs are carried over (`VideoDepthAnything.window`). Per frame of a
long video that is 22/22 of an encoder pass and 32/22 of a decoder pass, instead of 32/22 of both. The cost is
memory: four token maps per carried frame (for vits at 280x476, ~4 MB a frame, 42 MB in all).

The algorithm, per chain of frames (a video, or a scene between two cuts):
- Window 0 is frames 0..31. Window w ≥ 1 puts the previous window's slots KEYFRAMES = [0, 12, 24..31] in its
  slots 0..9 (so slot 0 is always frame 0, slot 1 the previous window's slot 12, slots 2..9 the 8 frames the
  two windows share) and the next 22 frames, 22w+10 .. 22w+31, in slots 10..31. At the end of the stream the
  last window is filled up by repeating the last frame.
- Each window's depth is resized to the frame's size first (bilinear, align_corners=True) and chained there,
  as upstream does: the order matters, since alignment and crossfade do not commute with the resize.
- Relative models: scale and shift of window w are the least-squares fit of its slots 0-1 onto the two
  reference maps: window 0's frame 0, and the aligned slot 12 of window w-1. Metric models keep 1 and 0.
- Slots 2..9 are aligned and crossfaded linearly into the previous window's last 8 aligned maps (weights 0,
  1/7, ..., 1 on the new window); negative values are clamped to 0.
So a frame is final once the window after the one that introduced it has run, when it lies in the overlap;
the writer runs at most 31 frames behind the input (frame 0 waits for frame 31; frame 22w+2 for 22w+31).

Scene cuts: a frame marked `cut` finishes the current chain as the end of the stream would, and starts a new
chain of which it is frame 0; nothing is aligned across a cut (upstream anchors every window to frame 0 of
the whole video).

Sizing: frames come prepared by `prep.model_size`/`prep.to_model_input`, our even-grid rule (multiples of 28).
Upstream VDA uses DA-V2's multiples of 14 and one more step: when the long/short aspect ratio exceeds 1.78 it
lowers the input size to `round(int(input_size * 1.777 / ratio) / 14) * 14` (to save memory on wide videos).
dav2 does not: a wide video keeps its short side at `--input-size`. That is the one difference; wherever
upstream's grid is already even and the aspect ratio is at most 1.78, sizes and depth equal upstream's.

Precision: float32 is the safe choice for VDA (fp16/bf16 gave black or flickering output upstream, VDA #92 and
#97). Whatever precision the model was prepared in, a window whose depth is not finite is recomputed in
float32, and the model stays in float32 from then on, rather than a black frame being written. Under float16
autocast (float32 weights) that is exactly float32; weights already converted to bf16 can only be widened
back, so their float32 results keep bf16's rounding of the weights.
"""

import warnings
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from dav2_cli.depth import sizing as prep
from dav2_cli.model.compute import HALF_PRECISIONS

WINDOW = 32
STEP = 22
KEYFRAMES = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)
OVERLAP = len(KEYFRAMES)  # slots of a window that come from the previous one
ALIGN_SLOTS = 2  # slots 0-1: fitted onto the reference maps
CROSSFADE = OVERLAP - ALIGN_SLOTS  # slots 2..9: blended into the previous window's last maps
FINAL_SLOTS = range(OVERLAP, WINDOW - CROSSFADE)  # 10..23: final as soon as their window has run
TAIL_SLOTS = range(WINDOW - CROSSFADE, WINDOW)  # 24..31: final after the next window's crossfade
# weight of the new window at each crossfade position: 0, 1/7, ..., 1 (as multiples of 1/7, like upstream's)
CROSSFADE_WEIGHTS = [0.0] + [i * (1.0 / (CROSSFADE - 1)) for i in range(1, CROSSFADE - 1)] + [1.0]


class Frame(Protocol):
    model_input: np.ndarray  # float32 (3, h, w) at the model size, from prep.to_model_input
    cut: bool  # this frame starts a new scene


def fit_scale_shift(prediction: list[np.ndarray], target: list[np.ndarray]) -> tuple[float, float]:
    """Least-squares (s, t) minimising |s·prediction + t - target|² over all pixels; (1, 0) if degenerate.

    Sums in float64: upstream sums in float32, which agrees to float32 rounding on well-posed fits and is less
    reliable on nearly flat maps, where the determinant is a difference of large, close numbers.
    """
    p = np.concatenate([m.ravel() for m in prediction]).astype(np.float64)
    g = np.concatenate([m.ravel() for m in target]).astype(np.float64)
    a00, a01, a11 = float(p @ p), float(p.sum()), float(p.size)
    b0, b1 = float(p @ g), float(g.sum())
    det = a00 * a11 - a01 * a01
    if det == 0:
        return 1.0, 0.0
    return (a11 * b0 - a01 * b1) / det, (a00 * b1 - a01 * b0) / det


def _affine_clamped(depth_hw: np.ndarray, scale: np.float32, shift: np.float32) -> np.ndarray:
    aligned_hw = depth_hw * scale + shift
    np.maximum(aligned_hw, 0, out=aligned_hw)
    return aligned_hw


@dataclass
class _Chain:
    """One chain of windows: a whole video, or one scene of it."""

    metric: bool
    pending: list = field(default_factory=list)  # frames of the next window's new slots
    last_input: np.ndarray | None = None  # the newest frame's input: what the last window is padded with
    keyframe_inputs: list | None = None  # the previous window's inputs at KEYFRAMES
    keyframe_tokens: list | None = None  # and the encoder's outputs for them (VideoDepthAnything.window)
    tail_frames: list = field(default_factory=list)  # the previous window's slots 24..31 (None: padding)
    tail_maps: list = field(default_factory=list)  # their aligned depth, awaiting the crossfade
    reference_maps: list = field(default_factory=list)  # what slots 0-1 of the next window are fitted onto

    def new_slots_needed(self) -> int:
        return WINDOW if self.keyframe_inputs is None else WINDOW - OVERLAP

    def started(self) -> bool:
        return self.last_input is not None

    def window_inputs(self) -> tuple[list, list]:
        """The next window's inputs and frames (None for repeated and carried-over slots), padded to 32; the
        first len(KEYFRAMES) inputs of a later window are carried over (see keyframe_tokens)."""
        new_frames = self.pending[: self.new_slots_needed()]
        del self.pending[: len(new_frames)]
        padding = self.new_slots_needed() - len(new_frames)
        carried = [] if self.keyframe_inputs is None else self.keyframe_inputs
        inputs = carried + [f.model_input for f in new_frames] + [self.last_input] * padding
        frames = [None] * len(carried) + new_frames + [None] * padding
        return inputs, frames

    def chain(self, depth_maps: list[np.ndarray], frames: list, inputs: list, tokens: list) -> list:
        """Align this window's depth (at frame size) to the chain; returns the (frame, depth) now final."""
        done = []
        if self.keyframe_inputs is None:
            aligned = depth_maps
            self.reference_maps = [aligned[0], aligned[KEYFRAMES[1]]]
            final_slots = range(0, WINDOW - CROSSFADE)
        else:
            scale, shift = (1.0, 0.0) if self.metric else fit_scale_shift(depth_maps[:ALIGN_SLOTS],
                                                                          self.reference_maps)
            scale, shift = np.float32(scale), np.float32(shift)  # keep the maps in float32, as upstream's are
            aligned = [None] * ALIGN_SLOTS + [_affine_clamped(m, scale, shift) for m in depth_maps[ALIGN_SLOTS:]]
            for i, (frame, previous_hw, weight) in enumerate(zip(self.tail_frames, self.tail_maps,
                                                                 CROSSFADE_WEIGHTS)):
                blended_hw = previous_hw * (1 - weight) + aligned[ALIGN_SLOTS + i] * weight
                if frame is not None:
                    done.append((frame, blended_hw))
            self.reference_maps = [self.reference_maps[0], aligned[KEYFRAMES[1]]]
            final_slots = FINAL_SLOTS
        done += [(frames[slot], aligned[slot]) for slot in final_slots if frames[slot] is not None]
        self.tail_frames = [frames[slot] for slot in TAIL_SLOTS]
        self.tail_maps = [aligned[slot] for slot in TAIL_SLOTS]
        self.keyframe_inputs = [inputs[slot] for slot in KEYFRAMES]
        self.keyframe_tokens = [stage[list(KEYFRAMES)] for stage in tokens]  # a copy: the window's are let go
        return done

    def held(self) -> tuple[int, int, int]:
        """(frames, model inputs, depth maps) this chain holds on to."""
        frames = len(self.pending) + sum(f is not None for f in self.tail_frames)
        inputs = len(self.pending) + len({id(x) for x in (self.keyframe_inputs or [])} | {id(self.last_input)})
        return frames, inputs, len(self.tail_maps) + len(self.reference_maps)


class TemporalDepth:
    """Streams frames through a Video Depth Anything model; see the module docstring for what it computes.

    `model`: a `VideoDepthAnything` (weights.checkpoint.build_model of a VDA checkpoint), already on its device
    and precision. `image_hw`: the frames' own size, at which depth is returned. `notify`: called with a
    one-line message when a window falls back to float32 (default: a RuntimeWarning).
    """

    def __init__(self, model: torch.nn.Module, *, image_hw: tuple[int, int],
                 notify: Callable[[str], None] | None = None):
        self.model = model
        self.image_hw = tuple(image_hw)
        self.metric = bool(model.config.metric)
        self.notify = notify or (lambda message: warnings.warn(message, RuntimeWarning, stacklevel=3))
        self._chain = _Chain(self.metric)

    def push(self, frames: list) -> list[tuple[object, np.ndarray]]:
        """Consecutive frames (any count); returns the frames whose depth is now final, in order, each with
        float32 HxW depth at `image_hw`."""
        done = []
        for frame in frames:
            if frame.cut and self._chain.started():
                done += self._finish_chain()
            self._chain.pending.append(frame)
            self._chain.last_input = frame.model_input
            if len(self._chain.pending) == self._chain.new_slots_needed():
                done += self._run_window()
        return done

    def finish(self) -> list[tuple[object, np.ndarray]]:
        """End of stream: the rest, in order. The object can then take a new stream."""
        return self._finish_chain()

    def held(self) -> dict:
        """What is held between calls (frames, model inputs, depth maps): bounded whatever the video's length."""
        frames, inputs, maps = self._chain.held()
        return {"frames": frames, "inputs": inputs, "depth_maps": maps}

    def _finish_chain(self) -> list:
        done = []
        # the last window padded by repetition, and one more if the tail still waits on a crossfade with real
        # frames in it (upstream runs a window at every 22nd frame of the video, even one made of padding)
        while self._chain.pending or any(f is not None for f in self._chain.tail_frames):
            done += self._run_window()
        self._chain = _Chain(self.metric)
        return done

    def _run_window(self) -> list:
        carried_tokens = self._chain.keyframe_tokens
        inputs, frames = self._chain.window_inputs()
        depth_maps, tokens = self._infer(inputs, carried_tokens)
        return self._chain.chain(depth_maps, frames, inputs, tokens)

    @torch.inference_mode()
    def _infer(self, inputs: list[np.ndarray], carried_tokens: list | None) -> tuple[list[np.ndarray], list]:
        """Depth at frame size for a window whose first slots' encoder outputs may be known already."""
        device = next(self.model.parameters()).device
        carried = 0 if carried_tokens is None else len(KEYFRAMES)
        new_nchw = torch.from_numpy(np.stack(inputs[carried:])).to(device)
        depth_thw, tokens = self.model.window(new_nchw, carried_tokens)
        if not bool(torch.isfinite(depth_thw).all()):
            if self.model.precision not in HALF_PRECISIONS:
                raise RuntimeError(f"Video Depth Anything gave non-finite depth in {self.model.precision}")
            self.notify(f"dav2: non-finite depth in {self.model.precision}; recomputing in float32 "
                        f"from here on (Video Depth Anything is unreliable in half precision)")
            self.model.back_to_float32()
            # the carried encoder outputs came from the failed precision: the whole window again, from inputs
            depth_thw, tokens = self.model.window(torch.from_numpy(np.stack(inputs)).to(device))
        # resized before chaining, as upstream does (see the module docstring)
        return list(prep.to_image_size(depth_thw, self.image_hw).cpu().numpy()), tokens

