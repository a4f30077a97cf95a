"""Depth Anything 3's own network (the `depth-anything-3` package) with seeded weights, written as DA3's folders.

The package's model code imports only torch, numpy, einops, omegaconf and addict (its heavy extras, open3d,
pycolmap, moviepy, evo and gsplat, are imported by other features), so the network is built from its own
registry and config, as its API does, and no stand-ins are needed. Its config takes the encoder's size as data:
the tests build the DA3-Large recipe at ViT-S sizes (same code paths, a fraction of the time), and every
parameter is moved off its initialisation so that no layer is invisible to a comparison.
"""

import json
from pathlib import Path

import pytest
import torch

VITS_SIZES = ["net.name=vits", "net.out_layers=[2,5,8,11]", "head.dim_in=384", "head.features=64",
              "head.out_channels=[48,96,192,384]"]
NETWORKS = {False: "da3mono-large", True: "da3metric-large"}


def da3_network(metric: bool = False, seed: int = 0):
    """The package's DepthAnything3Net for DA3 mono or metric at ViT-S sizes, every parameter perturbed."""
    pytest.importorskip("depth_anything_3", reason="pip install --no-deps depth-anything-3==0.1.1")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # omegaconf's deprecation note on the package's resolver
        from depth_anything_3.cfg import create_object, load_config
        from depth_anything_3.registry import MODEL_REGISTRY

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = create_object(load_config(MODEL_REGISTRY[NETWORKS[metric]], argv=VITS_SIZES)).eval()
    with torch.no_grad():
        for name, param in network.named_parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.02)
        network.head.scratch.output_conv2[2].bias.fill_(0.5)
    return network.requires_grad_(False)


def make_some_sky(network, image_bchw: torch.Tensor) -> None:
    """Move the sky head's last bias so that between about 5% and 20% of each image's pixels are sky on
    `image_bchw`, with the threshold in the widest gap between scores there: the sky rule is only tested where an
    image has both kinds of pixel, and no pixel may sit within rounding of the threshold (where backends could
    disagree on it)."""
    bias = network.head.scratch.sky_output_conv2[2].bias
    with torch.no_grad():
        bias.fill_(100.0)  # far above zero: the ReLU passes everything, so the scores are the logits + 100
        _, sky = reference_depth_and_sky(network, image_bchw)
        logits = (sky.flatten(1) - 100.0).double()
        low = float(torch.quantile(logits, 0.80, dim=1).max())
        high = float(torch.quantile(logits, 0.95, dim=1).min())
        between = torch.sort(logits[(logits >= low) & (logits <= high)]).values
        widest = int(torch.argmax(between[1:] - between[:-1]))
        bias.fill_(0.3 - float(between[widest] + between[widest + 1]) / 2)


def reference_depth_and_sky(network, image_bchw: torch.Tensor):
    """The package's depth and sky score for a batch, from its backbone and DPT head (before its sky fill)."""
    with torch.no_grad():
        feats, _ = network.backbone(image_bchw[:, None])
        out = network.head(feats, image_bchw.shape[-2], image_bchw.shape[-1], patch_start_idx=0)
    return out["depth"][:, 0], out["sky"][:, 0]


def write_da3_folder(network, folder: Path, metric: bool = False) -> Path:
    """`network`'s tensors as DA3's HuggingFace folders hold them: model.safetensors (keys under `model.`) and
    config.json naming the network."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{key}": value.detach().contiguous().clone() for key, value in network.state_dict().items()}
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_name": NETWORKS[metric]}))
    return folder
