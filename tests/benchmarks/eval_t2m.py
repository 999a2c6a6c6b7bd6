"""Issue 4's evaluation of retrieval-augmented text-to-motion: zero-shot by database update.

Run (from the pack folder):
    .venv/bin/python tests/benchmarks/eval_t2m.py build-train-db ROOT
        builds database "heldout_train" under ROOT: the built-in library WITHOUT the held-out
        actions (and without their mirrored copies); train on it with
        python -m training t2m --db-root ROOT --db heldout_train --out DIR --config small --seed 0 --threads 1
    .venv/bin/python tests/benchmarks/eval_t2m.py eval ROOT MODEL_DIR [--db heldout|full] [--seeds 5]
                                                        [--label TEXT] [--json FILE]
        --db heldout (default): builds "heldout_eval" = the training clips + the held-out clips
        added afterwards by database update (add_entries) and evaluates the held-out actions;
        --db full: the whole built-in library ("builtin_full"), for a model that trained on
        every clip (the shipped one: a sanity row on IN-training actions, not zero-shot).
    .venv/bin/python tests/benchmarks/eval_t2m.py library ROOT MODEL_DIR [--seeds 3] [--token-prior S] [--json FILE]
        every distinct caption of the built-in library prompted to a model trained on the whole
        library (the shipped one), retrieving from the whole library: median and mean DTW-MPJPE to the
        caption's own clip, RAG on and off (issue 15 item 5: does the demo model reproduce its library?).
    .venv/bin/python tests/benchmarks/eval_t2m.py compare-weights DIR_A DIR_B
        max abs difference of every tensor in two model.safetensors, and their SHA-256.

Held-out group, chosen before any result was seen: cartwheel, backflip, crawl, kick (and
M_cartwheel, M_backflip, M_crawl, M_kick). Why these four: they are a mix of kinds of motion --
two acrobatics that leave the ground in different ways (sideways hand-supported rotation, backward
aerial flip), one ground-level locomotion on elbows and knees, and one standing strike -- and each
has at most a loose relative among the 16 kept actions (backflip ~ roll, crawl ~ getup, kick ~
spinkick), so retrieval has to supply what the model never saw rather than something a close
training neighbour already taught it.

Conditions (same model, same prompts, same generation seeds):
- RAG on: the text's top-2 retrievals from the updated database (held-out clips included),
  one per source clip, re-ranked for the target length (as the node retrieves),
  guidance_retrieval=1 (the node's default; --guidance-retrieval changes it), guidance_text=4, 10 steps,
  the model's default retrieval token prior (--token-prior changes it; 0 = the decoding from before it).
- RAG off: no references at all (retrieved_motions=[]) and guidance_retrieval=0: the model
  sees only the text embedding; its retrieval refiner (models/t2m/refiner.py), when it has one,
  sees no reference either and only corrects the decoded motion.
- retrieval-only: the top-1 retrieved clip, returned as is (not resampled: DTW handles the
  length). When retrieval finds the held-out clip itself its DTW-MPJPE is exactly 0 -- the
  database holds the answer; a mirrored copy (M_...) counts as found but scores > 0.
Every condition generates the held-out clip's own number of frames.
Also printed: the held-out mocap's own skating / jerk / bone-length variance, and the model's
tokenizer round trip of each held-out clip (encode to codes, decode): the floor of DTW-MPJPE
the tokens alone can reach (a model with a retrieval refiner can go below it with RAG on, since
the retrieved motion reaches its output without passing through the tokens). "to own ref" is
RAG on's DTW-MPJPE to its top-1 reference, and diversity the mean DTW-MPJPE between the seeds'
outputs for one prompt: the two numbers that tell a generator from a copy of its reference.
Metrics: models/t2m/metrics.py. These numbers come from 20 motion-capture clips (16 in
training); they are NOT comparable to published HumanML3D figures (FID, R-precision, MPJPE).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))  # the pack root: common.standalone
from common.standalone import load_pack  # noqa: E402

load_pack()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HELD_OUT = ("cartwheel", "backflip", "crawl", "kick")
TRAIN_DB = "heldout_train"
EVAL_DB = "heldout_eval"


def _specs(names):
    from motionrag_suite.models.motion import library
    from motionrag_suite.retrieval import EntrySpec

    for name in names:
        motion = library.load_clip(name)
        mirrored = name.startswith(library.MIRROR_PREFIX)
        twin = name[len(library.MIRROR_PREFIX):] if mirrored else None
        yield EntrySpec(motion=motion, captions=library.clip_captions(name), name=name, mirrored=mirrored,
                        mirror_of=twin, source_clip=twin or name)


def _is_held_out(name: str) -> bool:
    from motionrag_suite.models.motion import library

    base = name[len(library.MIRROR_PREFIX):] if name.startswith(library.MIRROR_PREFIX) else name
    return base in HELD_OUT


def kept_names() -> list:
    from motionrag_suite.models.motion import library

    return [n for n in library.list_clips() if not _is_held_out(n)]


def held_out_names() -> list:
    from motionrag_suite.models.motion import library

    return [n for n in library.list_clips() if _is_held_out(n)]


def build_train_db(root) -> None:
    from motionrag_suite.retrieval import build_database

    names = kept_names()
    build_database(root, TRAIN_DB, list(_specs(names)), overwrite=True,
                   description=f"built-in library without {', '.join(HELD_OUT)}")
    print(f"built {TRAIN_DB!r}: {len(names)} entries ({', '.join(names)})")


EVAL_DB_FULL = "builtin_full"
GENERATION = dict(guidance_text=4.0, steps=10)      # the node's defaults
REFERENCES = 2                                      # the node's default; the model trained with 2

# Written for this evaluation; none is a database caption, so retrieval has to generalise.
PARAPHRASES = {
    "cartwheel": ["someone wheels sideways over their hands to the left", "a gymnast does a cartwheel"],
    "backflip": ["a person jumps and does a back flip", "someone flips over backwards and lands standing up"],
    "crawl": ["a soldier crawls along the ground", "a person moves forward on hands and knees close to the floor"],
    "kick": ["a person kicks with the right foot", "someone does a karate kick with their right leg"],
}
CONDITIONS = ("rag_on", "rag_off", "retrieval_only")
MM = 1000.0


def build_eval_db(root, mode: str):
    from motionrag_suite.retrieval import add_entries, build_database, open_database

    if mode == "full":
        from motionrag_suite.models.motion import library
        build_database(root, EVAL_DB_FULL, list(_specs(library.list_clips())), overwrite=True,
                       description="the whole built-in library")
        return open_database(root, EVAL_DB_FULL)
    build_database(root, EVAL_DB, list(_specs(kept_names())), overwrite=True,
                   description=f"built-in library without {', '.join(HELD_OUT)}, then updated")
    added = add_entries(root, EVAL_DB, list(_specs(held_out_names())))
    print(f"database update: added {added} held-out entries to {EVAL_DB!r}")
    return open_database(root, EVAL_DB)


def _mean_std(values):
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def run_eval(root, model_dir, mode: str, seeds: int, g_retr: float = 1.0, generate_options: dict | None = None) -> dict:
    import numpy as np
    import torch

    from motionrag_suite.models.motion import library
    from motionrag_suite.models.t2m import metrics as M
    from motionrag_suite.models.t2m.checkpoint import load_model
    from motionrag_suite.retrieval import get_text_encoder
    from motionrag_suite.retrieval.refs import MotionRefs

    torch.set_num_threads(1)
    db = build_eval_db(root, mode)
    model = load_model(model_dir)
    encoder = get_text_encoder(model.config.text_encoder, root)
    fps = model.config.fps
    options = dict(generate_options or {})
    rows = []            # one per (action, prompt, seed, condition)
    diversity = []       # one per (action, prompt, condition)
    retrieved = []       # one per (action, prompt)
    t0 = time.perf_counter()
    for action in HELD_OUT:
        truth = library.load_clip(action).joints
        length = len(truth)
        prompts = [(c, "caption") for c in library.clip_captions(action)] + [(p, "paraphrase") for p in PARAPHRASES[action]]
        for prompt, kind in prompts:
            emb = encoder.encode([prompt])[0]
            hits = db.search_vector(emb, REFERENCES, target_length=length, one_per_source=True)
            refs = MotionRefs.from_hits(prompt, hits, database=db, target_length=length).motions()
            top1_ok = hits[0].source_clip == action
            retrieved.append(dict(action=action, prompt=prompt, kind=kind, hits=[h.name for h in hits], top1_ok=top1_ok))
            outs = {c: [] for c in CONDITIONS}
            for seed in range(seeds):
                on = model.generate(emb, refs, length, seed, guidance_retrieval=g_retr, **GENERATION, **options).joints
                # RAG off: no references reach the model (the text+retrieval pass is not run);
                # guidance_retrieval=0 is passed too, though without references it has no term to scale.
                off = model.generate(emb, [], length, seed, guidance_retrieval=0.0, **GENERATION, **options).joints
                only = refs[0].joints
                for cond, j in (("rag_on", on), ("rag_off", off), ("retrieval_only", only)):
                    outs[cond].append(j)
                    row = dict(action=action, prompt=prompt, kind=kind, seed=seed, cond=cond,
                               dtw_mpjpe=M.dtw_mpjpe(j, truth) * MM, skating=M.foot_skating(j, fps),
                               jerk=M.jerk(j, fps), bone_var=M.bone_length_variance(j) * MM * MM)
                    if cond == "rag_on":
                        row["to_ref"] = M.dtw_mpjpe(j, refs[0].joints) * MM
                        row["to_nearest_ref"] = min(M.dtw_mpjpe(j, r.joints) for r in refs) * MM
                    rows.append(row)
            for cond in CONDITIONS:
                diversity.append(dict(action=action, prompt=prompt, kind=kind, cond=cond,
                                      value=M.diversity(outs[cond]) * MM))
        print(f"  {action}: done at {time.perf_counter() - t0:.0f} s", flush=True)
    truth_rows = []
    for a in HELD_OUT:
        clip = library.load_clip(a)
        for what, j in (("mocap", clip.joints), ("tokenizer", _tokenizer_round_trip(model, clip))):
            truth_rows.append(dict(action=a, what=what, dtw_mpjpe=M.dtw_mpjpe(j, clip.joints) * MM,
                                   skating=M.foot_skating(j, fps), jerk=M.jerk(j, fps),
                                   bone_var=M.bone_length_variance(j) * MM * MM))
    return dict(rows=rows, diversity=diversity, retrieved=retrieved, truth=truth_rows, seeds=seeds,
                model=str(model_dir), db=db.name, mode=mode, guidance_retrieval=g_retr, options=options,
                seconds=time.perf_counter() - t0)


def _tokenizer_round_trip(model, clip):
    """The clip encoded to codes by the model's tokenizer and decoded: the closest any output
    of this model can come to it (the floor under its DTW-MPJPE)."""
    import numpy as np
    import torch

    from motionrag_suite.models.motion import humanml3d as h3d
    from motionrag_suite.models.t2m.model import motion_features

    feats = motion_features(clip, model.config.fps, "clip")
    x = torch.from_numpy(np.array(feats, dtype=np.float32))[None]
    tok = model.tokenizer
    with torch.no_grad():
        out = tok.denormalize(tok.decode(tok.encode(tok.normalize(x))))[0, :len(feats)]
    return h3d.features_to_motion(out.numpy().astype(np.float64), fps=model.config.fps).joints


def _per_seed(rows, key, cond, action=None, kind=None):
    """The metric averaged over prompts (and actions) separately for every seed: the spread
    reported is over seeds."""
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for s in seeds:
        vals = [r[key] for r in rows if r["seed"] == s and r["cond"] == cond and key in r
                and (action is None or r["action"] == action) and (kind is None or r["kind"] == kind)]
        out.append(sum(vals) / len(vals))
    return out


def tables(result: dict, label: str) -> str:
    import numpy as np

    rows, div = result["rows"], result["diversity"]
    n_prompts = len(result["retrieved"])
    lines = [f"### {label}", "",
             f"model `{result['model']}`, database `{result['db']}`, RAG on with guidance_retrieval "
             f"{result['guidance_retrieval']:g} (text 4, 10 steps, {REFERENCES} references"
             + "".join(f", {k} {v:g}" for k, v in result.get("options", {}).items()) + f"), {n_prompts} prompts "
             f"({len(HELD_OUT)} actions x captions + paraphrases), {result['seeds']} seeds each; "
             f"mean ± std over seeds (each seed's value averaged over prompts). Diversity: mean ± std over prompts.",
             "", "| action | condition | DTW-MPJPE (mm) | to own ref (mm) | diversity (mm) | foot skating (m/s) "
             "| jerk (m/s³) | bone-length var (mm²) |", "|---|---|---|---|---|---|---|---|"]

    def fmt(vals, digits=1):
        m, s = _mean_std(vals)
        return f"{m:.{digits}f} ± {s:.{digits}f}"

    for action in list(HELD_OUT) + [None]:
        for cond in CONDITIONS:
            to_ref = fmt(_per_seed(rows, "to_ref", cond, action)) if cond == "rag_on" else ""
            d = [x["value"] for x in div if x["cond"] == cond and (action is None or x["action"] == action)]
            lines.append(f"| {action or '**all**'} | {cond} | {fmt(_per_seed(rows, 'dtw_mpjpe', cond, action))} | "
                         f"{to_ref} | {fmt(d)} | {fmt(_per_seed(rows, 'skating', cond, action), 3)} | "
                         f"{fmt(_per_seed(rows, 'jerk', cond, action), 0)} | "
                         f"{fmt(_per_seed(rows, 'bone_var', cond, action), 2)} |")
    for what, name in (("mocap", "the mocap clip itself"), ("tokenizer", "tokenizer round trip (floor)")):
        for action in list(HELD_OUT) + [None]:
            t = [r for r in result["truth"] if r["what"] == what and (action is None or r["action"] == action)]
            lines.append(f"| {action or '**all**'} | {name} | {np.mean([r['dtw_mpjpe'] for r in t]):.1f} | | | "
                         f"{np.mean([r['skating'] for r in t]):.3f} | {np.mean([r['jerk'] for r in t]):.0f} | "
                         f"{np.mean([r['bone_var'] for r in t]):.2f} |")
    lines += ["", "DTW-MPJPE, RAG on vs RAG off (change of the mean; per-seed changes give the spread):", "",
              "| action | prompts | RAG on | RAG off | change | per-seed change |", "|---|---|---|---|---|---|"]
    for action in list(HELD_OUT) + [None]:
        for kind in (None, "caption", "paraphrase"):
            if action is not None and kind is not None:
                continue
            on = _per_seed(rows, "dtw_mpjpe", "rag_on", action, kind)
            off = _per_seed(rows, "dtw_mpjpe", "rag_off", action, kind)
            change = 100 * (np.mean(on) - np.mean(off)) / np.mean(off)
            per = [100 * (a - b) / b for a, b in zip(on, off)]
            lines.append(f"| {action or '**all**'} | {kind or 'all'} | {fmt(on)} | {fmt(off)} | {change:+.1f}% | "
                         f"{fmt(per)}% |")
    on, off = _per_seed(rows, "dtw_mpjpe", "rag_on"), _per_seed(rows, "dtw_mpjpe", "rag_off")
    lines += ["", "Per seed, all prompts (RAG on vs RAG off): " + "; ".join(
        f"seed {s}: {a:.1f} vs {b:.1f} mm ({100 * (a - b) / b:+.1f}%)" for s, (a, b) in enumerate(zip(on, off)))]
    ok = sum(r["top1_ok"] for r in result["retrieved"])
    lines += ["", f"Retrieval: top-1 was the prompted action (or its mirror) for {ok}/{n_prompts} prompts.", ""]
    for r in result["retrieved"]:
        if not r["top1_ok"]:
            lines.append(f"- missed: {r['action']} / {r['kind']} \"{r['prompt']}\" -> {', '.join(r['hits'])}")
    lines.append(f"\n(evaluation took {result['seconds']:.0f} s)")
    return "\n".join(lines)


def library_prompts() -> list:
    """(caption, [clips carrying it]) for every distinct caption of the built-in library, in library
    order. A symmetric motion and its mirrored copy share their captions (walk, M_walk): either clip
    answers such a caption, so its error is taken to the nearer of them."""
    from motionrag_suite.models.motion import library

    owners: dict = {}
    for name in library.list_clips():
        for caption in library.clip_captions(name):
            owners.setdefault(caption, []).append(name)
    return list(owners.items())


def run_library(root, model_dir, seeds: int, g_retr: float = 1.0, generate_options: dict | None = None) -> dict:
    """Every built-in clip's captions prompted to a model trained on the whole library, retrieving from
    the whole library as the node does (top-2, one per source clip, re-ranked for the clip's length).
    One row per (caption, seed): DTW-MPJPE (mm) to the caption's clip, RAG on and RAG off."""
    import torch

    from motionrag_suite.models.motion import library
    from motionrag_suite.models.t2m import metrics as M
    from motionrag_suite.models.t2m.checkpoint import load_model
    from motionrag_suite.retrieval import get_text_encoder
    from motionrag_suite.retrieval.refs import MotionRefs

    torch.set_num_threads(1)
    db = build_eval_db(root, "full")
    model = load_model(model_dir)
    encoder = get_text_encoder(model.config.text_encoder, root)
    options = dict(generate_options or {})
    clips = {name: library.load_clip(name).joints for name in library.list_clips()}
    prompts = library_prompts()
    rows = []
    t0 = time.perf_counter()
    for i, (caption, owners) in enumerate(prompts):
        length = len(clips[owners[0]])
        emb = encoder.encode([caption])[0]
        hits = db.search_vector(emb, REFERENCES, target_length=length, one_per_source=True)
        refs = MotionRefs.from_hits(caption, hits, database=db, target_length=length).motions()
        for seed in range(seeds):
            on = model.generate(emb, refs, length, seed, guidance_retrieval=g_retr, **GENERATION, **options).joints
            off = model.generate(emb, [], length, seed, guidance_retrieval=0.0, **GENERATION, **options).joints
            for cond, j in (("rag_on", on), ("rag_off", off)):
                each = [M.dtw_mpjpe(j, clips[o]) * MM for o in owners]
                rows.append(dict(caption=caption, clips=owners, seed=seed, cond=cond, top1=hits[0].name,
                                 dtw_mpjpe=min(each), each_clip=each))
        if (i + 1) % 40 == 0:
            print(f"  {i + 1}/{len(prompts)} captions at {time.perf_counter() - t0:.0f} s", flush=True)
    return dict(rows=rows, seeds=seeds, model=str(model_dir), db=db.name, guidance_retrieval=g_retr,
                options=options, captions=len(prompts), seconds=time.perf_counter() - t0)


def library_table(result: dict) -> str:
    import numpy as np

    rows = result["rows"]
    opts = ", ".join(f"{k} {v}" for k, v in result["options"].items()) or "defaults"
    lines = [f"model `{result['model']}`, database `{result['db']}`, {result['captions']} distinct captions of the "
             f"built-in clips, {result['seeds']} seeds each, RAG on with guidance_retrieval "
             f"{result['guidance_retrieval']:g} (text 4, 10 steps, {REFERENCES} references; {opts}); "
             f"DTW-MPJPE (mm) to the caption's clip (the nearer of a clip and its mirrored copy when both carry "
             f"the caption)", "",
             "| condition | median | mean | 25% | 75% | per-seed medians |", "|---|---|---|---|---|---|"]
    for cond in ("rag_on", "rag_off"):
        v = np.array([r["dtw_mpjpe"] for r in rows if r["cond"] == cond])
        per = [np.median([r["dtw_mpjpe"] for r in rows if r["cond"] == cond and r["seed"] == s])
               for s in range(result["seeds"])]
        lines.append(f"| {cond} | {np.median(v):.1f} | {v.mean():.1f} | {np.percentile(v, 25):.1f} | "
                     f"{np.percentile(v, 75):.1f} | {', '.join(f'{x:.1f}' for x in per)} |")
    for cond in ("rag_on", "rag_off"):
        # Stricter: a caption two clips share is scored against each of them (302 caption-clip pairs).
        v = np.array([d for r in rows if r["cond"] == cond for d in r["each_clip"]])
        lines.append(f"| {cond}, every (caption, clip) pair | {np.median(v):.1f} | {v.mean():.1f} | "
                     f"{np.percentile(v, 25):.1f} | {np.percentile(v, 75):.1f} | |")
    lines += ["", "Per clip (RAG on / RAG off, median over its captions and seeds):", ""]
    by_clip: dict = {}
    for r in rows:
        by_clip.setdefault(r["clips"][0].removeprefix("M_"), {}).setdefault(r["cond"], []).append(r["dtw_mpjpe"])
    lines.append("; ".join(f"{c} {np.median(d['rag_on']):.0f} / {np.median(d['rag_off']):.0f}"
                           for c, d in by_clip.items()))
    wrong = sorted({(r["caption"], r["top1"]) for r in rows
                    if r["top1"].removeprefix("M_") != r["clips"][0].removeprefix("M_")})
    lines += ["", f"Top-1 retrieval of another action for {len(wrong)} of {result['captions']} captions"
              + (": " + "; ".join(f"\"{c}\" -> {t}" for c, t in wrong) if wrong else ""),
              f"\n(took {result['seconds']:.0f} s)"]
    return "\n".join(lines)


def prior_cost(model_dir, rounds: int = 20, frames: int = 196) -> None:
    """generate() time with and without the token prior, interleaved (same text, references, seed), 1 thread."""
    import statistics

    import numpy as np
    import torch

    from motionrag_suite.models.motion import library
    from motionrag_suite.models.t2m.checkpoint import load_model
    from motionrag_suite.models.t2m.model import DEFAULT_TOKEN_PRIOR

    torch.set_num_threads(1)
    model = load_model(model_dir)
    emb = np.random.default_rng(0).normal(size=model.config.transformer.text_dim).astype("float32")
    refs = [library.load_clip("cartwheel"), library.load_clip("spin")]
    times: dict = {0.0: [], DEFAULT_TOKEN_PRIOR: []}
    for r in range(rounds + 1):
        for strength in times:
            t = time.perf_counter()
            model.generate(emb, refs, frames, 0, token_prior=strength, **GENERATION)
            if r:                                   # round 0 warms up
                times[strength].append((time.perf_counter() - t) * 1000)
    for strength, v in times.items():
        print(f"token_prior {strength:g}: {frames} frames, median {statistics.median(v):.1f} ms, best {min(v):.1f} ms "
              f"({rounds} rounds, 1 thread)")


def compare_weights(a, b) -> None:
    import hashlib

    import numpy as np
    from safetensors.numpy import load_file

    fa, fb = Path(a) / "model.safetensors", Path(b) / "model.safetensors"
    for f in (fa, fb):
        print(f"{f}: {f.stat().st_size} bytes, SHA-256 {hashlib.sha256(f.read_bytes()).hexdigest()}")
    ta, tb = load_file(str(fa)), load_file(str(fb))
    if set(ta) != set(tb):
        print(f"tensor names differ: only in A {sorted(set(ta) - set(tb))}, only in B {sorted(set(tb) - set(ta))}")
    worst, identical = ("", 0.0), 0
    for k in sorted(set(ta) & set(tb)):
        x, y = ta[k].astype(np.float64), tb[k].astype(np.float64)
        if x.shape != y.shape:
            print(f"{k}: shapes differ {x.shape} vs {y.shape}")
            continue
        d = float(np.abs(x - y).max()) if x.size else 0.0
        identical += int(d == 0.0)
        if d > worst[1]:
            worst = (k, d)
    print(f"{identical}/{len(set(ta) & set(tb))} tensors identical; max abs difference {worst[1]:.3g}"
          + (f" (in {worst[0]})" if worst[0] else ""))


def main(argv=None) -> int:
    import json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-train-db")
    b.add_argument("root")
    e = sub.add_parser("eval")
    e.add_argument("root")
    e.add_argument("model")
    e.add_argument("--db", choices=["heldout", "full"], default="heldout")
    e.add_argument("--seeds", type=int, default=5)
    e.add_argument("--label", default=None)
    e.add_argument("--guidance-retrieval", type=float, default=1.0, help="RAG on's retrieval guidance (node default 1)")
    e.add_argument("--json", default=None, help="also write every measured row here")
    e.add_argument("--token-prior", type=float, default=None,
                   help="the retrieval token prior's strength per unit of guidance_retrieval (default: the model's)")
    lib = sub.add_parser("library", help="every built-in clip's captions, model trained on the whole library")
    lib.add_argument("root")
    lib.add_argument("model")
    lib.add_argument("--seeds", type=int, default=3)
    lib.add_argument("--guidance-retrieval", type=float, default=1.0, help="RAG on's retrieval guidance (node default 1)")
    lib.add_argument("--token-prior", type=float, default=None,
                     help="the retrieval token prior's strength per unit of guidance_retrieval (default: the model's)")
    lib.add_argument("--json", default=None, help="also write every measured row here")
    pc = sub.add_parser("prior-cost", help="generate() time with and without the token prior")
    pc.add_argument("model")
    pc.add_argument("--rounds", type=int, default=20)
    c = sub.add_parser("compare-weights")
    c.add_argument("a")
    c.add_argument("b")
    args = p.parse_args(argv)
    if args.cmd == "build-train-db":
        build_train_db(args.root)
    elif args.cmd == "compare-weights":
        compare_weights(args.a, args.b)
    elif args.cmd == "prior-cost":
        prior_cost(args.model, args.rounds)
    elif args.cmd == "library":
        options = {} if args.token_prior is None else {"token_prior": args.token_prior}
        result = run_library(args.root, args.model, args.seeds, args.guidance_retrieval, options)
        print(library_table(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    else:
        if args.seeds < 2:
            p.error(f"--seeds: expected at least 2 (diversity compares seeds), got {args.seeds}")
        options = {} if args.token_prior is None else {"token_prior": args.token_prior}
        result = run_eval(args.root, args.model, args.db, args.seeds, args.guidance_retrieval, options)
        label = args.label or f"{args.model} on {'held-out actions (zero-shot by database update)' if args.db == 'heldout' else 'the same actions, IN training (full database)'}"
        print(tables(result, label))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
