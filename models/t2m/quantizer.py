"""Residual vector quantiser with EMA codebooks and dead-code reset (MoMask / T2M-GPT family).

Each layer quantises what the previous layers left over; the decoder sees the sum of the
chosen codes. Codebooks are not trained by gradients but as exponential moving averages of
the encoder vectors assigned to them; a code nobody chose recently (EMA count < 1) is
re-seeded with a random encoder vector of the current batch so no code stays dead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EMAQuantizer(nn.Module):
    def __init__(self, num_codes: int, dim: int, decay: float = 0.99):
        super().__init__()
        self.num_codes, self.dim, self.decay = num_codes, dim, decay
        self.register_buffer("codebook", torch.zeros(num_codes, dim))
        self.register_buffer("code_sum", torch.zeros(num_codes, dim))
        self.register_buffer("code_count", torch.zeros(num_codes))
        self.register_buffer("initialized", torch.zeros(()))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices of (N, dim) vectors."""
        dist = (x.pow(2).sum(-1, keepdim=True) - 2 * x @ self.codebook.t()
                + self.codebook.pow(2).sum(-1)[None])
        return dist.argmin(-1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.codebook)

    @staticmethod
    def _random_rows(x: torch.Tensor, n: int) -> torch.Tensor:
        if len(x) < n:
            reps = (n + len(x) - 1) // len(x)
            x = torch.cat([x + torch.randn_like(x) * (0.01 / max(x.shape[-1], 1) ** 0.5) for _ in range(reps)])
        return x[torch.randperm(len(x), device=x.device)[:n]]

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        rows = self._random_rows(x, self.num_codes)
        self.codebook.copy_(rows)
        self.code_sum.copy_(rows)
        self.code_count.fill_(1.0)
        self.initialized.fill_(1.0)

    @torch.no_grad()
    def _update(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.num_codes).to(x.dtype)
        self.code_sum.mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        self.code_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        alive = (self.code_count >= 1.0).to(x.dtype)[:, None]
        fresh = self._random_rows(x, self.num_codes)
        self.codebook.copy_(alive * self.code_sum / self.code_count.clamp(min=1e-5)[:, None] + (1 - alive) * fresh)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, dim) -> (quantised with straight-through gradient, indices, commitment loss).

        In training the codebook moves after the lookup, so this step's output uses the codes
        as they were (as MoMask does)."""
        if self.training and not bool(self.initialized):
            self._initialize(x.detach())
        idx = self.nearest(x.detach())
        q = self.lookup(idx)
        if self.training:
            self._update(x.detach(), idx)
        commit = F.mse_loss(x, q.detach())
        return x + (q - x).detach(), idx, commit


class ResidualVQ(nn.Module):
    def __init__(self, num_quantizers: int, num_codes: int, dim: int, decay: float = 0.99,
                 quantize_dropout: float = 0.2):
        super().__init__()
        self.layers = nn.ModuleList(EMAQuantizer(num_codes, dim, decay) for _ in range(num_quantizers))
        self.quantize_dropout = quantize_dropout

    @property
    def num_quantizers(self) -> int:
        return len(self.layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, dim) -> (sum of codes (B, T, dim), indices (B, T, Q) with -1 for dropped layers, commit loss)."""
        B, T, D = x.shape
        flat = x.reshape(B * T, D)
        active = self.num_quantizers
        if self.training and self.quantize_dropout > 0 and torch.rand(()) < self.quantize_dropout:
            active = int(torch.randint(1, self.num_quantizers + 1, ()))
        residual = flat
        total = torch.zeros_like(flat)
        indices = torch.full((B * T, self.num_quantizers), -1, dtype=torch.long, device=x.device)
        commit = flat.new_zeros(())
        for q, layer in enumerate(self.layers[:active]):
            quant, idx, loss = layer(residual)
            residual = residual - quant.detach()
            total = total + quant
            indices[:, q] = idx
            commit = commit + loss
        return total.reshape(B, T, D), indices.reshape(B, T, -1), commit / active

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) -> indices (B, T, Q) of every layer, no codebook update."""
        B, T, D = x.shape
        residual = x.reshape(B * T, D)
        out = []
        for layer in self.layers:
            idx = layer.nearest(residual)
            residual = residual - layer.lookup(idx)
            out.append(idx)
        return torch.stack(out, -1).reshape(B, T, -1)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, T, Q') of the first Q' layers (-1 = skip) -> sum of codes (B, T, dim)."""
        total = None
        for q in range(indices.shape[-1]):
            idx = indices[..., q]
            code = self.layers[q].lookup(idx.clamp(min=0)) * (idx >= 0).unsqueeze(-1).to(self.layers[q].codebook.dtype)
            total = code if total is None else total + code
        return total
