"""Retrieval refiner: the decoded motion plus the retrieved motions, time-aligned, in -> the motion out.

Why it exists: the masked transformer only sees retrieved motions through the tokenizer, and a
tokenizer trained on few clips cannot encode motions it never saw, so a retrieved unseen action
could not reach the output. Here the references reach it in continuous form.

Per frame, a softmax over {decoded motion, reference 1, ..., reference K} (references missing or
absent are masked out) weights both a blend of the normalised features themselves (an identity
path: a reference's pose passes through without being re-encoded) and the corresponding hidden
states, from which a convolutional stack predicts a correction added to the blend. The weights
come from the decoded motion and each reference compared with it, so the refiner can follow a
reference, ignore it, or move between them over time. With no references it only corrects the
decoded motion (RAG off).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...common.errors import InputError
from ..motion import humanml3d as h3d
from ..motion.motion import FEATURE_DIM
from .config import RefinerConfig
from .tokenizer import ResBlock


def align_rows(feats: np.ndarray, rows: int) -> np.ndarray:
    """Linear resampling of (T, D) feature rows to (rows, D): a reference spans the whole output."""
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or len(feats) < 1:
        raise InputError("reference features", f"expected (frames, {FEATURE_DIM}) with at least one row, "
                         f"got shape {feats.shape}")
    if rows < 1:
        raise InputError("rows", f"expected at least 1, got {rows}")
    if len(feats) == rows:
        return feats
    if len(feats) == 1 or rows == 1:
        return np.repeat(feats[len(feats) // 2][None], rows, axis=0)
    src = np.linspace(0.0, len(feats) - 1, rows)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(feats) - 1)
    w = (src - i0)[:, None].astype(np.float32)
    return (1 - w) * feats[i0] + w * feats[i1]


def _stack(width: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(width, 2 ** i) for i in range(depth)])


class RetrievalRefiner(nn.Module):
    def __init__(self, config: RefinerConfig):
        super().__init__()
        w = config.width
        self.config = config
        self.base_in = nn.Conv1d(FEATURE_DIM, w, 3, padding=1)
        self.base_net = _stack(w, config.depth)
        self.ref_in = nn.Conv1d(2 * FEATURE_DIM, w, 3, padding=1)
        self.ref_net = _stack(w, config.depth)
        self.base_score = nn.Conv1d(w, 1, 3, padding=1)
        self.ref_score = nn.Conv1d(w, 1, 3, padding=1)
        self.out_net = _stack(w, config.depth)
        self.out = nn.Conv1d(w, FEATURE_DIM, 3, padding=1)
        # Starts as the plain blend: the correction is learned from zero.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, base: torch.Tensor, refs: torch.Tensor | None = None,
                ref_on: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """base (B, T, 263) normalised decoded features; refs (B, K, T, 263) normalised references
        aligned to T rows (align_rows); ref_on (B, K) bool, False = no reference in that slot.
        Returns (features (B, T, 263), weights (B, 1 + K, T): decoded motion first)."""
        B, T, _ = base.shape
        xb = base.transpose(1, 2)                                     # (B, 263, T)
        hb = self.base_net(self.base_in(xb))                          # (B, W, T)
        scores = [self.base_score(hb)]                                # (B, 1, T)
        if refs is not None and refs.shape[1] > 0:
            K = refs.shape[1]
            if ref_on is None:
                ref_on = torch.ones(B, K, dtype=torch.bool, device=base.device)
            xr = refs.permute(0, 1, 3, 2).reshape(B * K, FEATURE_DIM, T)
            xbk = xb[:, None].expand(B, K, FEATURE_DIM, T).reshape(B * K, FEATURE_DIM, T)
            hr = self.ref_net(self.ref_in(torch.cat([xr, xr - xbk], dim=1)))          # (B*K, W, T)
            hbk = hb[:, None].expand(B, K, -1, T).reshape(B * K, -1, T)
            sr = self.ref_score(F.relu(hr + hbk)).reshape(B, K, T)
            sr = sr.masked_fill(~ref_on[:, :, None], float("-inf"))
            weights = torch.softmax(torch.cat([scores[0], sr], dim=1), dim=1)       # (B, 1 + K, T)
            wr = weights[:, 1:]
            blend = weights[:, :1] * xb + (wr[:, :, None] * xr.reshape(B, K, FEATURE_DIM, T)).sum(1)
            hidden = weights[:, :1] * hb + (wr[:, :, None] * hr.reshape(B, K, -1, T)).sum(1)
        else:
            weights = torch.ones(B, 1, T, device=base.device, dtype=base.dtype)
            blend, hidden = xb, hb
        out = blend + self.out(self.out_net(hidden))
        return out.transpose(1, 2), weights

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        rec = F.smooth_l1_loss(pred, target)
        ric = F.l1_loss(pred[..., h3d.RIC], target[..., h3d.RIC])
        loss = rec + self.config.ric_weight * ric
        return loss, {"loss": loss.item(), "rec": rec.item()}
