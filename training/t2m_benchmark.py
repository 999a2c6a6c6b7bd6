"""Time training steps and generation of a preset on this machine (no database needed).

    cd <pack folder> && python -m training t2m-benchmark [--config small] [--steps 20] [--threads N]

Uses the built-in library clips (features) with random unit text embeddings and random
neighbours: step cost does not depend on their values. Prints seconds per step per stage,
an estimate for the preset's full step counts, parameter count and checkpoint size.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ..models.motion import humanml3d as h3d
from ..models.motion import library
from ..models.t2m.config import preset
from ..models.t2m.data import TrainingData
from ..models.t2m.model import T2MModel
from ..models.t2m.normalization import feature_stats
from ..models.t2m.trainer import STAGES, make_optimizer, stage_steps, train_only


def run(config: str, steps: int, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    model_cfg, train_cfg = preset(config)
    names = library.list_clips()
    feats = [h3d.joints_to_features(library.load_clip(n).joints) for n in names]
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4 * len(names), model_cfg.transformer.text_dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    k = model_cfg.transformer.num_retrieved
    data = TrainingData(names=names, features=feats, caption_entry=np.repeat(np.arange(len(names)), 4),
                        captions=[""] * len(emb), text_embeddings=emb,
                        neighbours=[list(rng.choice(len(names), k, replace=False)) for _ in emb],
                        mirror_of=np.full(len(names), -1), usable=np.arange(len(names)))
    torch.manual_seed(0)
    model = T2MModel(model_cfg)
    model.tokenizer.set_stats(*feature_stats(feats))
    totals = stage_steps(train_cfg, model_cfg)
    n_params = model.num_parameters()
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(f"config {config}: {n_params:,} parameters, checkpoint {size / 2 ** 20:.2f} MiB; "
          f"torch threads {torch.get_num_threads()}; batch {train_cfg.batch_size}")
    estimate = 0.0
    for stage in STAGES:
        if not totals[stage.name]:
            continue
        opt = make_optimizer(model, stage, train_cfg)
        train_only(model, stage)
        prepared = stage.prepare(model, data) if stage.prepare is not None else None
        times = []
        for i in range(steps + 2):
            gen = torch.Generator().manual_seed(i)
            t = time.perf_counter()
            loss, _ = stage.step(model, data, train_cfg, rng, gen, prepared)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        # The mean, not the median: crop lengths vary per step and long crops cost more.
        per = float(np.mean(times[2:]))
        total = totals[stage.name]
        estimate += per * total
        print(f"{stage.name:9s}: mean {per * 1000:.1f} ms/step (median {np.median(times[2:]) * 1000:.1f}, "
              f"min {min(times[2:]) * 1000:.1f}) x {total} steps = {per * total / 60:.1f} min")
    print(f"estimated training time for the preset's steps: {estimate / 60:.1f} min (plus ~20 s of data loading)")
    model.eval()
    e = emb[0]
    for frames in (60, 196):
        t = time.perf_counter()
        model.generate(e, [feats[0], feats[1]], length_frames=frames, seed=0)
        print(f"generate {frames} frames, 10 steps, 2 retrieved: {time.perf_counter() - t:.2f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training t2m-benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--steps", type=int, default=20, help="timed steps per stage (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    run(args.config, args.steps, args.threads)
    return 0
