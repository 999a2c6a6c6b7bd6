"""The perceiver resampler used twice by MotionRAG: the motion projector (VideoMAE tokens -> motion
tokens, motion_proj.ckpt) and CAMA's appearance projector (DINOv2 tokens -> appearance tokens).

Parameter names follow the released checkpoints: `latents`, `proj_in`, `proj_out`, `norm_out`,
`layers.N.0.*` (attention) and `layers.N.1.{0,1,3}` (LayerNorm, Linear, GELU, Linear).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import ResamplerConfig


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        latents = self.norm2(latents)
        # the latents read the input and themselves
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(self._split(self.to_q(latents)), self._split(k), self._split(v))
        b, _, n, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class Resampler(nn.Module):
    """(B, N, embedding_dim) -> (B, num_queries, output_dim)."""

    def __init__(self, config: ResamplerConfig):
        super().__init__()
        self.config = config
        c = config
        self.latents = nn.Parameter(torch.randn(1, c.num_queries, c.dim) / c.dim ** 0.5)
        self.proj_in = nn.Linear(c.embedding_dim, c.dim)
        self.proj_out = nn.Linear(c.dim, c.output_dim)
        self.norm_out = nn.LayerNorm(c.output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(c.dim, c.dim_head, c.heads), _feed_forward(c.dim, c.ff_mult)])
            for _ in range(c.depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.config.embedding_dim:
            raise ValueError(f"Resampler input must be (batch, tokens, {self.config.embedding_dim}), "
                             f"got {tuple(x.shape)}")
        x = self.proj_in(x.to(self.proj_in.weight.dtype))
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))
