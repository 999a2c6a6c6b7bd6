"""MoMask decoding: iterative masked decoding of the base layer, the residual layers, the tokenizer.

The sampling follows the released inference (gen_t2m.py, edit_t2m.py) step for step and draws
random numbers in the same order and with the same calls, so with a CPU generator seeded with s the
tokens equal those of the reference run after `torch.manual_seed(s)`:

1. length (only when none is given): one categorical draw from the length estimator;
2. base layer, `steps` times, t = linspace(0, 1, steps): re-mask the round(cos(pi t / 2) * n)
   lowest-confidence slots of the n editable ones (at least 1; kept slots score 1e5 and are never
   re-masked), guided logits u + s (c - u) (u: the condition replaced by zeros), keep the top
   ceil((1 - topk_ratio) * K) logits, draw from softmax(filtered / temperature) (or Gumbel-argmax),
   confidence = softmax(unfiltered guided logits) at the drawn id;
3. residual layers q = 1..Q-1: guided logits with its own scale, the same top-k, Gumbel-argmax;
   the pad class may be drawn at a real position, which leaves that layer's code empty (-1).

Retrieval as a prior (not in MoMask; this pack's training-free way to use retrieved motions with a
model that was not trained with them): the references' base-layer tokens, stretched in time to the
generated length, give at each slot an empirical distribution p over the codes. `token_prior` turns
it into a log-prior, log((1 - e) p + e / K) with e = PRIOR_UNIFORM, scaled by the strength, which is
added to the guided logits at every step: the model's distribution times the prior to the power of
the strength (a product of experts). Strength 0 adds nothing (the reference decoding, draw for draw);
1 lifts a code every reference agrees on by log(1 + K (1 - e) / e) over codes none of them uses
(6.2 for K = 512); large strengths copy the references' tokens. The prior enters before top-k, so
a reference's code the text alone ranks low can still be drawn, and into the confidences that decide
what is re-masked, so slots that agree with the references tend to be kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F

# Run the conditional and unconditional passes of classifier-free guidance as one batch (faster on
# a CPU). The reference runs them one after the other; the logits agree to float rounding.
BATCHED_GUIDANCE = True


@dataclass(frozen=True)
class Sampling:
    steps: int = 18                 # gen_t2m.py's default (its README evaluation uses 10)
    guidance: float = 4.0           # base-layer classifier-free guidance scale (KIT evaluation: 2)
    residual_guidance: float = 5.0  # residual layers (gen_t2m.py: 5; edit_t2m.py: 2)
    temperature: float = 1.0
    topk_ratio: float = 0.9         # keep the top (1 - topk_ratio) share of the logits
    gumbel: bool = False            # base layer: Gumbel-argmax instead of a categorical draw


def cosine_schedule(t):
    return torch.cos(t * math.pi * 0.5)


def top_k_filter(logits, ratio: float):
    """Keep the ceil((1 - ratio) * K) largest logits of the last axis, the rest -inf."""
    k = math.ceil((1 - ratio) * logits.shape[-1])
    values, index = logits.topk(k, dim=-1)
    return torch.full_like(logits, float("-inf")).scatter_(-1, index, values)


# The order in which the reference's Gumbel noise is laid out in memory (its `zeros_like(...).uniform_`
# fills memory in order, and its logits are permuted views): base-layer logits (B, N, K) are stored
# (N, B, K), residual logits (B, N, K + 1) are stored (B, K + 1, N). Drawing the noise in that order
# keeps the draws equal to the reference's.
BASE_NOISE_ORDER = (1, 0, 2)
RESIDUAL_NOISE_ORDER = (0, 2, 1)


def gumbel_argmax(logits, temperature: float, generator: torch.Generator | None, order=(0, 1, 2)):
    """argmax(logits / temperature + Gumbel noise) over the last axis; `order`: the axis order in
    which the uniform draws are made (see above)."""
    u = torch.zeros([logits.shape[d] for d in order], dtype=logits.dtype, device=logits.device)
    u = u.uniform_(0, 1, generator=generator).permute([order.index(d) for d in range(logits.dim())])
    noise = -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))
    return (logits / max(temperature, 1e-10) + noise).argmax(dim=-1)


def categorical(probs, generator: torch.Generator | None):
    """torch.distributions.Categorical(probs).sample() with an explicit generator."""
    probs = probs / probs.sum(-1, keepdim=True)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, True, generator=generator).reshape(probs.shape[:-1])


def padding_mask(token_lens, n: int):
    """(B, n) True at positions at or past each sample's length."""
    return torch.arange(n, device=token_lens.device).unsqueeze(0) >= token_lens.unsqueeze(1)


def guided(net, scale: float, cond, *args):
    """net(*args with the condition) guided by scale: u + s (c - u), u = net with a zero condition."""
    if scale == 1:
        return net(cond, *args)
    if BATCHED_GUIDANCE:
        both = net(torch.cat([cond, torch.zeros_like(cond)]), *[torch.cat([a, a]) for a in args])
        c, u = both.chunk(2)
    else:
        c, u = net(cond, *args), net(torch.zeros_like(cond), *args)
    return u + (c - u) * scale


# Share of the prior's mass spread evenly over every code: keeps each code drawable (a reference
# never forbids a code) and bounds the lift of strength 1 (see above).
PRIOR_UNIFORM = 0.5


def align_tokens(tokens, n: int):
    """A reference's base-layer ids (M,) stretched (or squeezed) to n slots by nearest index of
    the slot centres: (n,) ids, each slot taking the reference's token at the same relative time."""
    m = tokens.shape[0]
    index = ((torch.arange(n, dtype=torch.float64) + 0.5) * m / n).floor().long().clamp(max=m - 1)
    return tokens[index.to(tokens.device)]


def token_prior(reference_tokens, n: int, num_tokens: int, strength: float):
    """(n, num_tokens) bias for the base-layer logits from the references' base-layer ids (a list of
    (M_r,) tensors): strength * log((1 - e) p + e / K), p the share of references using each code at
    each (time-aligned) slot. None when strength is 0 or there is no reference (plain decoding)."""
    if strength == 0 or not reference_tokens:
        return None
    device = reference_tokens[0].device
    counts = torch.zeros(n, num_tokens, device=device)
    for ref in reference_tokens:
        counts.scatter_add_(1, align_tokens(ref, n).unsqueeze(1), torch.ones(n, 1, device=device))
    share = counts / len(reference_tokens)
    return strength * torch.log((1 - PRIOR_UNIFORM) * share + PRIOR_UNIFORM / num_tokens)


def masked_decode(masked, cond, token_lens, sampling: Sampling, generator: torch.Generator | None = None,
                  tokens=None, edit_mask=None, progress: Callable[[int, int], None] | None = None, prior=None):
    """Base-layer ids (B, N), -1 at padding; N = max(token_lens), or the width of `tokens`.

    Without `tokens`, every real slot is generated. With `tokens` (B, N) and `edit_mask` (B, N,
    True = regenerate), the other real slots keep their tokens (temporal inpainting; edit_t2m.py
    passes the tokens of a source padded to 196 frames, so N is 49 there).
    `prior` (N' <= N, K) (token_prior): added to the guided logits of the first N' slots."""
    n = int(token_lens.max()) if tokens is None else tokens.shape[1]
    pad = padding_mask(token_lens, n)
    if tokens is None:
        edit = ~pad
        ids = torch.where(pad, masked.pad_id, masked.mask_id)
    else:
        edit = edit_mask & ~pad
        ids = torch.where(edit, masked.mask_id, tokens)
    edit_len = edit.sum(-1)
    scores = torch.where(edit, 0.0, 1e5)

    def net(c, i, p):
        return masked(i, c, p)

    times = torch.linspace(0, 1, sampling.steps)
    for step, t in enumerate(times):
        count = torch.round(cosine_schedule(t) * edit_len).clamp(min=1)
        ranks = scores.argsort(dim=1).argsort(dim=1)
        is_mask = ranks < count.unsqueeze(-1)
        ids = torch.where(is_mask, masked.mask_id, ids)
        logits = guided(net, sampling.guidance, cond, ids, pad)            # (B, N, K)
        if prior is not None:
            # slots past the prior's end are padding or kept tokens, which are never re-drawn
            logits = torch.cat([logits[:, : prior.shape[0]] + prior, logits[:, prior.shape[0]:]], dim=1)
        filtered = top_k_filter(logits, sampling.topk_ratio)
        if sampling.gumbel:
            pred = gumbel_argmax(filtered, sampling.temperature, generator, BASE_NOISE_ORDER)
        else:
            pred = categorical(F.softmax(filtered / sampling.temperature, dim=-1), generator)
        ids = torch.where(is_mask, pred, ids)
        scores = logits.softmax(dim=-1).gather(2, pred.unsqueeze(-1)).squeeze(-1).masked_fill(~is_mask, 1e5)
        if progress is not None:
            progress(step + 1, sampling.steps)
    return torch.where(pad, -1, ids)


def residual_decode(residual, base_ids, cond, token_lens, guidance: float, temperature: float = 1.0,
                    topk_ratio: float = 0.9, generator: torch.Generator | None = None):
    """All Q layers' ids (B, N, Q) from the base layer (B, N) (-1 at padding); -1 = no code."""
    pad = padding_mask(token_lens, base_ids.shape[1])
    ids = torch.where(pad, residual.pad_id, base_ids)
    layers = [ids]
    history = None

    for q in range(1, residual.config.num_quantizers):
        emb = F.embedding(ids, residual.token_embedding(q - 1))
        history = emb if history is None else history + emb
        logits = guided(lambda c, h, p: residual(h, q, c, p), guidance, cond, history, pad)
        pred = gumbel_argmax(top_k_filter(logits, topk_ratio), temperature, generator, RESIDUAL_NOISE_ORDER)
        ids = torch.where(pad, residual.pad_id, pred)
        layers.append(ids)
    out = torch.stack(layers, dim=-1)
    return torch.where(out == residual.pad_id, -1, out)


__all__ = ["Sampling", "BATCHED_GUIDANCE", "PRIOR_UNIFORM", "align_tokens", "token_prior", "cosine_schedule",
           "top_k_filter", "gumbel_argmax", "categorical",
           "padding_mask", "guided", "masked_decode", "residual_decode"]
