"""Token transformers: the retrieval-conditioned masked transformer (base quantiser layer) and the
residual-layer transformer (layers 1..Q-1), MoMask / ReMoMask style.

Masked transformer, per layer (pre-LayerNorm):
    x = x + SelfAttn([text token; motion tokens])        text = projected MiniLM embedding, or a
                                                         learned null token when text is off
    x = x + gate * CrossAttn(x, retrieval memory)        the fusion attention: motion tokens query
                                                         the retrieved motions' tokens; gate = 0
                                                         when retrieval is off
    x = x + FFN(x)
The retrieval memory is the tokenizer encoder's latents of every retrieved motion (frozen),
projected, given time positions, and passed through `retrieval_layers` self-attention layers.
The cross-attention output projection starts at zero, as ReMoDiffuse / ReMoMask zero-initialise
the retrieval value projection, so training starts from a plain text-conditioned MoMask.

Residual transformer: input = sum of the code vectors of layers < q, projected, plus an
embedding of q; text token prepended; one output head per layer q; predicts every token of
layer q in one pass. Text only (no retrieval), as in MoMask / ReMoMask.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class FeedForward(nn.Module):
    def __init__(self, dim: int, ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, dim))

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ff: int, dropout: float, cross: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross = cross
        if cross:
            self.norm_x = nn.LayerNorm(dim)
            self.norm_mem = nn.LayerNorm(dim)
            self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
            nn.init.zeros_(self.cross_attn.out_proj.weight)
            nn.init.zeros_(self.cross_attn.out_proj.bias)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mem=None, mem_pad=None, gate=None):
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, h, need_weights=False)[0])
        if self.cross and mem is not None:
            m = self.norm_mem(mem)
            y = self.cross_attn(self.norm_x(x), m, m, key_padding_mask=mem_pad, need_weights=False)[0]
            x = x + self.drop(y) * gate
        return x + self.drop(self.ff(self.norm2(x)))


def combine_guidance(uncond, text, text_retr, scale_text: float, scale_retrieval: float):
    """Classifier-free guidance over two conditions, nested:

        u + s_text * (text - u) + s_retr * (text_retr - text)

    s_text = s_retr = 1 gives the fully conditioned logits, 0 and 0 the unconditional ones;
    text_retr None (no retrieved motions) drops the retrieval term."""
    out = uncond + scale_text * (text - uncond)
    if text_retr is not None:
        out = out + scale_retrieval * (text_retr - text)
    return out


def condition_masks(batch: int, p_text: float, p_retrieval: float, generator: torch.Generator | None = None):
    """(text_on, retrieval_on), two independent Bernoulli draws per sample (bool tensors (B,))."""
    u = torch.rand(batch, 2, generator=generator)
    return u[:, 0] >= p_text, u[:, 1] >= p_retrieval


def mask_tokens(tokens: torch.Tensor, mask_id: int, num_codes: int, generator: torch.Generator | None = None):
    """MoMask training corruption of (B, T) code indices.

    A cosine-scheduled share of each row is chosen (at least one token); of those, 10% become
    a random code, 88% of the rest become [MASK], the remainder stay. Returns (inputs, labels)
    with labels = -100 where nothing was chosen (ignored by the loss)."""
    B, T = tokens.shape
    ratio = torch.cos(0.5 * math.pi * torch.rand(B, generator=generator))
    n_mask = torch.ceil(ratio * T).clamp(1, T).long()
    ranks = torch.rand(B, T, generator=generator).argsort(-1).argsort(-1)
    chosen = ranks < n_mask[:, None]
    u = torch.rand(B, T, generator=generator)
    random_codes = torch.randint(0, num_codes, (B, T), generator=generator)
    inputs = torch.where(chosen & (u < 0.1), random_codes, tokens)
    v = torch.rand(B, T, generator=generator)
    inputs = torch.where(chosen & (u >= 0.1) & (v < 0.88), torch.full_like(tokens, mask_id), inputs)
    labels = torch.where(chosen, tokens, torch.full_like(tokens, -100))
    return inputs, labels


class MaskedTransformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c, t = config.transformer, config.tokenizer
        self.num_codes = t.num_codes
        self.mask_id = t.num_codes
        self.max_tokens = c.max_tokens
        self.max_retrieved_tokens = c.max_retrieved_tokens
        self.token_emb = nn.Embedding(t.num_codes + 1, c.latent)
        self.register_buffer("pos", sinusoid_table(max(c.max_tokens, c.max_retrieved_tokens) + 1, c.latent),
                             persistent=False)
        self.text_proj = nn.Linear(c.text_dim, c.latent)
        self.null_text = nn.Parameter(torch.zeros(c.latent))
        self.retr_in = nn.Linear(t.code_dim, c.latent)
        self.retr_encoder = nn.ModuleList(Block(c.latent, c.heads, c.ff, c.dropout, cross=False)
                                          for _ in range(c.retrieval_layers))
        self.blocks = nn.ModuleList(Block(c.latent, c.heads, c.ff, c.dropout, cross=True) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.latent)
        self.head = nn.Linear(c.latent, t.num_codes)

    def encode_retrieval(self, latents: list[list[torch.Tensor]]):
        """Per sample, a list of retrieved motions' tokenizer latents (T_i, code_dim) ->
        (memory (B, M, latent), padding mask (B, M) True = pad, has_any (B,) bool)."""
        dev = self.retr_in.weight.device
        rows = []
        for motions in latents:
            parts = []
            for z in motions:
                z = z.to(dev)
                if len(z) > self.max_retrieved_tokens:
                    start = (len(z) - self.max_retrieved_tokens) // 2
                    z = z[start:start + self.max_retrieved_tokens]
                parts.append(self.retr_in(z) + self.pos[: len(z)])
            rows.append(torch.cat(parts) if parts else None)
        has_any = torch.tensor([r is not None for r in rows], device=dev)
        M = max([len(r) for r in rows if r is not None] or [1])
        dim = self.retr_in.out_features
        mem = torch.zeros(len(rows), M, dim, device=dev)
        pad = torch.ones(len(rows), M, dtype=torch.bool, device=dev)
        for i, r in enumerate(rows):
            if r is None:
                pad[i, 0] = False   # one zero token keeps attention finite; its output is gated off
            else:
                mem[i, : len(r)] = r
                pad[i, : len(r)] = False
        # The retrieval encoder's self-attention must ignore padding too.
        for block in self.retr_encoder:
            h = block.norm1(mem)
            mem = mem + block.drop(block.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0])
            mem = mem + block.drop(block.ff(block.norm2(mem)))
        return mem, pad, has_any

    def forward(self, tokens, text_emb, text_on, mem=None, mem_pad=None, retr_on=None):
        """tokens (B, T) with [MASK] = num_codes; text_emb (B, text_dim); text_on, retr_on (B,) bool.
        Returns logits (B, T, num_codes)."""
        B, T = tokens.shape
        if T > self.max_tokens:
            raise ValueError(f"tokens: {T} is more than this model's max_tokens {self.max_tokens}")
        text = torch.where(text_on[:, None], self.text_proj(text_emb), self.null_text[None].expand(B, -1))
        x = torch.cat([text[:, None], self.token_emb(tokens) + self.pos[1: T + 1]], dim=1)
        gate = None
        if mem is not None:
            if retr_on is None:
                retr_on = torch.ones(B, dtype=torch.bool, device=x.device)
            gate = retr_on.to(x.dtype)[:, None, None]
        for block in self.blocks:
            x = block(x, mem, mem_pad, gate)
        return self.head(self.norm(x[:, 1:]))

    def guided_logits(self, tokens, text_emb, mem, mem_pad, has_retrieval: bool,
                      scale_text: float, scale_retrieval: float):
        """combine_guidance over the unconditional, text-only and text+retrieval passes of (1, T)
        tokens, run as one batch."""
        n = 3 if has_retrieval else 2
        dev = tokens.device
        toks = tokens.expand(n, -1)
        emb = text_emb.reshape(1, -1).expand(n, -1)
        text_on = torch.tensor([False, True, True][:n], device=dev)
        retr_on = torch.tensor([False, False, True][:n], device=dev)
        if has_retrieval:
            logits = self(toks, emb, text_on, mem.expand(n, -1, -1), mem_pad.expand(n, -1), retr_on)
            return combine_guidance(logits[0:1], logits[1:2], logits[2:3], scale_text, scale_retrieval)
        logits = self(toks, emb, text_on)
        return combine_guidance(logits[0:1], logits[1:2], None, scale_text, scale_retrieval)


class ResidualTransformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c, t = config.transformer, config.tokenizer
        self.num_quantizers = t.num_quantizers
        self.max_tokens = c.max_tokens
        self.code_in = nn.Linear(t.code_dim, c.latent)
        self.layer_emb = nn.Embedding(max(t.num_quantizers, 1), c.latent)
        self.register_buffer("pos", sinusoid_table(c.max_tokens + 1, c.latent), persistent=False)
        self.text_proj = nn.Linear(c.text_dim, c.latent)
        self.null_text = nn.Parameter(torch.zeros(c.latent))
        self.blocks = nn.ModuleList(Block(c.latent, c.heads, c.ff, c.dropout, cross=False)
                                    for _ in range(c.residual_layers))
        self.norm = nn.LayerNorm(c.latent)
        self.heads = nn.ModuleList(nn.Linear(c.latent, t.num_codes) for _ in range(max(t.num_quantizers - 1, 0)))

    def forward(self, code_sum, layer: torch.Tensor, text_emb, text_on):
        """code_sum (B, T, code_dim): sum of codes of layers < layer; layer (B,) in 1..Q-1.
        Returns logits (B, T, num_codes) for each sample's own layer."""
        B, T, _ = code_sum.shape
        if T > self.max_tokens:
            raise ValueError(f"tokens: {T} is more than this model's max_tokens {self.max_tokens}")
        text = torch.where(text_on[:, None], self.text_proj(text_emb), self.null_text[None].expand(B, -1))
        x = self.code_in(code_sum) + self.pos[1: T + 1] + self.layer_emb(layer)[:, None]
        x = torch.cat([text[:, None], x], dim=1)
        for block in self.blocks:
            x = block(x)
        h = self.norm(x[:, 1:])
        out = torch.stack([head(h) for head in self.heads], dim=1)      # (B, Q-1, T, codes)
        return out[torch.arange(B, device=h.device), layer - 1]
