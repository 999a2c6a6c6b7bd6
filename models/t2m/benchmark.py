"""Time training steps and generation of a preset on this machine (no database needed).

    cd <pack folder> && python -m models.t2m.benchmark [--config small] [--steps 20] [--threads N]

Uses the built-in library clips (features) with random unit text embeddings and random
neighbours: step cost does not depend on their values. Prints seconds per step per stage,
an estimate for the preset's full step counts, parameter count and checkpoint size.
"""
from __future__ import annotations

import argparse
import sys
import time


def run(config: str, steps: int, threads: int | None) -> None:
    import numpy as np
    import torch

    from ..motion import humanml3d as h3d
    from ..motion import library
    from .config import preset
    from .data import TrainingData
    from .model import T2MModel
    from .normalization import feature_stats
    from .trainer import (STAGES, _make_optimizer, _masked_step, _refiner_step, _residual_step, _retrieval_latents,
                          _tokenizer_step, stage_steps)

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
    for name in STAGES:
        if not totals[name]:
            continue
        opt = _make_optimizer(model, name, train_cfg)
        for module in (model.tokenizer, model.masked, model.residual, model.refiner):
            if module is not None:
                module.train(module is getattr(model, name))
        latents = _retrieval_latents(model, data) if name == "masked" else None
        times = []
        for i in range(steps + 2):
            gen = torch.Generator().manual_seed(i)
            t = time.perf_counter()
            if name == "tokenizer":
                loss, _ = _tokenizer_step(model, data, train_cfg, rng)
            elif name == "masked":
                loss, _ = _masked_step(model, data, train_cfg, rng, gen, latents)
            elif name == "residual":
                loss, _ = _residual_step(model, data, train_cfg, rng, gen)
            else:
                loss, _ = _refiner_step(model, data, train_cfg, rng, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        # The mean, not the median: crop lengths vary per step and long crops cost more.
        per = float(np.mean(times[2:]))
        estimate += per * totals[name]
        print(f"{name:9s}: mean {per * 1000:.1f} ms/step (median {np.median(times[2:]) * 1000:.1f}, "
              f"min {min(times[2:]) * 1000:.1f}) x {totals[name]} steps = {per * totals[name] / 60:.1f} min")
    print(f"estimated training time for the preset's steps: {estimate / 60:.1f} min (plus ~20 s of data loading)")
    model.eval()
    e = emb[0]
    for frames in (60, 196):
        t = time.perf_counter()
        model.generate(e, [feats[0], feats[1]], length_frames=frames, seed=0)
        print(f"generate {frames} frames, 10 steps, 2 retrieved: {time.perf_counter() - t:.2f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.t2m.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--steps", type=int, default=20, help="timed steps per stage (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    run(args.config, args.steps, args.threads)
    return 0


if __name__ == "__main__":
    from common.standalone import run_in_pack     # run as a top-level module: absolute import

    sys.exit(run_in_pack("models.t2m.benchmark"))
