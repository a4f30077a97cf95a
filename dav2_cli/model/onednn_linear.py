"""The encoder's Linear layers, able to run through oneDNN with their weights packed once for this CPU.

Why: a plain Linear hands its weight to the matmul library in its stored layout, which the library re-lays out
for its kernels on every call, and runs the MLP's GELU as a second pass over the widest activations. Packed once
into oneDNN's own layout, with GELU fused into fc1's matmul and the bias added inside it, one vits block's four
Linear layers at 1945 tokens (504x756) took 35 instead of 48 ms in float32 and 17.7 instead of 20 ms in bf16 on
a 2-core Zen 4 (AVX512-BF16, no AMX); float32 stays float32 (1.5e-6 of the depth range off the plain form).
Whether it pays depends on the CPU and on what torch's plain matmul uses there, so it is a form the runtime
times per machine ("packed"), like the attention form, and the plain form is what every other path runs.

The packed weight is a copy of the layer's weight in an opaque layout: the parameter itself stays as it is (the
state dict, OpenVINO's conversion and float32 results read it), the copy is made on the first packed call and
made again whenever the weight changes, and it is never saved, copied or traced.
"""

import torch
import torch.nn.functional as F
from torch import nn

LINEAR_FORMS = ("plain", "packed")


def packed_form_available() -> bool:
    """Whether this torch build has the oneDNN kernels the packed form runs on (x86 builds do)."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def contents_key(tensor: torch.Tensor) -> tuple:
    """Changes whenever `tensor`'s values may have: new storage, dtype or device, or an in-place write (tensors
    made under inference_mode carry no version counter, and cannot be written outside it)."""
    return (tensor.data_ptr(), tensor.dtype, tensor.device, None if tensor.is_inference() else tensor._version)


def release_packed_weights(model: nn.Module) -> None:
    """Frees the packed copies of `model`'s weights; a later packed call packs them again."""
    for layer in model.modules():
        if isinstance(layer, OneDNNLinear):
            layer._packed = None


class OneDNNLinear(nn.Linear):
    """nn.Linear (same parameters, same state dict) with an optional GELU after it, computed in `form`: "plain"
    (F.linear, then GELU) or "packed" (oneDNN, weight packed once, GELU fused)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        self.form = "plain"
        self._packed = None  # (contents_key of the weight it was packed from, packed weight)

    def set_form(self, form: str) -> None:
        if form not in LINEAR_FORMS:
            raise ValueError(f"linear form {form!r}: expected one of {', '.join(LINEAR_FORMS)}")
        self.form = form
        if form == "plain":
            self._packed = None  # the copy only costs memory now

    def packed_weight(self) -> torch.Tensor:
        key = contents_key(self.weight)
        if self._packed is None or self._packed[0] != key:
            self._packed = None  # free the stale copy before packing the new one
            self._packed = (key, torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), None))
        return self._packed[1]

    def runs_packed(self, tokens: torch.Tensor) -> bool:
        """Packed for inference only: a trace records the portable form, and where autograd follows the weights
        or the tokens (a caller training or probing the model) the plain form runs, since autograd cannot see
        through the packed kernel."""
        return self.form == "packed" and not torch.jit.is_tracing() and not (torch.is_grad_enabled() and (
            tokens.requires_grad or self.weight.requires_grad or self.bias.requires_grad))

    def forward(self, tokens: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        if self.runs_packed(tokens):
            return torch.ops.mkldnn._linear_pointwise(tokens, self.packed_weight(), self.bias,
                                                      "gelu" if gelu else "none", [], "none" if gelu else "")
        out = F.linear(tokens, self.weight, self.bias)
        return F.gelu(out) if gelu else out

    def __getstate__(self):
        # copy.deepcopy and pickle: the packed copy's opaque layout has no storage to copy; it is packed again
        return {**super().__getstate__(), "_packed": None}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, form={self.form}"
