"""The evaluation of the paper's central claim on held-out videos: CAMA's predicted motion tokens
against the video's true tokens (its own flow through the frozen motion Resampler), compared with
(a) the mean of the retrieved references' tokens, (b) the top-1 reference's tokens and (c) CAMA fed
random references; also the training clips' mean tokens, which ignore the query entirely. Errors are
mean squared errors per token value, and the same after decoding to flow (per flow channel, in units
of its training spread)."""
from __future__ import annotations

import numpy as np
import torch

from .data import OfflineClips, caption_vectors, retrieve, split

METHODS = ("cama", "mean_of_refs", "top1_ref", "cama_random_refs", "train_mean")


@torch.no_grad()
def evaluate(model, clips: OfflineClips, encoder, *, refs: int = 4, holdout_every: int = 5, holdout_offset: int = 2,
             random_draws: int = 5, seed: int = 0) -> dict:
    """{"tokens": {method: mse}, "flow": {method: mse}, "queries": n, ...} over the held-out clips."""
    train_idx, test_idx = split(clips, holdout_every, holdout_offset)
    if not test_idx:
        raise ValueError("evaluation: the split holds out no video")
    train, test = clips.subset(train_idx), clips.subset(test_idx)
    _, train_vecs = caption_vectors(train, encoder)
    test_first, _ = caption_vectors(test, encoder)
    chosen = retrieve(test_first, test.videos, train_vecs, train.videos, refs)         # (nq, K), best first

    flow = lambda a: torch.from_numpy(np.ascontiguousarray(a))                          # noqa: E731
    true = model.motion_tokens(flow(test.flow))
    ref_tok = model.motion_tokens(flow(train.flow))
    true_flow = model.normalise_flow(flow(test.flow))

    def cama(idx: np.ndarray) -> torch.Tensor:
        return model.predict(flow(train.flow[idx]), flow(train.appearance[idx]), flow(test.appearance))

    preds = {"cama": cama(chosen), "mean_of_refs": ref_tok[torch.from_numpy(chosen)].mean(1),
             "top1_ref": ref_tok[torch.from_numpy(chosen[:, 0])],
             "train_mean": ref_tok.mean(0, keepdim=True).expand_as(true)}
    rng = np.random.default_rng(seed)
    draws = [cama(np.stack([rng.choice(len(train), refs, replace=False) for _ in range(len(test))]))
             for _ in range(random_draws)]
    tok = {m: float(torch.mean((p - true) ** 2)) for m, p in preds.items()}
    tok["cama_random_refs"] = float(np.mean([float(torch.mean((d - true) ** 2)) for d in draws]))
    flw = {m: float(torch.mean((model.decode_flow(p) - true_flow) ** 2)) for m, p in preds.items()}
    flw["cama_random_refs"] = float(np.mean([float(torch.mean((model.decode_flow(d) - true_flow) ** 2))
                                             for d in draws]))
    # the references' own flow averaged, without any tokens: naive reuse at the flow level
    flw["mean_of_refs_flow"] = float(torch.mean((model.normalise_flow(flow(train.flow[chosen].mean(1)))
                                                 - true_flow) ** 2))
    flw["own_tokens_decoded"] = float(torch.mean((model.decode_flow(true) - true_flow) ** 2))
    return {"tokens": tok, "flow": flw, "queries": len(test_idx), "held_out_videos": len(set(test.videos)),
            "train_clips": len(train_idx), "refs": refs}


__all__ = ["evaluate", "METHODS"]
