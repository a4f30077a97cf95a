"""Seeded Video Depth Anything weights and synthetic clips, reproducible from this file alone (torch + numpy).

The fidelity goldens (tests/golden/make_vda_golden.py) apply this recipe to upstream's own model and run
upstream's code; the tests apply it to dav2's model and must get the same depth. So the recipe works on
upstream's key names and shapes and depends on nothing but them and the seed:

- every tensor gets its own numpy PCG64 stream, seeded by (seed, crc32 of its upstream key), so neither the
  order of the keys nor the way a model is built changes any value;
- weights (2+ dims): standard normal / sqrt(fan in), fan in = numel / rows, so activations keep their scale
  through all 12 blocks;
- LayerNorm/GroupNorm weights and DINOv2's layer-scale gammas: 1 + 0.1 N(0,1); their biases and every other
  bias: 0.05 N(0,1); cls token and position table: 0.1 N(0,1);
- the last 1x1 conv's bias is 2.0, so the final ReLU leaves ~2% of pixels at 0 instead of half of them;
- the temporal modules' sinusoidal position tables (`pos_encoder.pe`) are not trained parameters and are
  left as each model computes them: that the two tables agree is part of what the goldens check.
Nothing is left at its initial value; in particular the temporal output projections, zero in a fresh upstream
model (which makes the temporal path an identity), get ordinary random weights.
"""

import zlib

import numpy as np
import torch

# upstream's VDA decoder sizes per encoder (its run.py's model_configs)
VDA_CONFIGS = {
    "vits": {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]},
    "vitb": {"encoder": "vitb", "features": 128, "out_channels": [96, 192, 384, 768]},
    "vitl": {"encoder": "vitl", "features": 256, "out_channels": [256, 512, 1024, 1024]},
}
VDA_WIDTH = {"vits": 384, "vitb": 768, "vitl": 1024}
VDA_BLOCKS = {"vits": 12, "vitb": 12, "vitl": 24}
FINAL_BIAS = "head.scratch.output_conv2.2.bias"


def _seeded_tensor(key: str, shape: tuple, seed: int) -> torch.Tensor:
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    noise = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
    leaf = key.rsplit(".", 2)
    module, name = (leaf[-2], leaf[-1]) if len(leaf) > 1 else ("", key)
    if key == FINAL_BIAS:
        return torch.full(shape, 2.0)
    if name in ("cls_token", "pos_embed", "mask_token"):
        return 0.1 * noise
    if ("norm" in module or module.startswith("ls")) and name in ("weight", "gamma"):
        return 1.0 + 0.1 * noise
    if len(shape) <= 1:
        return 0.05 * noise
    fan_in = int(np.prod(shape[1:]))
    return noise / np.sqrt(fan_in)


def seeded_state_dict(template: dict, seed: int) -> dict:
    """`template` (upstream key → tensor, any values) with every trained tensor replaced by the recipe's."""
    return {key: value.clone() if key.endswith(".pos_encoder.pe") else
            _seeded_tensor(key, tuple(value.shape), seed).to(value.dtype)
            for key, value in template.items()}


def vda_config(encoder: str = "vits", *, metric: bool = False):
    """dav2's config for upstream's VDA of this encoder size."""
    from dav2_cli.model import VideoModelConfig

    sizes, width = VDA_CONFIGS[encoder], VDA_WIDTH[encoder]
    return VideoModelConfig(width=width, blocks=VDA_BLOCKS[encoder], mlp_hidden=4 * width, swiglu=False,
                            reassembly_channels=tuple(sizes["out_channels"]), fusion_channels=sizes["features"],
                            metric=metric)


def tiny_vda_config(*, metric: bool = False):
    """A VDA far smaller than any released one (width 64, 32-channel decoder) for fast tests of the algorithm."""
    from dav2_cli.model import VideoModelConfig

    return VideoModelConfig(width=64, blocks=12, mlp_hidden=128, swiglu=False, reassembly_channels=(32,) * 4,
                            fusion_channels=32, metric=metric)


def dav2_upstream_template(encoder_or_config="vits") -> dict:
    """Upstream's VDA key names and shapes, from dav2's model (no reference code): what a .pth file would hold."""
    from dav2_cli.model import VideoDepthAnything
    from dav2_cli.model.temporal import sinusoidal_table
    from dav2_cli.weights.keys import video_upstream_key

    config = vda_config(encoder_or_config) if isinstance(encoder_or_config, str) else encoder_or_config
    with torch.device("meta"):  # names and shapes only
        model = VideoDepthAnything(config)
    # the position tables are dav2's own (the recipe keeps them): the goldens hold upstream's, so they must agree
    return {video_upstream_key(name): sinusoidal_table(*tensor.shape[1:]) if name.endswith("position_1tc")
            else torch.empty(tensor.shape) for name, tensor in model.state_dict().items()}


def seeded_vda_checkpoint(encoder_or_config="vits", seed: int = 0) -> dict:
    """A VDA state dict in upstream's layout, by the recipe above: save it as a .pth and dav2 loads it."""
    return seeded_state_dict(dav2_upstream_template(encoder_or_config), seed)


def seeded_vda_model(config, seed: int = 0):
    """dav2's VideoDepthAnything for `config` holding the recipe's weights (through the checkpoint mapping)."""
    from dav2_cli.weights.checkpoint import Checkpoint, build_model
    from dav2_cli.weights.video_checkpoint import from_video_upstream_layout

    state_dict = from_video_upstream_layout(seeded_vda_checkpoint(config, seed), config, "seeded")
    return build_model(Checkpoint(config, state_dict, f"seeded VDA (seed {seed})"))


def synthetic_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB: three soft blobs drifting over a gradient, with a little noise per frame.

    Pure numpy (no resizing library), so the same seed gives the same pixels everywhere.
    """
    rng = np.random.default_rng(seed)
    y_h1 = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x_1w = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    centres = rng.random((3, 2)).astype(np.float32)
    velocities = (rng.random((3, 2)).astype(np.float32) - 0.5) * 0.04
    colours = rng.random((3, 3)).astype(np.float32)
    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        image = (0.3 * y_h1 + 0.2 * x_1w)[:, :, None] * np.ones(3, dtype=np.float32)
        for (cy, cx), (vy, vx), colour in zip(centres, velocities, colours):
            blob = np.exp(-(((y_h1 - (cy + vy * t) % 1.0) ** 2) + ((x_1w - (cx + vx * t) % 1.0) ** 2)) / 0.03)
            image = image + 0.6 * blob[:, :, None] * colour
        image = image + 0.03 * rng.standard_normal(image.shape).astype(np.float32)
        clip[t] = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return clip
