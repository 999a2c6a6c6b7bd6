"""Training the offline motion model in two stages, as MotionRAG trains its own:

stage 1  the motion Resampler learns to reconstruct a clip's own flow features through its motion
         tokens (resampler + a small decoder, MSE on flow divided by its per-channel spread);
stage 2  the Resampler is frozen and CAMA learns, from retrieved references (the query clip's own video
         excluded) and first-frame appearance, to predict every clip's motion tokens block by block
         (block-causal: block i sees the start block and clips 0..i-1). Each episode draws its
         references from the top `ref_pool` by caption (kept in similarity order) and adds noise
         to their tokens: with one fixed episode per clip CAMA memorised the episodes. The step
         count was chosen on a validation split of the training videos (README, "Evaluation").

Only the training split takes part (whole videos held out, data.split). Fixed seeds; one torch
thread by default so that the same command gives the same bytes.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ....common.errors import InputError
from .data import OfflineClips, caption_vectors, mirror_appearance, mirror_flow, retrieve, split
from .model import OfflineConfig, OfflineMotionModel


@dataclass(frozen=True)
class TrainSettings:
    stage1_steps: int = 1000
    stage2_steps: int = 150
    batch_size: int = 32
    refs: int = 4                 # references per training episode (the query is the last block)
    ref_pool: int = 10            # an episode's references: `refs` of the top `ref_pool` by caption
    token_noise: float = 0.3      # std of Gaussian noise on the references' tokens in stage 2
    lr_stage1: float = 1e-3
    lr_stage2: float = 5e-4
    weight_decay: float = 0.01
    mirror: bool = True           # left-right mirrored episodes as augmentation
    holdout_every: int = 5        # every 5th video (data.held_out_videos) never trains
    holdout_offset: int = 2       # ... counting from this one (2: the split the shipped model used)
    seed: int = 0


def _cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + np.cos(np.pi * min(1.0, t)))


def flow_scale(flow: np.ndarray) -> np.ndarray:
    """Per-channel spread of training flow (mirrored copies included, so the scale is mirror-symmetric)."""
    both = np.concatenate([flow, mirror_flow(flow)]).reshape(-1, flow.shape[-1])
    std = both.std(axis=0)
    return np.maximum(std, 0.05 * float(std.mean()) + 1e-6).astype(np.float32)


def _update(opt, params: list, loss: torch.Tensor, losses: list) -> None:
    """One optimizer step on `loss` (gradients clipped to norm 1), its value appended to `losses`."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    losses.append(float(loss.detach()))


def _stage1(model: OfflineMotionModel, flow: np.ndarray, s: TrainSettings, rng: np.random.Generator,
            log) -> list[float]:
    params = list(model.motion_proj.parameters()) + list(model.flow_decoder.parameters())
    opt = torch.optim.AdamW(params, lr=s.lr_stage1, weight_decay=s.weight_decay)
    data = torch.from_numpy(np.concatenate([flow, mirror_flow(flow)]) if s.mirror else flow)
    losses = []
    for step in range(s.stage1_steps):
        for g in opt.param_groups:
            g["lr"] = _cosine_lr(step, s.stage1_steps, s.lr_stage1)
        batch = data[torch.from_numpy(rng.integers(0, len(data), s.batch_size))]
        recon = model.decode_flow(model.motion_tokens(batch))
        loss = F.mse_loss(recon, model.normalise_flow(batch))
        _update(opt, params, loss, losses)
        log(1, step, s.stage1_steps, losses)
    return losses


def _stage2(model: OfflineMotionModel, clips: OfflineClips, refs: np.ndarray, s: TrainSettings,
            rng: np.random.Generator, log) -> list[float]:
    model.motion_proj.requires_grad_(False)
    # (sides, N, ...): side 0 the clips as they are, side 1 their mirrored copies
    with torch.no_grad():
        tokens = torch.stack([model.motion_tokens(torch.from_numpy(clips.flow))]
                             + ([model.motion_tokens(torch.from_numpy(mirror_flow(clips.flow)))] if s.mirror else []))
    appearance = torch.stack([torch.from_numpy(clips.appearance)]
                             + ([torch.from_numpy(mirror_appearance(clips.appearance))] if s.mirror else []))
    if model.config.reference_skip:
        model.skip.prior.copy_(tokens[0].mean(0))
    params = list(model.cama.parameters()) + (list(model.skip.parameters()) if model.config.reference_skip else [])
    opt = torch.optim.AdamW(params, lr=s.lr_stage2, weight_decay=s.weight_decay)
    losses = []
    n = len(clips)
    pool = refs.shape[1]
    for step in range(s.stage2_steps):
        for g in opt.param_groups:
            g["lr"] = _cosine_lr(step, s.stage2_steps, s.lr_stage2)
        query = rng.integers(0, n, s.batch_size)
        side = rng.integers(0, len(tokens), s.batch_size) if s.mirror else np.zeros(s.batch_size, int)
        pick = np.sort(np.argsort(rng.random((s.batch_size, pool)), axis=1)[:, :s.refs], axis=1)
        chosen = np.take_along_axis(refs[query], pick, axis=1)                           # best first
        # context order: least similar first, the most similar next to the query, the query last
        order = torch.from_numpy(np.concatenate([chosen[:, ::-1], query[:, None]], axis=1))   # (B, K+1)
        side = torch.from_numpy(side)[:, None]
        tok, app = tokens[side, order], appearance[side, order]
        context = tok[:, :-1]
        if s.token_noise:
            context = context + s.token_noise * torch.randn_like(context)
        pred = model.context_blocks(context, app)                                        # (B, K+1, L, D)
        loss = F.mse_loss(pred, tok)
        _update(opt, params, loss, losses)
        log(2, step, s.stage2_steps, losses)
    return losses


def train(clips: OfflineClips, encoder, settings: TrainSettings = TrainSettings(),
          config: OfflineConfig = OfflineConfig(), *, progress=None) -> tuple[OfflineMotionModel, dict]:
    """Train on the training split of `clips`; `encoder` embeds captions for retrieval (MiniLM).
    Returns the model (eval mode) and what to record about the run."""
    s = settings
    if s.refs > config.max_references:
        raise InputError("refs", f"{s.refs} references do not fit the model's {config.max_references}")
    if s.ref_pool < s.refs:
        raise InputError("ref_pool", f"{s.ref_pool} is fewer than the {s.refs} references an episode takes")
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    train_idx, test_idx = split(clips, s.holdout_every, s.holdout_offset)
    train_clips = clips.subset(train_idx)
    first, all_vecs = caption_vectors(train_clips, encoder)
    # a small database may have fewer candidates outside a clip's own video than ref_pool
    biggest_video = max(train_clips.videos.count(v) for v in set(train_clips.videos))
    pool = max(s.refs, min(s.ref_pool, len(train_clips) - biggest_video))
    refs = retrieve(first, train_clips.videos, all_vecs, train_clips.videos, pool)
    model = OfflineMotionModel(config)
    model.flow_scale.copy_(torch.from_numpy(flow_scale(train_clips.flow)))
    model.train()
    t0 = time.perf_counter()

    def log(stage, step, total, losses):
        if progress is not None:
            progress(stage, step + 1, total, float(np.mean(losses[-50:])))

    loss1 = _stage1(model, train_clips.flow, s, rng, log)
    t1 = time.perf_counter()
    loss2 = _stage2(model, train_clips, refs, s, rng, log)
    t2 = time.perf_counter()
    model.eval().requires_grad_(False)
    made = {"settings": asdict(s), "train_clips": len(train_idx), "train_videos": len(set(train_clips.videos)),
            "held_out_clips": len(test_idx), "held_out_videos": sorted({clips.videos[i] for i in test_idx}),
            "stage1_final_loss": float(np.mean(loss1[-100:])), "stage2_final_loss": float(np.mean(loss2[-100:])),
            "stage1_seconds": round(t1 - t0, 1), "stage2_seconds": round(t2 - t1, 1),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    return model, made


__all__ = ["TrainSettings", "train", "flow_scale"]
