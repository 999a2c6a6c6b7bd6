"""Command line: fine-tune a retrieval adapter (models/momask/adapter.py) on a frozen MoMask-layout model
written by `python -m training momask`, on a motion database.

    python -m training momask-adapter --db-root R --db NAME --model DIR --out ADIR [--steps N] [--seed N]
                                      [--references 2] [--threads T]

Each caption's references are its top retrievals from the database, the clip itself and its mirrored
copy excluded (so the adapter learns to use references of other motions, as the demo model's refiner
does). ADIR receives adapter.safetensors + adapter.json. Errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..common.errors import InputError
from ..models.momask import load_momask
from ..models.momask.adapter import RetrievalAdapter, save_adapter
from ..models.momask.train import TrainingSet, pad_text_features, train_adapter
from ..models.t2m.data import load_training_data
from ..retrieval import open_database


def train(db_root, db_name: str, model_dir, out, *, steps: int = 500, seed: int = 0, references: int = 2,
          batch_size: int = 32, threads: int | None = None, log=print) -> dict:
    if Path(out).exists() and any(Path(out).iterdir()):
        raise InputError("out", f"{out}: exists and is not empty; choose a new folder")
    if isinstance(references, bool) or not isinstance(references, int) or not 1 <= references <= 8:
        raise InputError("references", f"{references!r}: expected 1..8")
    if threads:
        torch.set_num_threads(int(threads))
    model = load_momask(model_dir, convert=False)
    db = open_database(db_root, db_name)
    if db.text_encoder_id != model.config.text_encoder:
        raise InputError("db", f"{db_name!r} is embedded with {db.text_encoder_id!r}; the model is conditioned on "
                               f"{model.config.text_encoder!r}")
    data = load_training_data(db, fps=model.fps, num_retrieved=references + 2, min_rows=model.frames_per_token * 2,
                              log=log)
    neighbours = []
    for c, ids in enumerate(data.neighbours):
        e = int(data.caption_entry[c])
        twin = int(data.mirror_of[e])
        neighbours.append([n for n in ids if n not in (e, twin) and int(data.mirror_of[n]) != e][:references])
    text = pad_text_features(data.text_embeddings, model.config.masked.clip_dim)
    torch.manual_seed(seed)                 # the adapter's own initialisation
    adapter = RetrievalAdapter.for_model(model)
    losses = train_adapter(model, adapter, TrainingSet(data.features, data.caption_entry, text), neighbours,
                           steps=steps, batch_size=batch_size, seed=seed, log=log)
    save_adapter(out, adapter, {"model": str(model_dir), "database": db_name, "steps": steps, "seed": seed,
                                "references": references})
    log(f"wrote {out}")
    return {"losses": losses}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training momask-adapter", description=__doc__.split("\n\n")[0])
    p.add_argument("--db-root", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--model", required=True, help="a MoMask folder written by python -m training momask")
    p.add_argument("--out", required=True, help="folder for adapter.safetensors + adapter.json")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--references", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    try:
        res = train(args.db_root, args.db, args.model, args.out, steps=args.steps, seed=args.seed,
                    references=args.references, batch_size=args.batch_size, threads=args.threads)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    losses = res["losses"]
    last = np.mean(losses[-max(1, len(losses) // 10):])
    print(f"  adapter: first loss {losses[0]:.4f}, mean of the last 10% {last:.4f}")
    return 0
