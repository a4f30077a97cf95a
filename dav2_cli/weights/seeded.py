"""Seeded random weights: a model anyone can make without a download, to try every command and to test them.

Its depth is meaningless. What matters is that every tensor moves off PyTorch's default initialisation (which
leaves the class token, position table and biases at 0, and norms at 1: a layer left there is invisible to a
comparison), and that the map still varies across the image (the last bias is positive, so the final ReLU does
not see only negatives). The same recipe serves `dav2 bench`, `examples/seeded_model.py` and the tests, which load
these tensors into upstream's own model to compare the two.
"""

import torch

from dav2_cli.model import DepthAnythingV2, ModelConfig
from dav2_cli.weights.keys import upstream_key

# upstream's released encoder sizes (DESIGN: width, blocks, reassembly and fusion channels)
ENCODER_CONFIGS = {
    "vits": ModelConfig(width=384, blocks=12, mlp_hidden=1536, swiglu=False, reassembly_channels=(48, 96, 192, 384),
                        fusion_channels=64),
    "vitb": ModelConfig(width=768, blocks=12, mlp_hidden=3072, swiglu=False,
                        reassembly_channels=(96, 192, 384, 768), fusion_channels=128),
    "vitl": ModelConfig(width=1024, blocks=24, mlp_hidden=4096, swiglu=False,
                        reassembly_channels=(256, 512, 1024, 1024), fusion_channels=256),
}

NOISE_SCALE = 0.02
LAST_BIAS = 0.5


def seeded_model(config: ModelConfig = ENCODER_CONFIGS["vits"], seed: int = 0) -> DepthAnythingV2:
    """A float32 model with seeded random weights, the same in every process; the global generator is left alone."""
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init draws from the global generator
        torch.manual_seed(seed)
        model = DepthAnythingV2(config).requires_grad_(False).eval()
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.add_(torch.randn(param.shape, generator=generator) * NOISE_SCALE)
    model.head.out_conv.bias.fill_(LAST_BIAS)
    return model


def seeded_checkpoint(encoder: str = "vits", seed: int = 0) -> dict[str, torch.Tensor]:
    """The seeded weights under upstream's checkpoint keys, as a `.pth` of upstream's would hold them."""
    model = seeded_model(ENCODER_CONFIGS[encoder], seed)
    return {upstream_key(key): value.clone() for key, value in model.state_dict().items()}
