"""The DINOv2 image encoder (no registers), tapped at four blocks for the DPT decoder.

Two details decide whether the output equals upstream's, so they are spelled out here:
- the 37x37 position-embedding table is resized with bicubic interpolation by the *scale factor*
  (grid + 0.1) / 37, antialias off, in float32, exactly as DINOv2 does; asking for the exact output size instead
  moves the result. At the native 37x37 grid the table is used untouched. The resized table only depends on the
  grid, so it is cached per grid (videos and folders reuse it for every frame).
- each tapped output goes through the final LayerNorm and loses its cls token (DA-V2 ignores the readout).
"""

import torch
import torch.nn.functional as F
from torch import nn

from dav2_cli.model.onednn_linear import LINEAR_FORMS, OneDNNLinear, contents_key

POS_OFFSET = 0.1  # DINOv2's interpolate_offset; it keeps floor() of the scaled size on the intended grid


# Attention forms; all compute softmax(q k^T / sqrt(d)) v and agree to ~1e-6 of the range in float32. Which is
# fastest depends on the CPU generation and precision, so runtime/form_tuning.py chooses per machine.
# - "fused": torch's scaled_dot_product_attention, never materialising the heads x N x N scores;
# - "matmul": upstream's own form, one batched q k^T, softmax and multiply by v over the whole score matrix;
# - "blocked": the same multiplies over blocks of queries, so each block's scores stay in cache.
ATTENTION_FORMS = ("fused", "matmul", "blocked")
FORMS = {"attention": ATTENTION_FORMS, "linear": LINEAR_FORMS}


def check_form(kind: str, form, chosen_for: str = "") -> None:
    if form not in FORMS[kind]:
        raise ValueError(f"{kind} form {form!r}{chosen_for}: expected one of {', '.join(FORMS[kind])}")


# scores per attention block of the "blocked" form: 2 MiB of bf16, a block of ~90 queries for vits at 504x756
BLOCKED_ATTENTION_SCORES = 1 << 20


def query_blocked_attention(q_bhnd: torch.Tensor, k_bhnd: torch.Tensor, v_bhnd: torch.Tensor,
                            score_elements: int = BLOCKED_ATTENTION_SCORES) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v as plain matrix multiplies over blocks of queries, one image at a time.

    Each block's scores (heads x block x N, at most `score_elements`) stay in cache between the two multiplies
    and the softmax, instead of a heads x N x N matrix going through memory three times: in float32 on an AVX2
    CPU that took a layer's attention at 1945 tokens from 135 to 60 ms. Its many small kernels suffer most when
    other processes share the cores (measured on AMX: slower than float32 under load).
    Returns (B, N, heads, d), the layout the output projection reads.
    """
    b, h, n, d = q_bhnd.shape
    block = max(16, score_elements // (h * n))
    q_bhnd = q_bhnd * d ** -0.5  # an exact power of two for the head size 64 of every DA-V2 encoder
    out_bnhd = q_bhnd.new_empty(b, n, h, d)
    for image in range(b):
        # packed once per image, not re-read through qkv's strides by every block
        keys_t_hdn, values_hnd = k_bhnd[image].contiguous().transpose(-2, -1), v_bhnd[image].contiguous()
        for start in range(0, n, block):
            probs_hqn = torch.matmul(q_bhnd[image, :, start:start + block], keys_t_hdn).softmax(dim=-1)
            out_bnhd[image, start:start + block] = torch.matmul(probs_hqn, values_hnd).transpose(0, 1)
    return out_bnhd


def matmul_attention(q_bhnd: torch.Tensor, k_bhnd: torch.Tensor, v_bhnd: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v as two batched matrix multiplies over the whole score matrix.

    On a 2-core Zen 5 with AVX512-BF16 (no AMX) this bf16 form beat the fused kernel (DESIGN.md). The softmax
    runs in place on the scores, so only one heads x N x N matrix is ever alive. Returns (B, N, heads, d).
    """
    d = q_bhnd.shape[-1]
    scores_bhnn = torch.matmul(q_bhnd * d ** -0.5, k_bhnd.transpose(-2, -1))
    probs_bhnn = torch.softmax(scores_bhnn, dim=-1)
    del scores_bhnn
    return torch.matmul(probs_bhnn, v_bhnd).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, form: str = "fused"):
        super().__init__()
        self.heads = heads
        self.form = form
        self.qkv = OneDNNLinear(width, width * 3)
        self.proj = OneDNNLinear(width, width)

    def forward(self, tokens_bnc: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens_bnc.shape
        q_bhnd, k_bhnd, v_bhnd = self.qkv(tokens_bnc).reshape(b, n, 3, self.heads, c // self.heads).permute(
            2, 0, 3, 1, 4)
        if self.form == "blocked":
            out_bnhd = query_blocked_attention(q_bhnd, k_bhnd, v_bhnd)
        elif self.form == "matmul":
            out_bnhd = matmul_attention(q_bhnd, k_bhnd, v_bhnd)
        else:
            out_bnhd = F.scaled_dot_product_attention(q_bhnd, k_bhnd, v_bhnd).transpose(1, 2)
        return self.proj(out_bnhd.reshape(b, n, c))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, form={self.form}"


class Mlp(nn.Module):
    """GELU MLP of vits/vitb/vitl (exact GELU, fused into fc1 where its form allows)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = OneDNNLinear(width, hidden)
        self.fc2 = OneDNNLinear(hidden, width)

    def forward(self, tokens_bnc: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(tokens_bnc, gelu=True))


class SwiGluMlp(nn.Module):
    """SwiGLU MLP of the (unofficial) vitg checkpoints: w12 holds both gate halves side by side."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.w12 = OneDNNLinear(width, 2 * hidden)
        self.w3 = OneDNNLinear(hidden, width)

    def forward(self, tokens_bnc: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(tokens_bnc).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class LayerScale(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def add_to(self, residual_bnc: torch.Tensor, update_bnc: torch.Tensor) -> torch.Tensor:
        """residual + gamma * update in one pass over memory instead of two."""
        return torch.addcmul(residual_bnc, update_bnc, self.gamma)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_hidden: int, swiglu: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.ls1 = LayerScale(width)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = SwiGluMlp(width, mlp_hidden) if swiglu else Mlp(width, mlp_hidden)
        self.ls2 = LayerScale(width)

    def forward(self, tokens_bnc: torch.Tensor) -> torch.Tensor:
        tokens_bnc = self.ls1.add_to(tokens_bnc, self.attn(self.norm1(tokens_bnc)))
        return self.ls2.add_to(tokens_bnc, self.mlp(self.norm2(tokens_bnc)))


class ImageEncoder(nn.Module):
    def __init__(self, width: int, heads: int, blocks: int, mlp_hidden: int, swiglu: bool,
                 taps: tuple[int, ...], table_grid: int = 37, out_norm_eps: float = 1e-6):
        super().__init__()
        self.taps = tuple(taps)
        self.table_grid = table_grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + table_grid * table_grid, width))
        self.blocks = nn.ModuleList(Block(width, heads, mlp_hidden, swiglu) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(width, eps=out_norm_eps)
        self._pos_cache: dict = {}
        # kind of form ("attention", "linear") -> function (block, grid_hw) -> form, called once per new grid: the
        # fastest form depends on the token count, so the runtime times the candidates on the machine. A kind with no
        # chooser keeps the form it was set to.
        self._choosers: dict = {}
        self._chosen: dict = {}  # (kind, grid_hw) -> form

    @property
    def attention_form(self) -> str:
        return self.blocks[0].attn.form

    @property
    def linear_form(self) -> str:
        return self.blocks[0].attn.qkv.form

    def set_attention_form(self, form) -> None:
        """Every block's attention computed in `form`: one of ATTENTION_FORMS (same values, different speed), or a
        function (block, grid_hw) -> one of them, called once per new grid before that grid's first forward."""
        self._set_form("attention", form)

    def set_linear_form(self, form) -> None:
        """Every block's Linear layers computed in `form`, one of LINEAR_FORMS (model/onednn_linear.py), or a
        chooser as for set_attention_form."""
        self._set_form("linear", form)

    def _set_form(self, kind: str, form) -> None:
        self._chosen = {key: chosen for key, chosen in self._chosen.items() if key[0] != kind}
        if callable(form):
            self._choosers[kind] = form
            return
        self._choosers.pop(kind, None)
        self._apply_form(kind, form)

    def _apply_form(self, kind: str, form: str, chosen_for: str = "") -> None:
        check_form(kind, form, chosen_for)
        for block in self.blocks:
            if kind == "attention":
                block.attn.form = form
                continue
            for layer in block.modules():
                if isinstance(layer, OneDNNLinear):
                    layer.set_form(form)

    def _settle_forms(self, grid_hw: tuple[int, int]) -> None:
        for kind, choose in self._choosers.items():
            form = self._chosen.get((kind, grid_hw))
            if form is None:
                form = self._chosen[(kind, grid_hw)] = choose(self.blocks[0], grid_hw)
            self._apply_form(kind, form, f" chosen for grid {grid_hw}")

    def position_embedding(self, grid_hw: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        table = self.pos_embed
        # keyed on the parameter's contents too, so loading new weights can never reuse a stale table
        key = (grid_hw, dtype, contents_key(table))
        cached = self._pos_cache.get(key)
        if cached is not None:
            return cached
        if grid_hw == (self.table_grid, self.table_grid):
            pos_1nc = table
        else:
            table_f32 = table.float()
            g = self.table_grid
            patch_1chw = table_f32[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
            scale_hw = ((grid_hw[0] + POS_OFFSET) / g, (grid_hw[1] + POS_OFFSET) / g)
            patch_1chw = F.interpolate(patch_1chw, scale_factor=scale_hw, mode="bicubic", antialias=False)
            patch_1nc = patch_1chw.permute(0, 2, 3, 1).reshape(1, grid_hw[0] * grid_hw[1], -1)
            pos_1nc = torch.cat((table_f32[:, :1], patch_1nc), dim=1)
        pos_1nc = pos_1nc.detach().to(dtype)
        self._pos_cache = {key: pos_1nc}  # one grid at a time: a folder of mixed sizes must not grow memory
        return pos_1nc

    def forward(self, patch_tokens_bnc: torch.Tensor, grid_hw: tuple[int, int],
                position_1nc: torch.Tensor | None = None) -> list[torch.Tensor]:
        """`position_1nc`: `position_embedding(grid_hw, ...)` computed by the caller (see DepthAnythingV2)."""
        # the residual stream keeps the parameters' dtype: float32 under float16 autocast, where DINOv2's large
        # residual activations would otherwise approach float16's limit
        if self._choosers and not torch.jit.is_tracing():  # a trace (OpenVINO's) records the forms as set
            self._settle_forms(grid_hw)
        stream_dtype = self.pos_embed.dtype
        cls_b1c = self.cls_token.expand(patch_tokens_bnc.shape[0], -1, -1)
        tokens_bnc = torch.cat((cls_b1c, patch_tokens_bnc.to(stream_dtype)), dim=1)
        if position_1nc is None:
            position_1nc = self.position_embedding(grid_hw, stream_dtype)
        tokens_bnc = tokens_bnc + position_1nc.to(stream_dtype)
        stage_outputs = []
        for index, block in enumerate(self.blocks[: self.taps[-1] + 1]):
            tokens_bnc = block(tokens_bnc)
            if index in self.taps:
                stage_outputs.append(self.out_norm(tokens_bnc)[:, 1:])
        return stage_outputs
