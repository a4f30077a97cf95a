"""dav2's own torch model made ready to run here: on its device, in its precision, in the forms timed fastest."""

import torch

from dav2_cli.runtime.form_tuning import attention_form, linear_form

PRECISIONS = ("float32", "bfloat16", "float16", "int8")
DEVICES = ("cpu", "cuda", "mps")


def prepare_model(model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """A float32 eval-mode model made ready to compute in `precision` on `device` (converted in place)."""
    # the decoder runs channels-last (see model/reassembly.py); conv weights stored that way are not
    # re-laid-out on every call
    model.to(device=device, memory_format=torch.channels_last)
    return model.compute_in(precision, attention_form(device, precision), linear_form(device, precision))
