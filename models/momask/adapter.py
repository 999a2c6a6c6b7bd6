"""A retrieval adapter for a frozen MoMask-layout model (issue 15, option b): one zero-initialised
cross-attention block between the masked transformer's encoder and its output head, through which the
motion slots attend to the retrieved motions' base-layer tokens (embedded with the model's own token
embedding and positional encoding, then a projection of the adapter's own). Its output projection starts
at zero, so an untrained adapter leaves the model's logits exactly as they were (as ReMoDiffuse and
ReMoMask start theirs); fine-tuning moves only the adapter.

    adapter = RetrievalAdapter.for_model(model)       # sizes from model.config.masked
    head = attach(model, adapter)                     # model.masked.output_process -> AdaptedHead
    head.memory = adapter.memory(model.masked, [ids_r, ...])   # references' base-layer ids
    model.generate(...)                               # attends to them at every decoding step
    head.memory = None                                # the base model again, exactly
    detach(model)

Saved as adapter.safetensors + adapter.json (sizes) by `save_adapter`; read by `load_adapter`
(safetensors only, every key checked).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ...common.atomic import atomic_write
from ...common.errors import InputError

FORMAT = "motionrag-momask-retrieval-adapter"


class RetrievalAdapter(nn.Module):
    def __init__(self, latent_dim: int, code_dim: int, n_heads: int):
        super().__init__()
        self.sizes = {"latent_dim": latent_dim, "code_dim": code_dim, "n_heads": n_heads}
        self.ref_proj = nn.Linear(code_dim, latent_dim)
        self.norm = nn.LayerNorm(latent_dim)
        self.attn = nn.MultiheadAttention(latent_dim, n_heads, batch_first=True)
        self.out = nn.Linear(latent_dim, latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @classmethod
    def for_model(cls, model) -> "RetrievalAdapter":
        c = model.config.masked
        return cls(c.latent_dim, c.code_dim, c.n_heads)

    def memory(self, masked, reference_ids: list):
        """References' base-layer ids (a list of (M_r,) tensors per sample, or one list for a batch of 1)
        -> (memory (B, M, latent), padding mask (B, M) True at padding)."""
        per_sample = reference_ids if reference_ids and isinstance(reference_ids[0], list) else [reference_ids]
        rows = []
        for refs in per_sample:
            parts = [masked.position_enc(self.ref_proj(masked.token_emb(r.long())[None]))[0] for r in refs]
            rows.append(torch.cat(parts) if parts else torch.zeros(0, self.sizes["latent_dim"]))
        width = max(1, max(len(r) for r in rows))
        mem = torch.zeros(len(rows), width, self.sizes["latent_dim"])
        pad = torch.ones(len(rows), width, dtype=torch.bool)
        for i, r in enumerate(rows):
            mem[i, : len(r)] = r
            pad[i, : len(r)] = False
        pad[:, 0] &= ~pad.all(1)            # a sample with no reference attends to one zero slot (out is 0 at init)
        return mem, pad

    def forward(self, h, memory):
        mem, pad = memory
        if mem.shape[0] != h.shape[0]:      # guidance runs the conditional and unconditional passes as a batch
            reps = h.shape[0] // mem.shape[0]
            mem, pad = mem.repeat(reps, 1, 1), pad.repeat(reps, 1)
        att, _ = self.attn(self.norm(h), mem, mem, key_padding_mask=pad, need_weights=False)
        return h + self.out(att)


class AdaptedHead(nn.Module):
    """The masked transformer's output head with the adapter in front of it (when `memory` is set)."""

    def __init__(self, adapter: RetrievalAdapter, head: nn.Module):
        super().__init__()
        self.adapter = adapter
        self.head = head
        self.memory = None

    def forward(self, h):
        return self.head(h if self.memory is None else self.adapter(h, self.memory))


def attach(model, adapter: RetrievalAdapter) -> AdaptedHead:
    current = model.masked.output_process
    base = current.head if isinstance(current, AdaptedHead) else current
    head = AdaptedHead(adapter, base)
    model.masked.output_process = head
    return head


def detach(model) -> None:
    current = model.masked.output_process
    if isinstance(current, AdaptedHead):
        model.masked.output_process = current.head


def save_adapter(folder: str | os.PathLike, adapter: RetrievalAdapter, record: dict) -> Path:
    from safetensors.torch import save

    folder = Path(folder)
    data = save({k: v.detach().contiguous() for k, v in adapter.state_dict().items()}, metadata={"format": FORMAT})
    with atomic_write(folder / "adapter.safetensors") as f:
        f.write(data)
    with atomic_write(folder / "adapter.json", "w") as f:
        json.dump({"format": FORMAT, **adapter.sizes, **record}, f, indent=1, sort_keys=True)
    return folder


def load_adapter(folder: str | os.PathLike, model) -> RetrievalAdapter:
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / "adapter.json").read_text(encoding="utf-8"))
        state = load_file(str(folder / "adapter.safetensors"))
    except (OSError, ValueError) as exc:
        raise InputError("adapter", f"{folder}: expected adapter.json and adapter.safetensors ({exc})") from None
    if meta.get("format") != FORMAT:
        raise InputError("adapter", f"{folder}: adapter.json has format {meta.get('format')!r}; expected {FORMAT!r}")
    adapter = RetrievalAdapter.for_model(model)
    if adapter.sizes != {k: meta.get(k) for k in adapter.sizes}:
        raise InputError("adapter", f"{folder}: sizes {meta} do not fit the model ({adapter.sizes})")
    want = adapter.state_dict()
    if set(want) != set(state) or any(want[k].shape != state[k].shape for k in want):
        raise InputError("adapter", f"{folder}: keys or shapes differ from a RetrievalAdapter's")
    adapter.load_state_dict(state)
    return adapter.eval()


__all__ = ["RetrievalAdapter", "AdaptedHead", "attach", "detach", "save_adapter", "load_adapter", "FORMAT"]
