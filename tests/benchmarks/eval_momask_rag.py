"""Issue 15 item 3: does retrieval help a MoMask-layout model that was not trained with it?

The model: MoMask's released layout, trained by the pack's own trainer (`python -m training momask`)
on the built-in library WITHOUT the held-out actions. The retrieval: the training-free prior on
base-layer decoding (models/momask/generate.py, token_prior) with strength S. The protocol is
eval_t2m.py's (its pieces are imported, not copied): the same 4 held-out actions added to the
database only by database update, the same prompts (library captions + paraphrases), the same
retrieval (top-2, one per source clip, re-ranked for the target length), the same DTW-MPJPE code,
the held-out clip's own length, several generation seeds.

Run (from the pack folder):
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
    .venv/bin/python tests/benchmarks/eval_t2m.py build-train-db ROOT
    .venv/bin/python -m training momask --db-root ROOT --db heldout_train --out DIR_0 --seed 0 --threads 1
    .venv/bin/python tests/benchmarks/eval_momask_rag.py choose-strength ROOT DIR_0 [--strengths 0,0.5,1,2,4,8]
        the strength, chosen on TRAINED actions only (below), never on the held-out prompts
    .venv/bin/python tests/benchmarks/eval_momask_rag.py eval ROOT DIR_0 [DIR_1 ...] --strength S [--seeds 5]
                                                              [--json FILE]
    .venv/bin/python tests/benchmarks/eval_momask_rag.py summary FILE [FILE ...]
        the over-models table from the --json files of evaluations run one model at a time

choose-strength (dev data = the 16 TRAINED actions, not their mirrors): each action prompted with its
first two library captions, references retrieved from the training database (which holds the prompted
clip, as the updated database holds a held-out clip), DTW-MPJPE to the prompted clip, 2 generation
seeds, for every strength of the grid; it prints the table and the best strength. Caveat: on trained
actions the model alone already knows the motion, so the prior has less to add there than on held-out
actions; the choice is conservative (it can only under-state the strength held-out prompts would like).

eval prints, for each model, eval_t2m.py's tables (RAG on = prior at strength S; RAG off = strength 0,
MoMask's own decoding draw for draw; retrieval-only = the top-1 clip; the tokenizer round trip is this
model's RVQ-VAE, all layers), then one table over the models (training seeds).

Text features: the databases' MiniLM (all-MiniLM-L6-v2, 384 values) zero-padded to MoMask's 512, as
the model was trained (its opt.txt records it). A released MoMask is conditioned on CLIP ViT-B/32,
which is not on this machine: these figures are for our small model, 16 actions, 20 motion-capture
clips, and are NOT comparable to published HumanML3D figures nor a measurement of a released model.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_t2m as base  # noqa: E402  (sets up the pack's import path and offline mode)

MM = base.MM
GENERATION = dict(guidance=4.0, steps=10)        # eval_t2m's text guidance and step count
STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def load(model_dir, root):
    from motionrag_suite.models.momask import load_momask
    from motionrag_suite.retrieval import get_text_encoder

    model = load_momask(model_dir, convert=False)
    if model.config.text_encoder.startswith("openai/clip"):
        raise SystemExit(f"{model_dir}: conditioned on CLIP ({model.config.text_encoder}); this benchmark feeds the "
                         f"database's encoder and is for models written by `python -m training momask`")
    return model, get_text_encoder(model.config.text_encoder, root)


def condition(model, encoder, prompt: str):
    """(unpadded embedding for retrieval, padded text feature for the model)."""
    from motionrag_suite.models.momask.train import pad_text_features

    emb = encoder.encode([prompt])[0]
    return emb, pad_text_features(emb[None], model.config.masked.clip_dim)[0]


def features_of(motion, fps: float):
    import numpy as np

    from motionrag_suite.models.motion import humanml3d as h3d

    if abs(motion.fps - fps) > 1e-6:
        motion = motion.resampled(fps)
    feats = motion.features if motion.features is not None else h3d.joints_to_features(motion.joints)
    return np.asarray(feats, dtype=np.float64)


def references(db, emb, length: int, prompt: str):
    from motionrag_suite.retrieval.refs import MotionRefs

    hits = db.search_vector(emb, base.REFERENCES, target_length=length, one_per_source=True)
    return hits, MotionRefs.from_hits(prompt, hits, database=db, target_length=length).motions()


def round_trip(model, clip):
    """The clip through this model's RVQ-VAE (all layers): the floor under its DTW-MPJPE."""
    import numpy as np
    import torch

    feats = features_of(clip, model.fps)
    n = len(feats) // model.frames_per_token * model.frames_per_token
    x = torch.from_numpy(model.normalise(feats[:n]).astype(np.float32))[None]
    ids = model.rvq.encode(x)
    out = model.denormalise(model.rvq.decode(ids)[0].numpy())
    return model.joints(out.astype(np.float32))


def run_eval(root, model_dir, seeds: int, strength: float, adapter_dir=None) -> dict:
    """eval_t2m.run_eval's rows for a MoMask-layout model (same keys, so eval_t2m.tables prints them).
    With `adapter_dir`, RAG on is the retrieval adapter (prior strength `strength`, 0 = adapter only)."""
    import torch

    from motionrag_suite.models.momask.adapter import attach, load_adapter

    from motionrag_suite.models.motion import library
    from motionrag_suite.models.t2m import metrics as M

    torch.set_num_threads(1)
    db = base.build_eval_db(root, "heldout")
    model, encoder = load(model_dir, root)
    head = attach(model, load_adapter(adapter_dir, model)) if adapter_dir else None
    fps = model.fps
    rows, diversity, retrieved = [], [], []
    t0 = time.perf_counter()
    for action in base.HELD_OUT:
        truth = library.load_clip(action).joints
        length = len(truth)
        prompts = [(c, "caption") for c in library.clip_captions(action)] + \
                  [(p, "paraphrase") for p in base.PARAPHRASES[action]]
        for prompt, kind in prompts:
            emb, cond = condition(model, encoder, prompt)
            hits, refs = references(db, emb, length, prompt)
            ref_feats = [features_of(r, fps) for r in refs]
            retrieved.append(dict(action=action, prompt=prompt, kind=kind, hits=[h.name for h in hits],
                                  top1_ok=hits[0].source_clip == action))
            outs = {c: [] for c in base.CONDITIONS}
            for seed in range(seeds):
                if head is not None:
                    head.memory = head.adapter.memory(model.masked, model.reference_tokens(ref_feats))
                on = model.generate(cond, length_frames=length, seed=seed, reference_features=ref_feats,
                                    retrieval_strength=strength, **GENERATION).joints
                if head is not None:
                    head.memory = None                  # RAG off: the base model, exactly
                off = model.generate(cond, length_frames=length, seed=seed, **GENERATION).joints
                for name, j in (("rag_on", on), ("rag_off", off), ("retrieval_only", refs[0].joints)):
                    outs[name].append(j)
                    row = dict(action=action, prompt=prompt, kind=kind, seed=seed, cond=name,
                               dtw_mpjpe=M.dtw_mpjpe(j, truth) * MM, skating=M.foot_skating(j, fps),
                               jerk=M.jerk(j, fps), bone_var=M.bone_length_variance(j) * MM * MM)
                    if name == "rag_on":
                        row["to_ref"] = M.dtw_mpjpe(j, refs[0].joints) * MM
                        row["to_nearest_ref"] = min(M.dtw_mpjpe(j, r.joints) for r in refs) * MM
                    rows.append(row)
            for name in base.CONDITIONS:
                diversity.append(dict(action=action, prompt=prompt, kind=kind, cond=name,
                                      value=M.diversity(outs[name]) * MM))
        print(f"  {action}: done at {time.perf_counter() - t0:.0f} s", flush=True)
    truth_rows = []
    for a in base.HELD_OUT:
        clip = library.load_clip(a)
        for what, j in (("mocap", clip.joints), ("tokenizer", round_trip(model, clip))):
            truth_rows.append(dict(action=a, what=what, dtw_mpjpe=M.dtw_mpjpe(j, clip.joints) * MM,
                                   skating=M.foot_skating(j, fps), jerk=M.jerk(j, fps),
                                   bone_var=M.bone_length_variance(j) * MM * MM))
    return dict(rows=rows, diversity=diversity, retrieved=retrieved, truth=truth_rows, seeds=seeds,
                model=str(model_dir) + (f" + adapter {adapter_dir}" if adapter_dir else ""), db=db.name,
                mode="heldout", guidance_retrieval=strength,
                seconds=time.perf_counter() - t0)


def seed_means(rows, cond: str) -> list:
    """The DTW-MPJPE averaged over prompts, one value per generation seed."""
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for s in seeds:
        vals = [r["dtw_mpjpe"] for r in rows if r["seed"] == s and r["cond"] == cond]
        out.append(sum(vals) / len(vals))
    return out


def summary(results: list) -> str:
    import numpy as np

    lines = ["### Over models (training seeds)", "",
             "| model | RAG off (mm) | RAG on (mm) | change | change per generation seed (mean ± std) |",
             "|---|---|---|---|---|"]
    changes, ons, offs = [], [], []
    for res in results:
        on, off = seed_means(res["rows"], "rag_on"), seed_means(res["rows"], "rag_off")
        per = [100 * (a - b) / b for a, b in zip(on, off)]
        change = 100 * (np.mean(on) - np.mean(off)) / np.mean(off)
        changes.append(change)
        ons.append(np.mean(on))
        offs.append(np.mean(off))
        lines.append(f"| `{res['model']}` | {np.mean(off):.1f} ± {np.std(off, ddof=1):.1f} | "
                     f"{np.mean(on):.1f} ± {np.std(on, ddof=1):.1f} | {change:+.1f}% | "
                     f"{np.mean(per):+.1f} ± {np.std(per, ddof=1):.1f}% |")
    if len(results) > 1:
        lines.append(f"| **mean ± std over {len(results)} models** | {np.mean(offs):.1f} ± "
                     f"{np.std(offs, ddof=1):.1f} | {np.mean(ons):.1f} ± {np.std(ons, ddof=1):.1f} | "
                     f"{np.mean(changes):+.1f} ± {np.std(changes, ddof=1):.1f}% | |")
    return "\n".join(lines)


def choose_strength(root, model_dir, strengths, seeds: int = 2, captions: int = 2) -> dict:
    """DTW-MPJPE per strength on the TRAINED actions (dev data); see the module's docstring."""
    import numpy as np
    import torch

    from motionrag_suite.models.motion import library
    from motionrag_suite.models.t2m import metrics as M
    from motionrag_suite.retrieval import open_database

    torch.set_num_threads(1)
    db = open_database(root, base.TRAIN_DB)
    model, encoder = load(model_dir, root)
    actions = [n for n in base.kept_names() if not n.startswith(library.MIRROR_PREFIX)]
    table = {s: [] for s in strengths}           # per strength: one value per (action, caption, seed)
    t0 = time.perf_counter()
    for action in actions:
        truth = library.load_clip(action).joints
        for prompt in library.clip_captions(action)[:captions]:
            emb, cond = condition(model, encoder, prompt)
            _, refs = references(db, emb, len(truth), prompt)
            ref_feats = [features_of(r, model.fps) for r in refs]
            for s in strengths:
                for seed in range(seeds):
                    j = model.generate(cond, length_frames=len(truth), seed=seed, reference_features=ref_feats,
                                       retrieval_strength=s, **GENERATION).joints
                    table[s].append(M.dtw_mpjpe(j, truth) * MM)
    means = {s: float(np.mean(v)) for s, v in table.items()}
    best = min(means, key=means.get)
    return dict(means=means, best=best, actions=actions, seconds=time.perf_counter() - t0, seeds=seeds,
                captions=captions)


def main(argv=None) -> int:
    import json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("choose-strength")
    c.add_argument("root")
    c.add_argument("model")
    c.add_argument("--strengths", default=",".join(f"{s:g}" for s in STRENGTHS))
    c.add_argument("--seeds", type=int, default=2)
    e = sub.add_parser("eval")
    e.add_argument("root")
    e.add_argument("models", nargs="+")
    e.add_argument("--strength", type=float, required=True, help="the prior's strength for RAG on")
    e.add_argument("--seeds", type=int, default=5)
    e.add_argument("--json", default=None, help="also write every measured row here")
    e.add_argument("--adapters", nargs="*", default=None,
                   help="one retrieval-adapter folder per model (python -m training momask-adapter): RAG on = "
                        "adapter + prior at --strength (0: the adapter alone)")
    m = sub.add_parser("summary", help="the over-models table from --json files of separate eval runs")
    m.add_argument("json_files", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "summary":
        print(summary([res for f in args.json_files for res in json.loads(Path(f).read_text())]))
        return 0
    if args.cmd == "choose-strength":
        strengths = [float(s) for s in args.strengths.split(",")]
        res = choose_strength(args.root, args.model, strengths, args.seeds)
        print(f"dev data: {len(res['actions'])} TRAINED actions x {res['captions']} captions x {res['seeds']} seeds, "
              f"references from {base.TRAIN_DB!r} ({res['seconds']:.0f} s)\n")
        print("| strength | DTW-MPJPE to the prompted clip (mm) |\n|---|---|")
        for s, m in res["means"].items():
            print(f"| {s:g} | {m:.1f} |")
        print(f"\nbest strength on trained actions: {res['best']:g}")
        return 0
    if args.seeds < 2:
        p.error(f"--seeds: expected at least 2, got {args.seeds}")
    results = []
    if args.adapters is not None and len(args.adapters) != len(args.models):
        p.error(f"--adapters: expected one per model ({len(args.models)}), got {len(args.adapters)}")
    for i, model_dir in enumerate(args.models):
        res = run_eval(args.root, model_dir, args.seeds, args.strength,
                       args.adapters[i] if args.adapters is not None else None)
        results.append(res)
        print(base.tables(res, f"{model_dir}: MoMask layout, held-out actions (retrieval prior strength "
                               f"{args.strength:g} where the header says guidance_retrieval)"))
        print()
    print(summary(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
