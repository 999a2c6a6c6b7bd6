"""MoMask's two transformers, inference only, in the released key layout.

Both are post-norm PyTorch transformer encoders (GELU feed-forward) over a
condition token (the CLIP text feature through `cond_emb`; zeros for the unconditional pass of
classifier-free guidance, so that pass sees only the bias) followed by the motion tokens, to which
the stored sinusoidal `position_enc.pe` is added (the condition token gets none).

- MaskedTransformer: base-layer token ids (codes, `mask_id`, `pad_id`) -> logits over the codes.
- ResidualTransformer: the sum of the codes of layers 0..q-1 (in its own embedding space) plus a
  layer token one_hot(q) -> logits over layer q's codes and `pad_id`. Its embedding and output
  matrices are the three stored tensors rearranged (`share_weight`): layer j's tokens are embedded
  with [token_embed_weight_, embed_proj_shared_weight...][j], layer q is predicted with
  [embed_proj_shared_weight..., output_proj_weight_][q - 1].
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import ResidualConfig, TransformerConfig


class _InputProcess(nn.Module):
    def __init__(self, code_dim: int, latent_dim: int):
        super().__init__()
        self.poseEmbedding = nn.Linear(code_dim, latent_dim)

    def forward(self, x):                       # (B, N, code_dim) -> (B, N, latent)
        return self.poseEmbedding(x)


class _PositionalEncoding(nn.Module):
    def __init__(self, latent_dim: int, max_len: int):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        freq = torch.exp(torch.arange(0, latent_dim, 2).float() * (-math.log(10000.0) / latent_dim))
        pe = torch.zeros(max_len, latent_dim)
        pe[:, 0::2] = torch.sin(position * freq)
        pe[:, 1::2] = torch.cos(position * freq)
        self.register_buffer("pe", pe.unsqueeze(1))   # (max_len, 1, latent); the checkpoint's copy is loaded

    def forward(self, x):                       # (B, N, latent)
        return x + self.pe[: x.shape[1]].transpose(0, 1)


class _OutputHead(nn.Module):
    """dense -> exact GELU -> LayerNorm(eps 1e-12) -> poseFinal."""

    def __init__(self, latent_dim: int, out_dim: int):
        super().__init__()
        self.dense = nn.Linear(latent_dim, latent_dim)
        self.LayerNorm = nn.LayerNorm(latent_dim, eps=1e-12)
        self.poseFinal = nn.Linear(latent_dim, out_dim)

    def forward(self, h):
        return self.poseFinal(self.LayerNorm(F.gelu(self.dense(h))))


class _Body(nn.Module):
    """What both transformers share: input projection, positional encoding, encoder, text embedding."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.config = c
        self.input_process = _InputProcess(c.code_dim, c.latent_dim)
        self.position_enc = _PositionalEncoding(c.latent_dim, c.max_len)
        # batch_first changes no parameter; in eval mode it lets PyTorch use its fused encoder-layer
        # kernel (1.5x faster on a CPU than the reference's sequence-first layout; same maths)
        layer = nn.TransformerEncoderLayer(d_model=c.latent_dim, nhead=c.n_heads, dim_feedforward=c.ff_size,
                                           dropout=c.dropout, activation="gelu", batch_first=True)
        self.seqTransEncoder = nn.TransformerEncoder(layer, num_layers=c.n_layers, enable_nested_tensor=False)
        self.cond_emb = nn.Linear(c.clip_dim, c.latent_dim)

    def _encode(self, prefix: list, codes, padding_mask):
        """Run the encoder over [prefix tokens (B, 1, latent)..., motion]; the motion part of its output,
        (B, N, latent)."""
        x = self.position_enc(self.input_process(codes))
        seq = torch.cat([*prefix, x], dim=1)
        keep = torch.zeros(padding_mask.shape[0], len(prefix), dtype=torch.bool, device=padding_mask.device)
        out = self.seqTransEncoder(seq, src_key_padding_mask=torch.cat([keep, padding_mask], dim=1))
        return out[:, len(prefix):]


class MaskedTransformer(_Body):
    def __init__(self, c: TransformerConfig):
        super().__init__(c)
        self.mask_id = c.num_tokens
        self.pad_id = c.num_tokens + 1
        self.output_process = _OutputHead(c.latent_dim, c.num_tokens)
        self.token_emb = nn.Embedding(c.num_tokens + 2, c.code_dim)

    def forward(self, ids, cond, padding_mask):
        """ids (B, N) (codes, mask_id or pad_id), cond (B, clip_dim) (zeros = unconditional),
        padding_mask (B, N) True at padding -> logits (B, N, num_tokens)."""
        h = self._encode([self.cond_emb(cond).unsqueeze(1)], self.token_emb(ids), padding_mask)
        return self.output_process(h)


class ResidualTransformer(_Body):
    def __init__(self, c: ResidualConfig):
        super().__init__(c)
        self.pad_id = c.num_tokens
        rows = c.num_tokens + 1
        self.quant_emb = nn.Linear(c.num_quantizers, c.latent_dim)
        self.output_process = _OutputHead(c.latent_dim, c.code_dim)
        self.embed_proj_shared_weight = nn.Parameter(torch.zeros(c.num_quantizers - 2, rows, c.code_dim))
        self.token_embed_weight_ = nn.Parameter(torch.zeros(1, rows, c.code_dim))
        self.output_proj_weight_ = nn.Parameter(torch.zeros(1, rows, c.code_dim))

    def token_embedding(self, layer: int):
        """(num_tokens + 1, code_dim): how the ids of quantizer layer `layer` (0..Q-2) are embedded."""
        return self.token_embed_weight_[0] if layer == 0 else self.embed_proj_shared_weight[layer - 1]

    def output_projection(self, q: int):
        """(num_tokens + 1, code_dim): the classifier of quantizer layer q (1..Q-1)."""
        return self.output_proj_weight_[0] if q == self.config.num_quantizers - 1 \
            else self.embed_proj_shared_weight[q - 1]

    def forward(self, history, q: int, cond, padding_mask):
        """history (B, N, code_dim): summed embeddings of layers 0..q-1; q in 1..Q-1 -> logits
        (B, N, num_tokens + 1) for layer q."""
        b = history.shape[0]
        onehot = F.one_hot(torch.full((b,), q, dtype=torch.long, device=history.device),
                           self.config.num_quantizers).float()
        h = self._encode([self.cond_emb(cond).unsqueeze(1), self.quant_emb(onehot).unsqueeze(1)], history,
                         padding_mask)
        return self.output_process(h) @ self.output_projection(q).t()


__all__ = ["MaskedTransformer", "ResidualTransformer"]
