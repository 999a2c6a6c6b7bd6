"""Motion tokenizer: a 1D-convolutional residual VQ-VAE over normalised HumanML3D 263-d features.

Encoder: conv, then `down_t` stride-2 convolutions each followed by dilated residual blocks,
then a conv to `code_dim`: T feature rows become T / 2**down_t latent vectors. The residual
quantiser turns each into `num_quantizers` code indices; the decoder mirrors the encoder
with nearest-neighbour upsampling. The normalisation mean/std travel with the weights as
buffers, so a checkpoint decodes to real features on its own.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..motion import humanml3d as h3d
from ..motion.motion import FEATURE_DIM
from .config import TokenizerConfig
from .quantizer import ResidualVQ


class ResBlock(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def _res_stack(width: int, depth: int, growth: int, reverse: bool = False) -> nn.Sequential:
    dilations = [growth ** i for i in range(depth)]
    if reverse:
        dilations = dilations[::-1]
    return nn.Sequential(*[ResBlock(width, d) for d in dilations])


class Encoder(nn.Module):
    def __init__(self, c: TokenizerConfig):
        super().__init__()
        layers = [nn.Conv1d(FEATURE_DIM, c.width, 3, padding=1), nn.ReLU()]
        for _ in range(c.down_t):
            layers += [nn.Conv1d(c.width, c.width, 4, stride=2, padding=1), _res_stack(c.width, c.depth, c.dilation_growth)]
        layers += [nn.Conv1d(c.width, c.code_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):                  # (B, T, 263) -> (B, T / 2**down_t, code_dim)
        return self.net(x.transpose(1, 2)).transpose(1, 2)


class Decoder(nn.Module):
    def __init__(self, c: TokenizerConfig):
        super().__init__()
        layers = [nn.Conv1d(c.code_dim, c.width, 3, padding=1), nn.ReLU()]
        for _ in range(c.down_t):
            layers += [_res_stack(c.width, c.depth, c.dilation_growth, reverse=True),
                       nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(c.width, c.width, 3, padding=1)]
        layers += [nn.Conv1d(c.width, c.width, 3, padding=1), nn.ReLU(), nn.Conv1d(c.width, FEATURE_DIM, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):                  # (B, T', code_dim) -> (B, T' * 2**down_t, 263)
        return self.net(z.transpose(1, 2)).transpose(1, 2)


class MotionTokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantizer = ResidualVQ(config.num_quantizers, config.num_codes, config.code_dim, config.ema_decay,
                                    config.quantize_dropout)
        self.register_buffer("norm_mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("norm_std", torch.ones(FEATURE_DIM))

    @property
    def frames_per_token(self) -> int:
        return 2 ** self.config.down_t

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.norm_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.norm_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - self.norm_mean) / self.norm_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.norm_std + self.norm_mean

    def pad_to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Repeat the last row so the length is a multiple of frames_per_token."""
        extra = (-x.shape[1]) % self.frames_per_token
        if extra:
            x = torch.cat([x, x[:, -1:].expand(-1, extra, -1)], dim=1)
        return x

    def forward(self, x: torch.Tensor) -> dict:
        """Normalised features (B, T, 263), T a multiple of frames_per_token -> reconstruction and losses."""
        if x.shape[1] % self.frames_per_token:
            raise ValueError(f"tokenizer input: {x.shape[1]} rows is not a multiple of {self.frames_per_token}")
        z = self.encoder(x)
        zq, idx, commit = self.quantizer(z)
        recon = self.decoder(zq)
        c = self.config
        rec = F.smooth_l1_loss(recon, x)
        ric = F.l1_loss(recon[..., h3d.RIC], x[..., h3d.RIC])
        loss = rec + c.ric_weight * ric + c.commit_weight * commit
        return {"recon": recon, "indices": idx, "loss": loss, "rec": rec, "ric": ric, "commit": commit}

    @torch.no_grad()
    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation encoder output of normalised features (B, T, 263) (T padded as needed)."""
        return self.encoder(self.pad_to_tokens(x))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features (B, T, 263) -> code indices (B, ceil(T / frames_per_token), Q)."""
        return self.quantizer.encode(self.latents(x))

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, T', Q' <= Q) -> normalised features (B, T' * frames_per_token, 263)."""
        return self.decoder(self.quantizer.decode(indices))

    def code_embeddings(self, indices: torch.Tensor) -> torch.Tensor:
        """Sum of code vectors of the given layers (B, T', Q') -> (B, T', code_dim); -1 = no code."""
        return self.quantizer.decode(indices)
