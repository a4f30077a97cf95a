"""The attention and Linear forms the encoder runs in on this CPU: measured, not guessed, and cached.

Attention form (model/image_encoder.py) for bf16 on a CPU with native bf16: the fastest form differs between CPU
generations that share the same flags: torch's fused kernel won on AMX (5.02x upstream against 3.18x for blocked
multiplies) and on an AVX512-BF16 Zen 4, while plain matmul + softmax beat it on a Zen 5 (0.52 vs 0.63 s). So,
like cuDNN's benchmark mode, `tuned_attention_form` times the fused and matmul forms on one encoder block's
attention at the first grid of each size bucket the model runs (size_buckets.py; ~0.2-0.7 s for vits at 504,
~3 s at 1008, on an AMX Xeon), once per machine, torch version, thread count, block and bucket, and keeps the
answer in the tuning cache. The fused form is kept unless the other is clearly faster, because it holds
up best when other processes share the cores. The blocked form is never a candidate: its many small kernels
collapsed under load (AMX: 5336 ms against float32's 4270 with a busy process per core; Zen 4: slower than float32
even quiet), and a one-off timing on a quiet machine could not see that. Every other precision keeps the fused
kernel: in float32 it beat both other forms on AVX2 (1.31 vs 1.49 s).

Linear form (model/onednn_linear.py) for float32, and for bf16 on CPUs with native bf16: measured the same way,
once per bucket. oneDNN with weights packed once and GELU fused into fc1 ran a vits block's Linear layers ~1.35x
faster in float32 and ~1.15x in bf16 on a Zen 4, but which matmul library wins differs by CPU, so
`tuned_linear_form` times one block's Linear layers both ways on up to LINEAR_TIMING_TOKENS tokens (~0.05-0.15 s for
vits) and keeps the faster.
Both forms give float32's depth to ~1e-6 of the range.
"""

import time

import torch

from dav2_cli.model.config import HEAD_DIM
from dav2_cli.model.onednn_linear import LINEAR_FORMS, OneDNNLinear, packed_form_available
from dav2_cli.runtime import device as devices
from dav2_cli.runtime import memory, size_buckets, tuning_cache

# attention forms timed for bf16 on native-bf16 CPUs, the first being the one kept unless another is clearly faster
TUNED_FORMS = ("fused", "matmul")
CLEARLY_FASTER = 0.9  # another form must take under 90% of the fused form's time
TUNING_RUNS = 3
# rows of tokens the Linear forms are timed on: a block's Linear layers take ~0.1 s per form at vitl's width in
# float32 at this size, and the packed form's gain at 512 rows was that at 1945 (vits: 0.77 vs 0.70 of the plain
# time in float32, 0.89 vs 0.86 in bf16, Zen 4), so one timing serves every grid at least that large
LINEAR_TIMING_TOKENS = 512


def attention_form(device: torch.device, precision: str):
    """The attention form for `precision` on `device`: a fixed form, or `tuned_attention_form`, which the model
    calls once per grid."""
    if device.type == "cpu" and precision == "bfloat16" and devices.cpu_has_native_bf16():
        return tuned_attention_form
    return "fused"


def linear_form(device: torch.device, precision: str):
    """The form of the encoder's Linear layers for `precision` on `device`: `tuned_linear_form` where the packed
    form can run (float32, and bf16 on CPUs with native bf16, in a torch built with oneDNN), else plain."""
    if device.type == "cpu" and packed_form_available() and (
            precision == "float32" or (precision == "bfloat16" and devices.cpu_has_native_bf16())):
        return tuned_linear_form
    return "plain"


def _dtype_name(block: torch.nn.Module) -> str:
    return str(block.attn.qkv.weight.dtype).removeprefix("torch.")


def attention_key(block: torch.nn.Module, grid_hw: tuple[int, int]) -> str:
    return tuning_cache.cache_key("attention form", width=block.attn.qkv.in_features, heads=block.attn.heads,
                                  dtype=_dtype_name(block), bucket=size_buckets.of_grid(grid_hw))


def linear_timing_rows(grid_hw: tuple[int, int]) -> int:
    return min(1 + grid_hw[0] * grid_hw[1], LINEAR_TIMING_TOKENS)


def linear_key(block: torch.nn.Module, grid_hw: tuple[int, int]) -> str:
    return tuning_cache.cache_key("linear form", width=block.attn.qkv.in_features, mlp=type(block.mlp).__name__,
                                  dtype=_dtype_name(block), bucket=size_buckets.of_grid(grid_hw))


def time_interleaved(run, forms, runs: int) -> dict:
    """Best seconds of `run(form)` for each form: one untimed warm-up each (first calls allocate, pick kernels and
    pack weights), then `runs` rounds with the forms interleaved, so a slow spell hits them all alike. A form whose
    warm-up raises RuntimeError (kernels that refuse this CPU or dtype) is not timed: it takes forever."""
    best, runnable = {form: float("inf") for form in forms}, []
    for form in forms:
        try:
            run(form)
            runnable.append(form)
        except RuntimeError:
            pass
    for _ in range(runs):
        for form in runnable:
            began = time.perf_counter()
            run(form)
            best[form] = min(best[form], time.perf_counter() - began)
    return best


def timing_tokens(block: torch.nn.Module, rows: int) -> torch.Tensor:
    """`rows` seeded tokens of `block`'s width and dtype, for timing its parts."""
    width, dtype = block.attn.qkv.in_features, block.attn.qkv.weight.dtype
    return torch.randn(1, rows, width, generator=torch.Generator().manual_seed(0)).to(dtype)


@torch.inference_mode()
def time_attention_forms(block: torch.nn.Module, grid_hw: tuple[int, int], forms=TUNED_FORMS,
                         runs: int = TUNING_RUNS) -> dict:
    """Best seconds of one block's attention in each form on tokens of `grid_hw`, the forms interleaved."""
    attn, tokens_bnc = block.attn, timing_tokens(block, 1 + grid_hw[0] * grid_hw[1])

    def run(form):
        attn.form = form
        attn(tokens_bnc)

    kept = attn.form
    try:
        return time_interleaved(run, forms, runs)
    finally:
        attn.form = kept


def pick_attention_form(seconds: dict) -> str:
    fused = seconds["fused"]
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[fastest] < CLEARLY_FASTER * fused else "fused"


def tuned_attention_form(block: torch.nn.Module, grid_hw: tuple[int, int]) -> str:
    """The fastest attention form for `block` at `grid_hw`'s size bucket on this machine: from the cache, else
    timed now at `grid_hw`; the fused form, untimed, where the matmul form's scores would not fit easily in memory
    at `grid_hw` (memory.py)."""
    if not memory.matmul_attention_fits(block.attn.qkv.in_features // HEAD_DIM, grid_hw[0] * grid_hw[1]):
        return "fused"
    return tuning_cache.cached_choice(attention_key(block, grid_hw), TUNED_FORMS,
                                      lambda: pick_attention_form(time_attention_forms(block, grid_hw)))


@torch.inference_mode()
def time_linear_forms(block: torch.nn.Module, grid_hw: tuple[int, int], forms=LINEAR_FORMS,
                      runs: int = TUNING_RUNS) -> dict:
    """Best seconds of one block's Linear layers (qkv, proj and the MLP) in each form, on the tokens of `grid_hw`
    up to LINEAR_TIMING_TOKENS rows, the forms interleaved."""
    layers = [layer for layer in block.modules() if isinstance(layer, OneDNNLinear)]
    tokens_bnc = timing_tokens(block, linear_timing_rows(grid_hw))

    def run(form):
        for layer in layers:
            layer.form = form  # not set_form: switching to plain would drop the packed weights each time
        block.attn.qkv(tokens_bnc)
        block.attn.proj(tokens_bnc)
        block.mlp(tokens_bnc)

    kept = [layer.form for layer in layers]
    try:
        return time_interleaved(run, forms, runs)
    finally:
        for layer, form in zip(layers, kept):
            layer.set_form(form)


def pick_linear_form(seconds: dict) -> str:
    return "packed" if seconds["packed"] < seconds["plain"] else "plain"


def tuned_linear_form(block: torch.nn.Module, grid_hw: tuple[int, int]) -> str:
    """The faster Linear form for `block` at `grid_hw`'s size bucket on this machine: from the cache, else timed
    now at `grid_hw`."""
    return tuning_cache.cached_choice(linear_key(block, grid_hw), LINEAR_FORMS,
                                      lambda: pick_linear_form(time_linear_forms(block, grid_hw)))
