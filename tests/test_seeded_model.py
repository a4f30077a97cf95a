"""The seeded random model that README offers for trying dav2 offline, and that the tests and `dav2 bench` use."""

import subprocess
import sys
from pathlib import Path

import torch

from dav2_cli.model import DepthAnythingV2
from dav2_cli.weights.checkpoint import load_checkpoint
from dav2_cli.weights.keys import upstream_key
from dav2_cli.weights.seeded import ENCODER_CONFIGS, seeded_checkpoint

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seeded_model.py"


def test_every_tensor_moves_off_the_default_initialisation():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        default = {upstream_key(k): v for k, v in DepthAnythingV2(ENCODER_CONFIGS["vits"]).state_dict().items()}
    seeded = seeded_checkpoint("vits", seed=0)
    assert seeded.keys() == default.keys()
    unchanged = [key for key in seeded if torch.equal(seeded[key], default[key])]
    assert not unchanged
    constant = [key for key, value in seeded.items() if value.numel() > 1 and float(value.std()) == 0.0]
    assert not constant


def test_same_weights_in_every_call_and_other_weights_for_another_seed():
    first, again, other = seeded_checkpoint(seed=0), seeded_checkpoint(seed=0), seeded_checkpoint(seed=1)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["pretrained.blocks.0.attn.qkv.weight"], other["pretrained.blocks.0.attn.qkv.weight"])


def test_the_example_writes_a_checkpoint_dav2_loads_and_never_overwrites(tmp_path):
    out = tmp_path / "seeded-random-vits.pth"
    command = [sys.executable, str(EXAMPLE), str(out)]
    env_path = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(command, capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert "meaningless" in done.stdout
    checkpoint = load_checkpoint(out)
    assert not checkpoint.config.metric and checkpoint.config.width == 384
    again = subprocess.run(command, capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": ""})
    assert again.returncode == 2 and "not overwriting" in again.stderr
