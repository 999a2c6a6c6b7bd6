"""Command line: train the offline image-to-video motion model (optical flow + EfficientNet-Lite0) on a
video database built with the offline encoders (default: the built-in one).

    cd <pack folder>
    python -m training i2v --db-root R [--db builtin_videos] --out DIR [--seed N]
                           [--steps STAGE1,STAGE2] [--refs K] [--threads T]

Stage 1 (motion Resampler reconstructs each clip's flow) then stage 2 (CAMA with retrieved references,
the clip's own video excluded). DIR receives model.safetensors + config.json. Errors print one line
and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..models.i2v.errors import CheckpointError
from ..models.i2v.offline.data import OfflineDataError, clips_from_database
from ..models.i2v.offline.model import save_model
from ..models.i2v.offline.train import TrainSettings, train
from ..retrieval.builtin_video_db import ensure_builtin_video_database
from ..retrieval.database import open_database
from ..retrieval.errors import RetrievalError
from ..retrieval.text_encoder import get_text_encoder


def open_training_database(db_root, db: str):
    """The video database `db` under `db_root`; the built-in one is built there first when missing."""
    if db == "builtin_videos":
        ensure_builtin_video_database(Path(db_root))
    return open_database(db_root, db)


def train_from_database(db_root, db: str, settings: TrainSettings, *, progress: bool = False):
    """Train on the clips of video database `db`, embedding captions with the database's own text encoder.
    Returns the model and what to record about the run (offline.train.train's, plus the database name)."""
    database = open_training_database(db_root, db)
    try:
        clips = clips_from_database(database)
        encoder = get_text_encoder(database.text_encoder_id, database.root)
        database.check_encoder(encoder)
    finally:
        database.close()

    def show(stage, step, total, loss):
        if step % 250 == 0 or step == total:
            print(f"stage {stage}: step {step}/{total} loss {loss:.4f}", file=sys.stderr, flush=True)

    model, made = train(clips, encoder, settings, progress=show if progress else None)
    made["database"] = db
    return model, made


def _steps(text: str) -> tuple:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers STAGE1,STAGE2, got {text!r}") from None
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected two integers >= 1 STAGE1,STAGE2, got {text!r}")
    return parts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training i2v", description=__doc__.split("\n\n")[0])
    p.add_argument("--db-root", required=True, help="motionrag models folder holding databases/<name>")
    p.add_argument("--db", default="builtin_videos", help="video database with flow + Lite0 payloads "
                   "(builtin_videos is built there first when missing)")
    p.add_argument("--out", required=True, help="output folder for model.safetensors + config.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=_steps, default=None, help="STAGE1,STAGE2 step counts (default 1000,150)")
    p.add_argument("--refs", type=int, default=None, help="references per training episode (default 4)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the same bytes every run)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    settings = replace(TrainSettings(), seed=args.seed)
    if args.steps:
        settings = replace(settings, stage1_steps=args.steps[0], stage2_steps=args.steps[1])
    if args.refs:
        settings = replace(settings, refs=args.refs)
    try:
        model, made = train_from_database(args.db_root, args.db, settings, progress=not args.no_progress)
        save_model(args.out, model, made)
    except (RetrievalError, CheckpointError, OfflineDataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"saved {args.out}: {made['train_clips']} training clips from {made['train_videos']} videos; "
          f"stage 1 loss {made['stage1_final_loss']:.4f} ({made['stage1_seconds']} s), "
          f"stage 2 loss {made['stage2_final_loss']:.4f} ({made['stage2_seconds']} s)")
    return 0
