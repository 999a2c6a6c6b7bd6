"""Command line: train the text-to-motion model on a motion database.

    cd <pack folder>
    python -m models.t2m.train --db-root R --db NAME --out DIR [--config small|paper|tiny] [--seed N]
                               [--steps TOK,MASKED,RESIDUAL[,REFINER]] [--batch-size B] [--resume] [--stop-at N]

Stages run in order (tokenizer, masked transformer, residual transformer, retrieval refiner);
--resume on a finished model from before the refiner existed trains only the refiner. DIR receives
model.safetensors + config.json (the model) and train_state.* (to --resume). Errors print one
line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys


def _steps(text: str) -> tuple:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers TOK,MASKED,RESIDUAL[,REFINER], got {text!r}") from None
    if len(parts) not in (3, 4) or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"expected three or four integers >= 0 TOK,MASKED,RESIDUAL[,REFINER], "
                                         f"got {text!r}")
    return parts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.t2m.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--db-root", required=True, help="motionrag models folder holding databases/<name>")
    p.add_argument("--db", required=True, help="motion database name")
    p.add_argument("--out", required=True, help="output folder for the checkpoint")
    p.add_argument("--config", default="small", choices=["tiny", "small", "paper"], help="model and training preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=_steps, default=None,
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
    from ...retrieval.errors import RetrievalError
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import TrainingDataError
    from .trainer import TrainingError, train

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


if __name__ == "__main__":
    from common.standalone import run_in_pack     # run as a top-level module: absolute import

    sys.exit(run_in_pack("models.t2m.train"))
