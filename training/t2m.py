"""Command line: train the text-to-motion model on a motion database.

    cd <pack folder>
    python -m training t2m --db-root R --db NAME --out DIR [--config small|paper|tiny] [--seed N]
                           [--steps TOK,MASKED,RESIDUAL[,REFINER]] [--batch-size B] [--resume] [--stop-at N]

Stages run in order (tokenizer, masked transformer, residual transformer, retrieval refiner);
--resume on a finished model from before the refiner existed trains only the refiner. DIR receives
model.safetensors + config.json (the model) and train_state.* (to --resume). Errors print one
line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

import torch

from ..models.t2m.checkpoint import CheckpointError
from ..models.t2m.config import ConfigError
from ..models.t2m.data import TrainingDataError, load_training_data
from ..models.t2m.trainer import TrainingError, fit, prepare_run
from ..retrieval import open_database
from ..retrieval.errors import RetrievalError
from .options import step_counts


def train(db_root, db_name: str, out, *, config: str = "small", seed: int = 0, steps: tuple | None = None,
          batch_size: int | None = None, save_every: int | None = None, resume: bool = False,
          stop_at: int | None = None, threads: int | None = None, device: str = "cpu", progress: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Train on motion database `db_name` under `db_root`, writing checkpoints to `out`.

    steps: (tokenizer, masked, residual[, refiner]) step counts (default: the preset's). stop_at: stop
    after this many steps in total over all stages, leaving a resumable checkpoint.
    Returns a summary (steps done, last losses, seconds, parameter count)."""
    if threads:
        torch.set_num_threads(int(threads))
    run = prepare_run(out, db_name, config=config, seed=seed, steps=steps, batch_size=batch_size,
                      save_every=save_every, resume=resume, device=device, log=log)
    db = open_database(db_root, db_name)
    cfg = run.model_cfg
    data = load_training_data(db, fps=cfg.fps, num_retrieved=cfg.transformer.num_retrieved,
                              min_rows=run.model.frames_per_token, text_encoder=cfg.text_encoder, log=log)
    return fit(run, data, stop_at=stop_at, progress=progress, log=log)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training t2m", description=__doc__.split("\n\n")[0])
    p.add_argument("--db-root", required=True, help="motionrag models folder holding databases/<name>")
    p.add_argument("--db", required=True, help="motion database name")
    p.add_argument("--out", required=True, help="output folder for the checkpoint")
    p.add_argument("--config", default="small", choices=["tiny", "small", "paper"], help="model and training preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=step_counts("TOK,MASKED,RESIDUAL[,REFINER]"), default=None,
                   help="TOK,MASKED,RESIDUAL[,REFINER] step counts (default: preset's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps within a stage")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop after N steps in total (all stages), leaving a resumable checkpoint")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (checkpoints are device-free)")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = train(args.db_root, args.db, args.out, config=args.config, seed=args.seed, steps=args.steps,
                        batch_size=args.batch_size, save_every=args.save_every, resume=args.resume,
                        stop_at=args.stop_at, threads=args.threads, device=args.device, progress=not args.no_progress)
    except (RetrievalError, CheckpointError, ConfigError, TrainingDataError, TrainingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'stopped' if summary['stopped'] else 'finished'}: steps done {summary['done']}; checkpoint in {args.out}")
    for stage, info in summary.get("last", {}).items():
        print(f"  last {stage} step: " + ", ".join(f"{k} {v:.4f}" for k, v in info.items()))
    return 0
