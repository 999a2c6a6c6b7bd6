"""CAMA, MotionRAG's motion context transformer: from the motion tokens of retrieved reference clips
and the first-frame appearance of every clip, predict the motion tokens of the query image.

Sequence (one block of `tokens_per_clip` tokens per clip, query last):
    block 0   = start block + appearance(clip 0)
    block i   = motion(clip i-1) + appearance(clip i)          for i = 1..K
plus the sinusoid position of every token; block i attends to blocks 0..i (block-causal) and its
output predicts motion(clip i). The query's prediction is the last block.
Parameter names follow motion_transformer.ckpt: `transformer.layers.N.*`, `condition_proj.*`, `sos_token`.
"""
from __future__ import annotations

import torch
from torch import nn

from .configs import PAPER_CAMA, CamaConfig
from .position import sinusoid_table
from .resampler import Resampler


def block_causal_mask(num_blocks: int, block_size: int, device=None) -> torch.Tensor:
    """Boolean (n, n) mask for torch attention: True where attention is NOT allowed."""
    block = torch.arange(num_blocks * block_size, device=device) // block_size
    return block[None, :] > block[:, None]


class MotionContextTransformer(nn.Module):
    def __init__(self, config: CamaConfig = PAPER_CAMA):
        super().__init__()
        self.config = config
        c = config
        self.condition_proj = Resampler(c.appearance)
        layer = nn.TransformerEncoderLayer(c.d_model, c.num_heads, c.dim_feedforward, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=False, bias=True)
        self.transformer = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
        # Never trained upstream (see the notes): a small random start block, replaced when a
        # checkpoint carries one.
        self.sos_token = nn.Parameter(torch.randn(1, c.tokens_per_clip, c.d_model) / c.d_model ** 0.5)

    def forward(self, motion: torch.Tensor, appearance: torch.Tensor, *, last_block_only: bool = False,
                use_appearance: bool = True) -> torch.Tensor:
        """motion: (B, K, L, D) motion tokens of clips 0..K-1 in context order (most similar last);
        appearance: (B, K+1, N, E) appearance features of clips 0..K, the query last.
        Returns (B, K+1, L, D): block i is the prediction for clip i; with `last_block_only`, (B, 1, L, D),
        the last block alone (the same values, computed without the other blocks' last-layer outputs).
        use_appearance=False leaves the appearance condition out (zero): for models trained so."""
        c = self.config
        L, D = c.tokens_per_clip, c.d_model
        if motion.ndim != 4 or tuple(motion.shape[2:]) != (L, D):
            raise ValueError(f"motion must be (batch, clips, {L}, {D}), got {tuple(motion.shape)}")
        if appearance.ndim != 4 or appearance.shape[-1] != c.appearance.embedding_dim:
            raise ValueError(f"appearance must be (batch, clips + 1, tokens, {c.appearance.embedding_dim}), "
                             f"got {tuple(appearance.shape)}")
        B, K = motion.shape[:2]
        if appearance.shape[0] != B or appearance.shape[1] != K + 1:
            raise ValueError(f"appearance must hold {K + 1} clips (the {K} references and the query) for "
                             f"batch {B}, got {tuple(appearance.shape[:2])}")
        if K > c.max_references:
            raise ValueError(f"at most {c.max_references} reference clips fit CAMA's position table, got {K}")
        dtype = self.sos_token.dtype
        device = self.sos_token.device
        n = (K + 1) * L
        x = torch.cat([self.sos_token.expand(B, -1, -1), motion.to(device, dtype).reshape(B, K * L, D)], dim=1)
        x = x + sinusoid_table(n, D, max_length=c.max_sequence, device=device, dtype=dtype)
        if use_appearance:
            cond = self.condition_proj(appearance.reshape(B * (K + 1), *appearance.shape[2:]).to(device))
            cond = cond + sinusoid_table(L, D, max_length=c.appearance_pe_length, device=device, dtype=cond.dtype)
            x = x + cond.reshape(B, n, D)
        mask = block_causal_mask(K + 1, L, device)
        if not last_block_only:
            return self.transformer(x, mask=mask).reshape(B, K + 1, L, D)
        layers = self.transformer.layers
        for layer in layers[:-1]:
            x = layer(x, src_mask=mask)
        return self._last_layer_last_block(layers[-1], x, L)[:, None]

    @staticmethod
    def _last_layer_last_block(layer: nn.TransformerEncoderLayer, x: torch.Tensor, L: int) -> torch.Tensor:
        """The final encoder layer's output for the last L tokens only. Exact: the last block attends to
        every block (no mask applies to its rows), and the post-norm layer is row-wise after attention,
        so the other rows' outputs never enter the last block's. Saves 9/10 of that layer's feed-forward."""
        assert not layer.norm_first, "written for the post-norm layer CAMA uses"
        q = x[:, -L:]
        attn = layer.self_attn(q, x, x, need_weights=False)[0]
        h = layer.norm1(q + layer.dropout1(attn))
        ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(h))))
        return layer.norm2(h + layer.dropout2(ff))

    def predict(self, ref_motion: torch.Tensor, ref_appearance: torch.Tensor, query_appearance: torch.Tensor,
                *, most_similar_first: bool = True, last_block_only: bool = False) -> torch.Tensor:
        """The query's motion tokens (B, L, D).

        ref_motion (B, K, L, D) and ref_appearance (B, K, N, E) are in retrieval order; with
        `most_similar_first` (a search result's order) they are reversed so that the most similar
        reference sits next to the query, as in training. query_appearance: (B, N, E).
        `last_block_only` computes the final layer for the query block alone: the same values up to
        float rounding (the block-causal mask leaves the last block's rows unmasked).
        """
        if ref_motion.shape[:2] != ref_appearance.shape[:2]:
            raise ValueError(f"ref_motion {tuple(ref_motion.shape)} and ref_appearance "
                             f"{tuple(ref_appearance.shape)} disagree on batch or number of references")
        if query_appearance.ndim != 3:
            raise ValueError(f"query_appearance must be (batch, tokens, dim), got {tuple(query_appearance.shape)}")
        if most_similar_first:
            ref_motion, ref_appearance = ref_motion.flip(1), ref_appearance.flip(1)
        appearance = torch.cat([ref_appearance, query_appearance[:, None].to(ref_appearance)], dim=1)
        return self.forward(ref_motion, appearance, last_block_only=last_block_only)[:, -1]


def guidance_motion_tokens(cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
    """Motion tokens for one classifier-free-guidance batch, in diffusers' [uncond, cond] order.

    `uncond` is the motion projector applied to VideoMAE features of an all-zero clip (mid-grey
    after VideoMAE's [-1, 1] -> [0, 1] mapping); MotionRAG does not pass it through CAMA.
    A single uncond row is broadcast to the batch of `cond`.
    """
    if cond.ndim != 3 or uncond.ndim != 3 or cond.shape[1:] != uncond.shape[1:]:
        raise ValueError(f"cond {tuple(cond.shape)} and uncond {tuple(uncond.shape)} must both be "
                         "(batch, tokens, dim) with the same tokens and dim")
    if uncond.shape[0] == 1 and cond.shape[0] > 1:
        uncond = uncond.expand(cond.shape[0], -1, -1)
    if uncond.shape[0] != cond.shape[0]:
        raise ValueError(f"uncond batch {uncond.shape[0]} does not match cond batch {cond.shape[0]}")
    return torch.cat([uncond.to(cond), cond], dim=0)
