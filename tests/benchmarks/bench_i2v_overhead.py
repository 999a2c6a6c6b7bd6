"""MotionRAG image-to-video overhead on the CPU: retrieval + CAMA from precomputed tokens, at the paper's
sizes, with random weights (timing only). Prints figures; asserts nothing.

    cd <pack folder>
    .venv/bin/python tests/benchmarks/bench_i2v_overhead.py [--entries 120] [--repeats 15] [--threads N]
        [--dtype float32|bfloat16] [--dino] [--base CogVideoX]

What one "video" costs here (what CAMA Adapt does, after Text Retrieve):
  * retrieval: encode the query text with MiniLM, search the faiss index for 9 references, look them
    up in SQLite, and read each one's motion_tokens_<base> (25 x 1024) and appearance_tokens
    (257 x 1024, DINOv2-large at 224) from the memory-mapped payload shards;
  * CAMA: the paper's motion context transformer (d=1024, 16 heads, 4 layers, FF 4096) with its
    appearance resampler over 10 blocks of 25 tokens (9 references + the query).
NOT included: the query image's appearance encoding by DINOv2-large (ViT-L/14 at 224, 257 tokens); with
--dino it is timed separately on a randomly initialised DINOv2-large. MotionRAG's paper reports +3.6 s
per video for its whole overhead on a GPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
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
from common.standalone import load_pack  # noqa: E402

load_pack()

from motionrag_suite.models.i2v.cama import MotionContextTransformer  # noqa: E402
from motionrag_suite.models.i2v.configs import PAPER_CAMA  # noqa: E402
from motionrag_suite.retrieval.database import open_database  # noqa: E402
from motionrag_suite.retrieval.entry_spec import EntrySpec  # noqa: E402
from motionrag_suite.retrieval.refs import MotionRefs  # noqa: E402
from motionrag_suite.retrieval.video_clips import placeholder_motion  # noqa: E402
from motionrag_suite.retrieval.video_token_builder import APPEARANCE_KIND, motion_kind  # noqa: E402
from motionrag_suite.retrieval.writer import build_database  # noqa: E402

SUBJECTS = ["a dog", "a woman", "a man", "a child", "a cat", "a horse", "a car", "a bird", "waves", "a dancer",
            "a skier", "a cyclist"]
ACTIONS = ["runs across a field", "jumps over a fence", "turns around slowly", "walks towards the camera",
           "spins in place", "waves at the camera", "falls down", "climbs a wall", "swims in a lake",
           "drives along a road"]
APP_TOKENS = 257                   # DINOv2-large at 224: CLS + 16 x 16 patches


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    q1, q3 = np.percentile(xs, [25, 75])
    return (f"median {statistics.median(xs) * 1000:8.1f} ms  IQR {q1 * 1000:.1f}-{q3 * 1000:.1f}  "
            f"min {xs[0] * 1000:.1f}  max {xs[-1] * 1000:.1f}  (n={len(xs)})")


def build_db(root: Path, entries: int, base: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    kind = motion_kind(base)

    def gen():
        for i in range(entries):
            caption = f"{SUBJECTS[i % len(SUBJECTS)]} {ACTIONS[(i // len(SUBJECTS)) % len(ACTIONS)]}"
            name = f"clip{i:05d}"
            payloads = {kind: rng.standard_normal((PAPER_CAMA.tokens_per_clip, PAPER_CAMA.d_model)).astype(np.float16),
                        APPEARANCE_KIND: rng.standard_normal((APP_TOKENS, PAPER_CAMA.appearance.embedding_dim))
                        .astype(np.float16)}
            yield EntrySpec(motion=placeholder_motion(16, 8.0, name=name, provenance={"source": "bench"}),
                            captions=[caption], payloads=payloads, name=name)

    build_database(root, "bench_i2v", gen(), total=entries)
    return open_database(root, "bench_i2v")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--base", default="CogVideoX")
    ap.add_argument("--full-last-layer", action="store_true", help="compute every block in CAMA's last layer "
                    "(the product computes the query block only)")
    ap.add_argument("--dino", action="store_true", help="also time DINOv2-large (random weights) on one image")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, native CPU bf16: {native}; "
          f"CAMA last layer: {'all blocks' if args.full_last_layer else 'query block only'}; load average "
          f"{os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    K = PAPER_CAMA.max_references
    with tempfile.TemporaryDirectory(prefix="bench_i2v_") as tmp:
        t = time.perf_counter()
        db = build_db(Path(tmp), args.entries, args.base)
        print(f"video database: {args.entries} entries, payloads at paper shapes, built in "
              f"{time.perf_counter() - t:.1f} s")
        torch.manual_seed(0)
        cama = MotionContextTransformer(PAPER_CAMA).eval().to(dtype)
        n_params = sum(p.numel() for p in cama.parameters())
        print(f"CAMA: {n_params / 1e6:.1f} M parameters (random), {K} references")
        query_app = torch.randn(1, APP_TOKENS, PAPER_CAMA.appearance.embedding_dim)
        queries = [f"{SUBJECTS[i % len(SUBJECTS)]} {ACTIONS[(3 * i) % len(ACTIONS)]} in the evening"
                   for i in range(args.repeats + 2)]
        kind = motion_kind(args.base)

        def one(text):
            t0 = time.perf_counter()
            refs = MotionRefs.from_hits(text, db.search(text, K), database=db)
            motion = refs.payloads(kind)
            app = refs.payloads(APPEARANCE_KIND)
            t1 = time.perf_counter()
            with torch.inference_mode():
                m = torch.from_numpy(np.stack(motion).astype(np.float32))[None].to(dtype)
                a = torch.from_numpy(np.stack(app).astype(np.float32))[None].to(dtype)
                out = cama.predict(m, a, query_app.to(dtype), most_similar_first=True,
                                   last_block_only=not args.full_last_layer)
            t2 = time.perf_counter()
            assert out.shape == (1, PAPER_CAMA.tokens_per_clip, PAPER_CAMA.d_model) and len(refs) == K
            return t1 - t0, t2 - t1, t2 - t0

        for text in queries[:2]:                                  # warm-up: MiniLM load, first allocations
            one(text)
        rows = [one(text) for text in queries[2:]]
        load = os.getloadavg()
        print(f"retrieval (MiniLM + faiss + SQLite + 18 payload reads): {stats([r[0] for r in rows])}")
        print(f"CAMA from precomputed tokens:                           {stats([r[1] for r in rows])}")
        print(f"overhead per video (sum, excl. DINOv2 on the query):    {stats([r[2] for r in rows])}")
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        db.close()

    if args.dino:
        from transformers import Dinov2Config, Dinov2Model

        from motionrag_suite.models.i2v.features import appearance_features

        cfg = Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                           patch_size=14, image_size=518)            # facebook/dinov2-large's sizes
        t = time.perf_counter()
        dino = Dinov2Model(cfg).eval().to(dtype)
        print(f"DINOv2-large (random): {sum(p.numel() for p in dino.parameters()) / 1e6:.0f} M parameters, "
              f"built in {time.perf_counter() - t:.1f} s")
        image = torch.rand(1, 3, 480, 720) * 2 - 1
        times = []
        with torch.inference_mode():
            for i in range(max(3, args.repeats // 3) + 1):
                t0 = time.perf_counter()
                feats = appearance_features(dino, image)
                if i:
                    times.append(time.perf_counter() - t0)
        assert tuple(feats.shape) == (1, APP_TOKENS, 1024), feats.shape
        load = os.getloadavg()
        print(f"DINOv2-large on the query image (not in the figure above): {stats(times)}")
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
