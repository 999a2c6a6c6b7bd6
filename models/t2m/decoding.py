"""Sampling helpers, MoMask's confidence-based iterative decoding of masked tokens, and the retrieval
token prior (the references' own codes as a bias on the logits)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from ...common.errors import InputError


def top_k_filter(logits: torch.Tensor, thres: float = 0.9) -> torch.Tensor:
    """Keep the top (1 - thres) share of each row's logits (at least one), the rest -inf."""
    k = max(1, int(round((1.0 - thres) * logits.shape[-1])))
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def sample(logits: torch.Tensor, generator: torch.Generator, temperature: float = 1.0,
           thres: float = 0.9) -> torch.Tensor:
    """Code indices from (..., V) logits: argmax at temperature 0, else a top-k-filtered draw."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(top_k_filter(logits, thres) / temperature, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def mask_schedule(step: int, steps: int, length: int) -> int:
    """Tokens left masked before step `step` of `steps`: round(cos(pi/2 * step/steps) * length), >= 1."""
    return max(1, int(round(math.cos(0.5 * math.pi * step / steps) * length)))


def iterative_decode(logits_fn: Callable[[torch.Tensor], torch.Tensor], length: int, mask_id: int, steps: int,
                     generator: torch.Generator, *, temperature: float = 1.0, thres: float = 0.9,
                     on_step: Callable[[int], None] | None = None, device=None) -> torch.Tensor:
    """(1, length) code indices, every one filled.

    Start fully masked; each step predicts every masked token, then re-masks the lowest-
    confidence predictions (tokens fixed earlier are never re-masked) so that the masked count
    follows the cosine schedule; the last step leaves nothing masked."""
    if steps < 1:
        raise InputError("steps", f"expected at least 1 decoding step, got {steps}")
    ids = torch.full((1, length), mask_id, dtype=torch.long, device=device)
    masked = torch.ones(1, length, dtype=torch.bool, device=device)
    for step in range(steps):
        logits = logits_fn(ids)
        pred = sample(logits, generator, temperature, thres)
        probs = torch.softmax(logits, dim=-1)
        conf = probs.gather(-1, pred[..., None])[..., 0]
        ids = torch.where(masked, pred, ids)
        if step + 1 < steps:
            n_masked = mask_schedule(step + 1, steps, length)
            # Only this step's predictions compete; fixed tokens rank as certain.
            conf = conf.masked_fill(~masked, float("inf"))
            ranks = conf.argsort(-1).argsort(-1)
            masked = ranks < n_masked
            ids = ids.masked_fill(masked, mask_id)
        else:
            masked = torch.zeros_like(masked)
        if on_step is not None:
            on_step(step)
    return ids


PRIOR_FLOOR = 0.5   # share of the prior's mass spread evenly over all codes: no code is ever ruled out


def token_prior(reference_codes: torch.Tensor, num_codes: int, strength: float,
                weights: torch.Tensor | None = None) -> torch.Tensor | None:
    """A logit bias toward the codes the references use, slot by slot.

    reference_codes: (R, N, Q) code indices of R references, each already time-aligned to the N
    token slots being generated (Q quantiser layers). Returns (Q, N, num_codes):

        strength * log((1 - PRIOR_FLOOR) * share + PRIOR_FLOOR / num_codes)

    share = the (weighted) fraction of references using each code at that slot and layer; weights
    (R,) >= 0, default equal (they are normalised to sum 1). A code every
    reference agrees on gains strength * log(1 + (1 - f) / f * num_codes) over one none uses
    (f = PRIOR_FLOOR; about 4.9 logits per unit of strength with 128 codes). None when strength is 0 or
    there are no references: decoding is then exactly the plain one."""
    if strength == 0 or reference_codes is None or reference_codes.shape[0] == 0:
        return None
    if reference_codes.dim() != 3:
        raise InputError("reference_codes", f"expected (references, slots, layers), got {tuple(reference_codes.shape)}")
    R, N, Q = reference_codes.shape
    dev = reference_codes.device
    w = torch.ones(R, device=dev) if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=dev)
    if w.shape != (R,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise InputError("weights", f"expected {R} finite weights >= 0, not all 0, got {w.tolist()}")
    share = torch.zeros(Q, N, num_codes, device=dev)
    share.scatter_add_(2, reference_codes.permute(2, 1, 0), (w / w.sum()).expand(Q, N, R).contiguous())
    return strength * torch.log((1.0 - PRIOR_FLOOR) * share + PRIOR_FLOOR / num_codes)
