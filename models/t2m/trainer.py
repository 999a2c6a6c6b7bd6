"""Training: tokenizer stage, then masked-transformer stage, then residual-transformer stage, then
the retrieval refiner's stage (refiner.py; models whose config has one). Each stage is one record
of STAGES (what it trains, its step count, its step function); the loop is the same for all.

The pieces here need no database: `prepare_run` sets up a new or resumed run in an output folder,
`fit` trains it on TrainingData the caller loaded (the pack's training/t2m.py reads it from a
motion database).

Reproducibility: every step draws its randomness (batch choice, crops, masking, condition
dropout, dropout layers, dead-code resets) from generators seeded with (seed, stage, step), so
a run resumed from a checkpoint continues exactly as an uninterrupted run would: the resumed
process needs only the weights, the EMA codebooks and the optimizer moments, all stored as
tensors (checkpoint.py). For the same reason a finished checkpoint from before the refiner existed
can be continued with --resume: its three stages are kept and only the refiner is trained, giving
the same weights as a run from scratch (the refiner's initial weights are drawn at construction,
after the other modules', from the same seed).
"""
from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...common.errors import InputError
from .checkpoint import (CONFIG_FILE, MODEL_FILE, STATE_FILE, STATE_JSON, CheckpointError, load_model, load_tensors,
                         optimizer_from_tensors, optimizer_to_tensors, read_json, save_model, save_tensors, write_json)
from .config import ModelConfig, TrainConfig, preset
from .data import TrainingData, check_exclusion, refiner_batch, tokenizer_batch, transformer_batch
from .model import T2MModel
from .normalization import feature_stats
from .transformer import condition_masks, mask_tokens

NEIGHBOURS_FILE = "retrieval_neighbours.json"


class TrainingError(RuntimeError):
    pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def step_seed(seed: int, stage: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, stage, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


def learning_rate(cfg: TrainConfig, stage: str, step: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the stage's base rate."""
    base = cfg.lr if stage == "tokenizer" else cfg.transformer_lr
    warm = min(1.0, (step + 1) / max(cfg.warmup, 1))
    frac = step / max(total, 1)
    return base * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


# --- the step of each stage: (model, data, cfg, rng, gen, prepared) -> (loss, info) -------------------------------
# rng draws the batch; gen (a CPU generator) draws masks and noise so that a run is reproducible on any device;
# prepared is what the stage's `prepare` computed once before its first step (None when it has none).

def tokenizer_step(model: T2MModel, data: TrainingData, cfg: TrainConfig, rng, gen, prepared):
    """Reconstruction + commitment loss of the tokenizer on a batch of windows."""
    tok = model.tokenizer
    feats = tokenizer_batch(data, rng, cfg.batch_size, cfg.window_frames, tok.frames_per_token)
    out = tok(tok.normalize(torch.from_numpy(feats).to(model.device)))
    return out["loss"], {"loss": out["loss"].item(), "rec": out["rec"].item(), "commit": out["commit"].item()}


def masked_step(model: T2MModel, data: TrainingData, cfg: TrainConfig, rng, gen, latents: dict):
    """Masked-token prediction on base-layer tokens, conditioned on text and on the retrieved neighbours'
    latents (`latents`: retrieval_latents of every usable entry)."""
    c = model.config.transformer
    tok = model.tokenizer
    b = transformer_batch(data, rng, cfg.batch_size, tok.frames_per_token, cfg.min_crop_frames, cfg.max_crop_frames,
                          c.max_tokens)
    dev = model.device
    tokens = tok.encode(tok.normalize(torch.from_numpy(b.features).to(dev)))[..., 0].cpu()
    text = torch.from_numpy(data.text_embeddings[b.captions]).to(dev)
    text_on, retr_on = condition_masks(len(tokens), c.text_drop, c.retrieval_drop, gen)
    mem, pad, has_any = model.masked.encode_retrieval([[latents[n] for n in nbs] for nbs in b.neighbours])
    inputs, labels = mask_tokens(tokens, model.masked.mask_id, model.masked.num_codes, gen)
    inputs, labels = inputs.to(dev), labels.to(dev)
    logits = model.masked(inputs, text, text_on.to(dev), mem, pad, retr_on.to(dev) & has_any)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    chosen = labels >= 0
    acc = (logits.argmax(-1)[chosen] == labels[chosen]).float().mean()
    return loss, {"loss": loss.item(), "acc": acc.item()}


def residual_step(model: T2MModel, data: TrainingData, cfg: TrainConfig, rng, gen, prepared):
    """Prediction of one random residual quantiser layer from the sum of the layers below it."""
    c = model.config.transformer
    tok = model.tokenizer
    b = transformer_batch(data, rng, cfg.batch_size, tok.frames_per_token, cfg.min_crop_frames, cfg.max_crop_frames,
                          c.max_tokens)
    dev = model.device
    tokens = tok.encode(tok.normalize(torch.from_numpy(b.features).to(dev)))          # (B, T, Q)
    B, T, Q = tokens.shape
    layer = torch.randint(1, Q, (B,), generator=gen).to(dev)
    below = torch.arange(Q, device=dev)[None, None, :] < layer[:, None, None]
    code_sum = tok.code_embeddings(torch.where(below, tokens, torch.full_like(tokens, -1)))
    target = tokens.gather(-1, layer[:, None, None].expand(B, T, 1))[..., 0]
    text_on = (torch.rand(B, generator=gen) >= c.text_drop).to(dev)
    text = torch.from_numpy(data.text_embeddings[b.captions]).to(dev)
    logits = model.residual(code_sum, layer, text, text_on)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    acc = (logits.argmax(-1) == target).float().mean()
    return loss, {"loss": loss.item(), "acc": acc.item()}


def refiner_step(model: T2MModel, data: TrainingData, cfg: TrainConfig, rng, gen, prepared):
    """The refiner's loss on crops whose references are perturbed copies of the target or real neighbours."""
    c = model.config
    tok = model.tokenizer
    b = refiner_batch(data, rng, cfg.batch_size, tok.frames_per_token, cfg.min_crop_frames, cfg.max_crop_frames,
                      c.transformer.max_tokens, c.refiner, c.transformer.num_retrieved)
    dev = model.device
    target = tok.normalize(torch.from_numpy(b.target).to(dev))
    # The decoded motion as generation produces it: codes of the crop (or of another clip), decoded.
    base = tok.decode(tok.encode(tok.normalize(torch.from_numpy(b.base).to(dev))))[:, :target.shape[1]]
    refs = tok.normalize(torch.from_numpy(b.references).to(dev))
    noise = torch.randn(refs.shape, generator=gen).to(dev) * c.refiner.noise
    refs = refs + noise * torch.from_numpy(b.positive).to(dev)[:, :, None, None]
    pred, weights = model.refiner(base, refs, torch.from_numpy(b.reference_on).to(dev))
    loss, info = model.refiner.loss(pred, target)
    if b.positive.any():
        info["w_pos"] = weights[:, 1:][torch.from_numpy(b.positive).to(dev)].mean().item()
    return loss, info


def retrieval_latents(model: T2MModel, data: TrainingData) -> dict:
    """Entry id -> the (trained) tokenizer's latents of that entry: the masked stage's retrieval memory."""
    tok = model.tokenizer
    return {int(e): tok.latents(tok.normalize(torch.from_numpy(data.features[e]).to(model.device)[None]))[0]
            for e in data.usable}


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: it trains the T2MModel attribute `name` (the earlier stages stay frozen)."""
    name: str
    steps: Callable[[TrainConfig, ModelConfig], int]           # how many steps this run gives it (0: skipped)
    step: Callable[..., tuple]                                  # (model, data, cfg, rng, gen, prepared) -> loss, info
    prepare: Callable[[T2MModel, TrainingData], Any] | None = None

    def module(self, model: T2MModel) -> torch.nn.Module:
        return getattr(model, self.name)


# In training order; the order (each stage's index seeds its steps) and the names are part of the checkpoint format.
STAGES = (
    Stage("tokenizer", lambda cfg, m: cfg.tokenizer_steps, tokenizer_step),
    Stage("masked", lambda cfg, m: cfg.masked_steps, masked_step, prepare=retrieval_latents),
    Stage("residual", lambda cfg, m: cfg.residual_steps
          if m.tokenizer.num_quantizers > 1 and m.transformer.residual_layers else 0, residual_step),
    Stage("refiner", lambda cfg, m: cfg.refiner_steps if m.refiner.enabled else 0, refiner_step),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def stage_steps(cfg: TrainConfig, model_cfg: ModelConfig) -> dict:
    return {s.name: s.steps(cfg, model_cfg) for s in STAGES}


def make_optimizer(model: T2MModel, stage: Stage, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of `stage`, over that stage's parameters only."""
    return torch.optim.AdamW(list(stage.module(model).parameters()), lr=cfg.lr, betas=(0.9, 0.99),
                             weight_decay=cfg.weight_decay)


def train_only(model: T2MModel, stage: Stage) -> None:
    """Training mode for `stage`'s module, evaluation mode (no dropout) for the others."""
    model.train()
    for module in (model.tokenizer, model.masked, model.residual, model.refiner):
        if module is not None:
            module.train(module is stage.module(model))


class _Progress:
    """tqdm when installed, otherwise a line every ~5% of the stage."""

    def __init__(self, label: str, total: int, initial: int, log: Callable[[str], None], enabled: bool):
        self.label, self.total, self.done, self.log = label, total, initial, log
        self.bar = None
        self.every = max(1, total // 20)
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm       # optional: not a dependency of the pack
                self.bar = tqdm(total=total, initial=initial, desc=label, file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, info: dict) -> None:
        self.done += 1
        text = " ".join(f"{k}={v:.4f}" for k, v in info.items())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text, refresh=False)
        elif self.enabled and (self.done % self.every == 0 or self.done == self.total):
            self.log(f"{self.label} {self.done}/{self.total} {text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclasses.dataclass
class TrainingRun:
    """A run ready to train in `out`: the model and where it stands (new, or read back for --resume)."""
    out: Path
    model: T2MModel
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    seed: int
    record: dict            # what train_state.json keeps: db, seed, preset, train settings, history, last losses
    stage: str              # the stage to continue ("done" when finished)
    step: int               # ... at this step
    done: dict              # steps done per stage
    optimizer_meta: dict    # optimizer hyper-parameters of the stage to continue


def _save(run: TrainingRun, opt, stage: str, step: int) -> None:
    rec, out = run.record, run.out
    save_model(out, run.model, trained={**run.done, "db": rec["db"], "seed": rec["seed"], "preset": rec["preset"]})
    tensors, meta = optimizer_to_tensors(opt, stage) if opt is not None else ({}, {})
    save_tensors(out / STATE_FILE, tensors)
    # train_state.json is written last: it names the step the files above belong to.
    write_json(out / STATE_JSON, {**rec, "stage": stage, "step": step, "optimizer": meta, "done": run.done,
                                  "last": rec.get("last", {})})


def _check_resume(state: dict, run: dict, source: Path) -> None:
    for key in ("seed", "db", "preset"):
        if state.get(key) != run[key]:
            raise CheckpointError(source, f"the checkpoint was trained with {key}={state.get(key)!r}, this run "
                                  f"asks for {run[key]!r}; resume with the same {key} or use another --out")
    # Step counts and the save interval may change on resume (to extend a run); the rest may not.
    free = {"tokenizer_steps", "masked_steps", "residual_steps", "refiner_steps", "save_every"}
    before, now = state.get("train", {}), run["train"]
    for key in sorted(set(before) | set(now)):
        if key not in free and before.get(key) != now.get(key):
            raise CheckpointError(source, f"the checkpoint was trained with {key}={before.get(key)!r}, this run "
                                  f"asks for {now.get(key)!r}; resume with the same setting")


def _add_refiner(old: T2MModel, model_cfg: ModelConfig, preset_name: str, stage: str, seed: int, device: str,
                 source: Path) -> T2MModel:
    """The finished refiner-less checkpoint `old` as a model of `model_cfg` whose refiner is untrained,
    with the initial weights a run from scratch would give it."""
    same_otherwise = dataclasses.replace(model_cfg, refiner=old.config.refiner) == old.config
    if old.config.refiner.enabled or not model_cfg.refiner.enabled or not same_otherwise:
        raise CheckpointError(source / CONFIG_FILE, f"model config differs from preset {preset_name!r}")
    if stage != "done":
        raise CheckpointError(source, f"a model without a retrieval refiner, stopped at {stage}; finish it with the "
                              f"code that started it, or train from scratch")
    seed_everything(seed)
    model = T2MModel(model_cfg).to(device)
    for name in ("tokenizer", "masked", "residual"):
        getattr(model, name).load_state_dict(getattr(old, name).state_dict())
    model.trained = dict(old.trained)
    return model


def _train_config(config: str, steps: tuple | None, batch_size: int | None,
                  save_every: int | None) -> tuple[ModelConfig, TrainConfig]:
    """The preset `config` with the caller's step counts, batch size and save interval."""
    model_cfg, train_cfg = preset(config)
    overrides = {}
    if steps is not None:
        if len(steps) not in (3, 4) or any((not isinstance(s, int)) or s < 0 for s in steps):
            raise InputError("steps", f"expected three or four step counts >= 0 (tokenizer, masked, residual"
                                      f"[, refiner]), got {steps!r}")
        overrides.update(tokenizer_steps=steps[0], masked_steps=steps[1], residual_steps=steps[2])
        if len(steps) == 4:
            overrides["refiner_steps"] = steps[3]
    if batch_size is not None:
        overrides["batch_size"] = int(batch_size)
    if save_every is not None:
        overrides["save_every"] = int(save_every)
    train_cfg = dataclasses.replace(train_cfg, **overrides)
    if train_cfg.batch_size < 1:
        raise InputError("batch_size", f"expected a positive integer, got {train_cfg.batch_size}")
    if train_cfg.save_every < 1:
        raise InputError("save_every", f"expected a positive integer, got {train_cfg.save_every}")
    return model_cfg, train_cfg


def prepare_run(out, db_name: str, *, config: str = "small", seed: int = 0, steps: tuple | None = None,
                batch_size: int | None = None, save_every: int | None = None, resume: bool = False,
                device: str = "cpu", log: Callable[[str], None] = print) -> TrainingRun:
    """A new run of preset `config` in `out` (which must hold no checkpoint), or with `resume` the run
    stored there (same seed, database and settings but the step counts). Seeds torch, numpy and random.

    steps: (tokenizer, masked, residual[, refiner]) step counts (default: the preset's)."""
    out = Path(out)
    model_cfg, train_cfg = _train_config(config, steps, batch_size, save_every)
    record = {"db": db_name, "seed": int(seed), "preset": config, "train": train_cfg.to_dict()}
    stage, step, done, opt_meta = STAGE_NAMES[0], 0, {s: 0 for s in STAGE_NAMES}, {}
    if resume:
        if not (out / STATE_JSON).is_file():
            raise CheckpointError("--resume", f"{out} has no {STATE_JSON}; nothing to resume (run without --resume)")
        state = read_json(out / STATE_JSON)
        _check_resume(state, record, out / STATE_JSON)
        stage, step, done, opt_meta = state["stage"], int(state["step"]), dict(state["done"]), state["optimizer"]
        done.setdefault("refiner", 0)
        record["history"] = list(state.get("history", []))
        record["last"] = dict(state.get("last", {}))
        model = load_model(out, device)
        if model.config != model_cfg:
            model = _add_refiner(model, model_cfg, config, stage, seed, device, out)
            stage, step = "refiner", 0
            log(f"{out}: a finished model without a retrieval refiner; keeping its three stages, training the refiner")
        log(f"resuming at {stage} step {step}")
    else:
        if (out / MODEL_FILE).exists() or (out / STATE_JSON).exists():
            raise CheckpointError("--out", f"{out} already holds a checkpoint; pass --resume to continue it or choose another "
                                  f"--out (refusing to overwrite)")
        seed_everything(seed)
        model = T2MModel(model_cfg).to(device)
    seed_everything(seed)
    out.mkdir(parents=True, exist_ok=True)
    return TrainingRun(out, model, model_cfg, train_cfg, int(seed), record, stage, step, done, opt_meta)


class _Stopped(Exception):
    """--stop-at reached inside a stage (a checkpoint is saved)."""


def _run_stage(run: TrainingRun, data: TrainingData, index: int, first: int, total: int, counter: dict,
               last: dict, stop_at: int | None, progress: bool, log: Callable[[str], None]) -> None:
    """Steps first..total-1 of STAGES[index], saving every save_every steps; raises _Stopped at stop_at."""
    stage, model, cfg, out = STAGES[index], run.model, run.train_cfg, run.out
    opt = make_optimizer(model, stage, cfg)
    if first > 0:
        if not run.optimizer_meta:
            raise CheckpointError(out / STATE_JSON, f"no optimizer state for {stage.name} step {first}")
        optimizer_from_tensors(opt, stage.name, load_tensors(out / STATE_FILE), run.optimizer_meta,
                               str(out / STATE_FILE))
    train_only(model, stage)
    prepared = stage.prepare(model, data) if stage.prepare is not None else None
    params = list(stage.module(model).parameters())
    bar = _Progress(stage.name, total, first, log, progress)
    try:
        for k in range(first, total):
            if stop_at is not None and counter["ran"] >= stop_at:
                _save(run, opt, stage.name, k)
                log(f"stopped at {stage.name} step {k} ({counter['ran']} steps in total); continue with --resume")
                raise _Stopped
            s = step_seed(run.seed, index, k)
            rng = np.random.default_rng(s)
            torch.manual_seed(s)
            gen = torch.Generator().manual_seed(s)
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg, stage.name, k, total)
            loss, info = stage.step(model, data, cfg, rng, gen, prepared)
            if not torch.isfinite(loss):
                # Not saved: the EMA codebooks may already hold the bad values.
                raise TrainingError(f"{stage.name} step {k}: loss is {loss.item()}; the last checkpoint in {out} "
                                    f"is from before it (--resume); try a lower learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            run.done[stage.name] = k + 1
            counter["ran"] += 1
            last[stage.name] = info
            run.record["last"] = last
            if k % max(1, total // 50) == 0 or k + 1 == total:
                run.record.setdefault("history", []).append({"stage": stage.name, "step": k + 1, **info})
            bar.update(info)
            if (k + 1) % cfg.save_every == 0 and k + 1 < total:
                _save(run, opt, stage.name, k + 1)
    finally:
        bar.close()


def fit(run: TrainingRun, data: TrainingData, *, stop_at: int | None = None, progress: bool = True,
        log: Callable[[str], None] = print) -> dict:
    """Train `run` on `data` (from the database the run names) through its remaining stages, writing
    checkpoints to run.out. stop_at: stop after this many steps in total over all stages, leaving a
    resumable checkpoint. Returns a summary (steps done, last losses, seconds, parameter count)."""
    model, out = run.model, run.out
    check_exclusion(data)
    write_json(out / NEIGHBOURS_FILE, {"db": run.record["db"], "captions": data.neighbour_names()})
    if run.stage == STAGE_NAMES[0] and run.step == 0:
        mean, std = feature_stats(data.features[e] for e in data.usable)
        model.tokenizer.set_stats(mean, std)

    totals = stage_steps(run.train_cfg, run.model_cfg)
    start = time.monotonic()
    last: dict = {}
    if run.stage != "done":
        counter = {"ran": sum(run.done.values())}
        for si in range(STAGE_NAMES.index(run.stage), len(STAGES)):
            name = STAGE_NAMES[si]
            total = totals[name]
            first = run.step if name == run.stage else 0
            if first >= total:
                run.done[name] = total
                if si + 1 == len(STAGES):
                    # A last stage with nothing to do (a model without a refiner) still ends the run.
                    _save(run, None, "done", 0)
                continue
            try:
                _run_stage(run, data, si, first, total, counter, last, stop_at, progress, log)
            except _Stopped:
                return {"stopped": True, "done": run.done, "last": last, "seconds": time.monotonic() - start}
            _save(run, None, STAGE_NAMES[si + 1] if si + 1 < len(STAGES) else "done", 0)
    model.eval()
    return {"stopped": False, "done": run.done, "last": last, "seconds": time.monotonic() - start,
            "parameters": model.num_parameters(),
            "model_bytes": (out / MODEL_FILE).stat().st_size}
