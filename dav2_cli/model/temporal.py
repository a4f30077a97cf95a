"""The motion module of Video Depth Anything: self-attention across the frames of a window, per feature pixel.

Each pixel of a decoder feature map attends to the same pixel in every other frame of the window (never to
other pixels), so the module mixes information along time only and leaves space to the convolutions around
it. That is what makes consecutive depth maps agree: the spatial path is DA-V2's, unchanged.

One module is: GroupNorm (per frame) → Linear in → [LayerNorm → temporal attention → residual] x2 → [LayerNorm
→ GEGLU feed-forward → residual] → Linear out → residual onto the module's input. Attention has 8 heads
whatever the width (so vits' 64-channel fusion features get 8-wide heads), and a fixed sinusoidal table adds
each frame's position in the window to the attention's input; the table has 32 rows, the window length the
weights were trained with, so a window can never be longer than 32 frames.

The output projection is zero-initialised in training, making a fresh module an identity; trained weights are
not, and seeded test weights must not be either (tests/golden/).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

TEMPORAL_HEADS = 8
MAX_FRAMES = 32  # rows of the position table in every released checkpoint
FEED_FORWARD_MULT = 4


def sinusoidal_table(frames: int, channels: int) -> torch.Tensor:
    """(1, frames, channels) positions: sin in even channels, cos in odd, wavelengths 2π .. 2π·10000.

    The "Attention is all you need" table, in float32, as the checkpoints store it (they carry the table as a
    buffer, so a loaded model uses the file's values; this one is for models built without a checkpoint).
    """
    position_t1 = torch.arange(frames, dtype=torch.float32)[:, None]
    inv_wavelength = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
    table_1tc = torch.zeros(1, frames, channels)
    table_1tc[0, :, 0::2] = torch.sin(position_t1 * inv_wavelength)
    table_1tc[0, :, 1::2] = torch.cos(position_t1 * inv_wavelength)
    return table_1tc


class TemporalAttention(nn.Module):
    """Multi-head self-attention over the frame axis of (pixels, frames, channels) sequences."""

    def __init__(self, channels: int, heads: int = TEMPORAL_HEADS, max_frames: int = MAX_FRAMES):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(channels, channels, bias=False)
        self.k = nn.Linear(channels, channels, bias=False)
        self.v = nn.Linear(channels, channels, bias=False)
        self.out = nn.Linear(channels, channels)
        self.register_buffer("position_1tc", sinusoidal_table(max_frames, channels))

    def forward(self, sequences_ptc: torch.Tensor) -> torch.Tensor:
        p, t, c = sequences_ptc.shape
        if t > self.position_1tc.shape[1]:
            raise ValueError(f"a window holds at most {self.position_1tc.shape[1]} frames, got {t}")
        # positions go into q, k and v alike (added before the projections), as in training
        placed_ptc = sequences_ptc + self.position_1tc[:, :t].to(sequences_ptc.dtype)
        q_phtd, k_phtd, v_phtd = (proj(placed_ptc).reshape(p, t, self.heads, c // self.heads).transpose(1, 2)
                                  for proj in (self.q, self.k, self.v))
        # the fused kernel equals the explicit softmax(q k^T / sqrt(d)) v to ~1e-7 here (32 keys per query)
        attended_phtd = F.scaled_dot_product_attention(q_phtd, k_phtd, v_phtd)
        return self.out(attended_phtd.transpose(1, 2).reshape(p, t, c))


class GegluFeedForward(nn.Module):
    """Linear to 2x4c, one half gating the other through GELU, Linear back to c."""

    def __init__(self, channels: int, mult: int = FEED_FORWARD_MULT):
        super().__init__()
        self.proj_in = nn.Linear(channels, 2 * mult * channels)
        self.proj_out = nn.Linear(mult * channels, channels)

    def forward(self, tokens_ptc: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj_in(tokens_ptc).chunk(2, dim=-1)
        return self.proj_out(value * F.gelu(gate))


class TemporalModule(nn.Module):
    """Mixes a (B*T, C, H, W) feature map along T; returns the same shape and layout as its input."""

    def __init__(self, channels: int, heads: int = TEMPORAL_HEADS, max_frames: int = MAX_FRAMES,
                 groups: int = 32, attention_blocks: int = 2):
        super().__init__()
        self.norm_in = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(attention_blocks))
        self.attns = nn.ModuleList(TemporalAttention(channels, heads, max_frames) for _ in range(attention_blocks))
        self.ff_norm = nn.LayerNorm(channels)
        self.ff = GegluFeedForward(channels)
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, features_nchw: torch.Tensor, frames: int) -> torch.Tensor:
        """`features_nchw` stacks B clips of `frames` frames each, frame-major within a clip: n = b * frames + t."""
        n, c, h, w = features_nchw.shape
        clips = n // frames
        # GroupNorm normalises each frame on its own; the permute is free for the decoder's channels-last maps
        tokens_nhwc = self.proj_in(self.norm_in(features_nchw).permute(0, 2, 3, 1))
        # one sequence per (clip, pixel): (B*H*W, T, C)
        sequences_ptc = tokens_nhwc.reshape(clips, frames, h * w, c).transpose(1, 2).reshape(clips * h * w, frames, c)
        for norm, attn in zip(self.attn_norms, self.attns):
            sequences_ptc = sequences_ptc + attn(norm(sequences_ptc))
        sequences_ptc = sequences_ptc + self.ff(self.ff_norm(sequences_ptc))
        update_nhwc = self.proj_out(sequences_ptc).reshape(clips, h * w, frames, c).transpose(1, 2).reshape(n, h, w, c)
        # back to (N, C, H, W) as a channels-last view, so the convolutions that follow keep their fast layout
        return features_nchw + update_nhwc.permute(0, 3, 1, 2)
