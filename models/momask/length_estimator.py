"""MoMask's length estimator: CLIP text feature -> logits over motion lengths of 0..49 tokens.

An MLP in the released key layout (`output.{0,4,8,11}` Linears, `output.{1,5,9}` LayerNorms; the
other Sequential slots are LeakyReLU(0.2) and training-only Dropout). MoMask samples the length
from softmax(logits) rather than taking the most likely one; `sample_tokens` does the same.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import CLIP_DIM, LENGTH_CLASSES
from .generate import categorical


class LengthEstimator(nn.Module):
    def __init__(self, input_dim: int = CLIP_DIM, classes: int = LENGTH_CLASSES, hidden: int = 512):
        super().__init__()
        sizes = (input_dim, hidden, hidden // 2, hidden // 4)
        layers: list[nn.Module] = []
        for i in range(3):
            if i:
                layers.append(nn.Dropout(0.2))
            layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.LayerNorm(sizes[i + 1]), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(sizes[3], classes))
        self.output = nn.Sequential(*layers)

    def forward(self, text_embedding):
        return self.output(text_embedding)

    @torch.no_grad()
    def sample_tokens(self, text_embedding, generator: torch.Generator | None = None):
        """(B,) token counts drawn from softmax(logits), consuming the random stream as
        torch.distributions.Categorical(probs).sample() does (one multinomial draw per row)."""
        probs = torch.softmax(self(text_embedding), dim=-1)
        return categorical(probs, generator)


__all__ = ["LengthEstimator"]
