"""What opening a database costs, and its first query, each in a fresh process (no file cached as
verified): the price of the checksums taken on open and before first use. Prints figures.

    cd <pack folder>
    .venv/bin/python tests/benchmarks/bench_open.py --entries 1000000 --workdir /tmp/bench_open [--repeat 3]
    .venv/bin/python tests/benchmarks/bench_open.py --workdir /tmp/bench_open --measure-only --pack OTHER_PACK

The database is built as bench_retrieval.py builds its sizes (the real writer, blended MiniLM vectors,
8 frames per entry), once; --pack measures another checkout of the pack (e.g. the previous version)
against the same folder.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import os, sys, time, json
os.environ["HF_HUB_OFFLINE"] = "1"; os.environ["TRANSFORMERS_OFFLINE"] = "1"
sys.path.insert(0, sys.argv[1])
from common.standalone import load_pack; load_pack()
import numpy as np
from motionrag_suite.retrieval.database import open_database
t = time.perf_counter()
db = open_database(sys.argv[2], "bench")
opened = time.perf_counter() - t
v = np.random.default_rng(0).normal(size=db.manifest["text_encoder"]["dim"]).astype(np.float32)
v /= np.linalg.norm(v)
t = time.perf_counter()
hits = db.search_vector(v, 5)
first = time.perf_counter() - t
db.load_payload(hits[0].entry_id, "joints")
t = time.perf_counter()
db.search_vector(-v, 5)
second = time.perf_counter() - t
print(json.dumps({"open_ms": round(opened * 1000, 1), "first_query_ms": round(first * 1000, 1),
                  "second_query_ms": round(second * 1000, 1)}))
"""


def build(entries: int, root: Path, real: int) -> None:
    sys.path.insert(0, str(HERE))
    import numpy as np

    import bench_captions as bc
    import bench_retrieval as br

    enc = br.get_text_encoder()
    vecs, _ = bc.cached_embeddings(enc, min(entries, real), None)
    if entries > len(vecs):
        vecs = np.concatenate([vecs, br.blended(vecs, entries - len(vecs), np.random.default_rng(entries))[0]])
    print(json.dumps(br.build_ours(entries, vecs, root, 8, enc)), flush=True)


def measure(pack: Path, root: Path, repeat: int) -> list[dict]:
    out = []
    for _ in range(repeat):
        r = subprocess.run([sys.executable, "-c", CHILD, str(pack), str(root)], capture_output=True, text=True,
                           cwd=str(pack))
        if r.returncode:
            raise SystemExit(r.stderr[-2000:])
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--real", type=int, default=40_000, help="captions embedded for real (the rest are blends)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--pack", default=str(HERE.parents[1]), help="the pack checkout to measure")
    p.add_argument("--measure-only", action="store_true")
    args = p.parse_args()
    root = Path(args.workdir)
    if not args.measure_only and not (root / "databases" / "bench" / "manifest.json").is_file():
        build(args.entries, root, args.real)
    sizes = {f.name: f.stat().st_size for f in (root / "databases" / "bench").iterdir() if f.is_file()}
    print(json.dumps({"files_mb": {k: round(v / 1e6, 1) for k, v in sorted(sizes.items())}}))
    for row in measure(Path(args.pack), root, args.repeat):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
