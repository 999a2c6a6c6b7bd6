"""Command line: train a small model in MoMask's released layout on a motion database.

    cd <pack folder>
    python -m training momask --db-root R --db NAME --out DIR [--preset small|tiny] [--seed N]
                              [--steps RVQ,MASKED,RESIDUAL[,LENGTH]] [--batch-size B] [--threads T] [--overwrite]

DIR receives the folder layout of MoMask's download (models/momask/export.py), which `load_momask`
reads as it reads the released checkpoints/t2m. The text features are the database's own text
encoder's (all-MiniLM-L6-v2 for the built-in databases, 384 values), zero-padded to CLIP's 512: the
weights keep MoMask's shapes, and opt.txt records `text_encoder` and `text_feature_dim` so that the
loader (MoMaskConfig.text_encoder) says which encoder to feed. Such a model must be prompted with that
encoder, not with CLIP. mean / std (meta/) are the training clips' statistics, std averaged per
HumanML3D feature group as HumanML3D's Mean.npy / Std.npy are (models/t2m/normalization.py). Errors
print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..common.errors import InputError
from ..models.momask.config import MoMaskConfig, ResidualConfig, RVQConfig, TransformerConfig
from ..models.momask.export import write_momask_folder
from ..models.momask.train import TrainingSet, TrainSettings, pad_text_features, train_momask
from ..models.t2m.data import load_training_data
from ..models.t2m.normalization import feature_stats
from ..retrieval import open_database
from .options import step_counts

FPS = 20.0      # HumanML3D's rate, the released t2m layout's

_RVQ = RVQConfig(dim_pose=263, nb_code=128, code_dim=64, num_quantizers=4, down_t=2, stride_t=2, width=128, depth=2,
                 dilation_growth_rate=3, activation="relu")
_SIZES = dict(num_tokens=128, code_dim=64, latent_dim=128, ff_size=256, n_layers=3, n_heads=4, dropout=0.1)
SMALL = MoMaskConfig(dataset="t2m", rvq=_RVQ, masked=TransformerConfig(**_SIZES),
                     residual=ResidualConfig(**_SIZES, num_quantizers=4))
_TINY_RVQ = replace(_RVQ, nb_code=32, code_dim=16, width=24)
_TINY_SIZES = dict(num_tokens=32, code_dim=16, latent_dim=32, ff_size=48, n_layers=1, n_heads=2, dropout=0.1)
TINY = MoMaskConfig(dataset="t2m", rvq=_TINY_RVQ, masked=TransformerConfig(**_TINY_SIZES),
                    residual=ResidualConfig(**_TINY_SIZES, num_quantizers=4))
PRESETS = {"small": (SMALL, TrainSettings()),
           "tiny": (TINY, TrainSettings(rvq_steps=30, masked_steps=30, residual_steps=20, length_steps=10,
                                        batch_size=8, warmup=5))}


def train(db_root, db_name: str, out, *, preset: str = "small", seed: int = 0, steps: tuple | None = None,
          batch_size: int | None = None, threads: int | None = None, overwrite: bool = False,
          log: Callable[[str], None] = print) -> dict:
    """Train on motion database `db_name` under `db_root` and write the MoMask folder `out`.
    steps: (rvq, masked, residual[, length]). Returns {'out', 'losses', 'config', 'settings'}."""
    if preset not in PRESETS:
        raise InputError("preset", f"{preset!r}: expected one of {sorted(PRESETS)}")
    config, settings = PRESETS[preset]
    changes: dict = {"seed": seed}
    if steps is not None:
        if len(steps) not in (3, 4) or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in steps):
            raise InputError("steps", f"{steps!r}: expected three or four whole numbers >= 0 "
                                      f"RVQ,MASKED,RESIDUAL[,LENGTH]")
        changes.update(rvq_steps=steps[0], masked_steps=steps[1], residual_steps=steps[2])
        if len(steps) == 4:
            changes["length_steps"] = steps[3]
    if batch_size is not None:
        changes["batch_size"] = batch_size
    settings = replace(settings, **changes).check()
    if Path(out).exists() and not overwrite:          # before any work is done
        raise InputError("out", f"{out}: exists; choose a new folder or pass --overwrite")
    if threads:
        torch.set_num_threads(int(threads))
    db = open_database(db_root, db_name)
    data = load_training_data(db, fps=FPS, num_retrieved=1, min_rows=config.rvq.frames_per_token * 2, log=log)
    if data.text_embeddings.shape[1] > config.masked.clip_dim:
        raise InputError("db", f"{db_name!r} is embedded with {db.text_encoder_id!r} ({data.text_embeddings.shape[1]} "
                               f"values); the MoMask layout takes at most {config.masked.clip_dim}")
    mean, std = feature_stats([data.features[e] for e in data.usable])
    keep = set(data.usable.tolist())
    rows = [c for c, e in enumerate(data.caption_entry.tolist()) if e in keep]
    text = pad_text_features(data.text_embeddings[rows], config.masked.clip_dim)
    trained = train_momask(config, TrainingSet(features=data.features, caption_entry=data.caption_entry[rows],
                                               text_features=text), mean, std, settings, log=log)
    record = {"text_encoder": db.text_encoder_id, "text_feature_dim": int(data.text_embeddings.shape[1]),
              "trained_by": "MotionRAG-Suite python -m training momask", "preset": preset, "seed": settings.seed,
              "database": db_name, "batch_size": settings.batch_size}
    steps_done = {"rvq": settings.rvq_steps, "masked": settings.masked_steps, "residual": settings.residual_steps,
                  "length": settings.length_steps}
    write_momask_folder(out, config, trained.states, mean, std, steps=steps_done, record=record,
                        quantize_dropout=settings.quantize_dropout,
                        cond_drop=(settings.cond_drop_masked, settings.cond_drop_residual), overwrite=overwrite)
    log(f"wrote {out}")
    return {"out": str(out), "losses": trained.losses, "config": config, "settings": settings}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training momask", description=__doc__.split("\n\n")[0])
    p.add_argument("--db-root", required=True, help="motionrag models folder holding databases/<name>")
    p.add_argument("--db", required=True, help="motion database name")
    p.add_argument("--out", required=True, help="output folder: the MoMask model folder to write")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model sizes and step counts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=step_counts("RVQ,MASKED,RESIDUAL[,LENGTH]"), default=None,
                   help="RVQ,MASKED,RESIDUAL[,LENGTH] step counts")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 for bit-reproducible files)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = train(args.db_root, args.db, args.out, preset=args.preset, seed=args.seed, steps=args.steps,
                        batch_size=args.batch_size, threads=args.threads, overwrite=args.overwrite)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for stage, losses in summary["losses"].items():
        if losses:
            last = np.mean(losses[-max(1, len(losses) // 10):])
            print(f"  {stage}: first loss {losses[0]:.4f}, mean of the last 10% {last:.4f}")
    return 0

