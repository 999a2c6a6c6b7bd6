"""Fixed sinusoid position table of the released CAMA (interleaved: sin on even, cos on odd channels)."""
from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=8)
def _table(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    channel = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.div(channel, 2, rounding_mode="floor") / dim)
    table = torch.empty(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.to(torch.float32)


def sinusoid_table(length: int, dim: int, *, max_length: int, device=None, dtype=None) -> torch.Tensor:
    """(length, dim); refuses lengths past `max_length`, the table size the weights were trained with."""
    if length > max_length:
        raise ValueError(f"sequence of {length} tokens is longer than the position table ({max_length})")
    return _table(length, dim).to(device=device, dtype=dtype)
