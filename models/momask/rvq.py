"""MoMask's residual VQ-VAE (the motion tokenizer), inference only, in the released key layout.

Normalised features (B, T, dim_pose) -> 1D conv encoder (T/4 latents) -> Q residual codebooks
(nearest code by squared L2, each layer quantising what the previous ones left) -> token ids
(B, T/4, Q). Decoding sums the Q codes of each step (id -1 = no code) and runs the conv decoder.

Module names are chosen so that `state_dict()` keys equal the released ones
(`encoder.model.2.1.model.0.conv1.weight`, `quantizer.layers.3.codebook`, ...): the nn.Sequential
indices include the parameter-free ReLU / Upsample slots for the same reason.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import RVQConfig


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}[name]()


class _ResBlock(nn.Module):
    """Pre-activation dilated residual block: x + conv1x1(act(conv3(act(x)))) (dropout is training-only)."""

    def __init__(self, width: int, dilation: int, activation: str):
        super().__init__()
        self.act1 = _activation(activation)
        self.conv1 = nn.Conv1d(width, width, 3, 1, dilation, dilation)
        self.act2 = _activation(activation)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x):
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class _ResStack(nn.Module):
    """`depth` blocks with dilations growth**(depth-1), ..., growth, 1 (largest first, in both the
    encoder and the decoder, as the released networks were built)."""

    def __init__(self, width: int, depth: int, growth: int, activation: str):
        super().__init__()
        self.model = nn.Sequential(*[_ResBlock(width, growth ** d, activation) for d in reversed(range(depth))])

    def forward(self, x):
        return self.model(x)


class _Encoder(nn.Module):
    def __init__(self, c: RVQConfig):
        super().__init__()
        layers = [nn.Conv1d(c.dim_pose, c.width, 3, 1, 1), nn.ReLU()]
        for _ in range(c.down_t):
            layers.append(nn.Sequential(nn.Conv1d(c.width, c.width, 2 * c.stride_t, c.stride_t, c.stride_t // 2),
                                        _ResStack(c.width, c.depth, c.dilation_growth_rate, c.activation)))
        layers.append(nn.Conv1d(c.width, c.code_dim, 3, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):            # (B, dim_pose, T) -> (B, code_dim, T / 4)
        return self.model(x)


class _Decoder(nn.Module):
    def __init__(self, c: RVQConfig):
        super().__init__()
        layers = [nn.Conv1d(c.code_dim, c.width, 3, 1, 1), nn.ReLU()]
        for _ in range(c.down_t):
            layers.append(nn.Sequential(_ResStack(c.width, c.depth, c.dilation_growth_rate, c.activation),
                                        nn.Upsample(scale_factor=c.stride_t, mode="nearest"),
                                        nn.Conv1d(c.width, c.width, 3, 1, 1)))
        layers += [nn.Conv1d(c.width, c.width, 3, 1, 1), nn.ReLU(), nn.Conv1d(c.width, c.dim_pose, 3, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, z):            # (B, code_dim, N) -> (B, 4N, dim_pose)
        return self.model(z).transpose(1, 2)


class _Codebook(nn.Module):
    def __init__(self, nb_code: int, code_dim: int):
        super().__init__()
        self.register_buffer("codebook", torch.zeros(nb_code, code_dim))

    def nearest(self, x):
        """Ids of the nearest codes to rows of x (M, D), by |x|^2 - 2 x.c + |c|^2 (the reference's
        expansion, so ties and rounding fall the same way)."""
        c = self.codebook.t()
        dist = x.pow(2).sum(-1, keepdim=True) - 2 * (x @ c) + c.pow(2).sum(0, keepdim=True)
        return (-dist).argmax(-1)


class _ResidualQuantizer(nn.Module):
    def __init__(self, c: RVQConfig):
        super().__init__()
        self.layers = nn.ModuleList(_Codebook(c.nb_code, c.code_dim) for _ in range(c.num_quantizers))

    def encode(self, z):
        """(B, D, N) latents -> (B, N, Q) ids."""
        b, d, n = z.shape
        residual = z.transpose(1, 2).reshape(b * n, d)
        ids = []
        for layer in self.layers:
            idx = layer.nearest(residual)
            residual = residual - layer.codebook[idx]
            ids.append(idx.view(b, n))
        return torch.stack(ids, dim=-1)

    def codes(self, ids):
        """(B, N, q <= Q) ids, -1 = no code -> (B, N, D), the sum of every layer's code."""
        codes = []
        for q in range(ids.shape[-1]):
            idx = ids[..., q]
            codes.append(self.layers[q].codebook[idx.clamp(min=0)].masked_fill((idx < 0).unsqueeze(-1), 0.0))
        return torch.stack(codes).sum(0)


class RVQVAE(nn.Module):
    def __init__(self, config: RVQConfig):
        super().__init__()
        self.config = config
        self.encoder = _Encoder(config)
        self.decoder = _Decoder(config)
        self.quantizer = _ResidualQuantizer(config)

    @torch.no_grad()
    def encode(self, features):
        """Normalised (B, T, dim_pose) -> token ids (B, T / 4, Q)."""
        return self.quantizer.encode(self.encoder(features.transpose(1, 2).float()))

    @torch.no_grad()
    def decode(self, ids):
        """Token ids (B, N, q <= Q), -1 where a layer has no code -> normalised (B, 4N, dim_pose)."""
        return self.decoder(self.quantizer.codes(ids).transpose(1, 2))


__all__ = ["RVQVAE"]
